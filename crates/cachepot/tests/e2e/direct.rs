//! Compiles run directly through the wrapper (`cachepot rustc …`), the way
//! cargo runs them, to check what the wrapper replays.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::{assert_ok, count, Env, BIN};

/// A directory that looks like a cargo project: a source and a target dir.
fn project(env: &Env, name: &str, source: &str) -> PathBuf {
    let dir = env.root.path().join(name);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("target/debug/deps")).unwrap();
    std::fs::write(
        dir.join("target/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
    dir
}

fn rustc_through(env: &Env, dir: &Path, compiler: &str, extra_path: Option<&Path>) -> Output {
    let out_dir = dir.join("target/debug/deps");
    let mut cmd = env.command(BIN);
    cmd.current_dir(dir).args([
        compiler,
        "--crate-name",
        "direct",
        "--edition=2021",
        "src/lib.rs",
        "--error-format=json",
        "--json=diagnostic-rendered-ansi,artifacts,future-incompat",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        "metadata=0123456789abcdef",
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    if let Some(p) = extra_path {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![p.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    cmd.output().unwrap()
}

fn real_rustc() -> String {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(out.stdout).unwrap();
    format!("{}/bin/rustc", sysroot.trim())
}

const WARNS: &str = "pub fn f() -> u32 {\n    let unused = 1;\n    2\n}\n";

#[test]
fn replayed_output_is_what_rustc_printed_with_this_checkouts_paths() {
    let env = Env::new();
    let rustc = real_rustc();
    let a = project(&env, "one", WARNS);
    let first = rustc_through(&env, &a, &rustc, None);
    assert!(first.status.success());
    let first_err = String::from_utf8(first.stderr).unwrap();
    assert!(first_err.contains("unused_variables"), "{first_err}");
    assert!(first_err.contains(a.join("target/debug/deps/libdirect.r").to_str().unwrap()));
    env.stop();

    // The same place again: the replay is byte for byte what rustc printed.
    std::fs::remove_dir_all(a.join("target/debug/deps")).unwrap();
    std::fs::create_dir_all(a.join("target/debug/deps")).unwrap();
    let again = rustc_through(&env, &a, &rustc, None);
    assert_eq!(String::from_utf8(again.stderr).unwrap(), first_err);
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(count(&env.stats(), "cache_hits"), 1);

    // Another checkout: the artifact notifications name its own files.
    let b = project(&env, "two-somewhere-else", WARNS);
    let other = rustc_through(&env, &b, &rustc, None);
    let other_err = String::from_utf8(other.stderr).unwrap();
    assert_eq!(count(&env.stats(), "cache_hits"), 2);
    assert!(!other_err.contains(a.to_str().unwrap()), "{other_err}");
    assert!(
        other_err.contains(b.join("target/debug/deps/libdirect.r").to_str().unwrap()),
        "{other_err}"
    );
    assert!(b.join("target/debug/deps/libdirect.rlib").is_file());
}

/// A build script's probe that fails (run in a build script's environment,
/// as anyhow's and thiserror's are) is cached like a success: the same message
/// and exit code 1 come back without running rustc, and a fixed probe
/// compiles. Any other compile error is never cached: the fix may be a new
/// file that the failed compile could not name.
#[test]
fn a_failing_build_script_probe_is_cached_and_other_errors_are_not() {
    let rustc = real_rustc();
    let broken = "pub fn f() -> u32 { \"no\" }\n";
    let mut env = Env::new();
    let dir = project(&env, "probe", broken);
    // As cargo runs a build script, which runs the probe.
    env.extra
        .push(("CARGO_CFG_TARGET_ARCH".into(), "x86_64".into()));
    let first = rustc_through(&env, &dir, &rustc, None);
    env.stop();
    let second = rustc_through(&env, &dir, &rustc, None);
    assert_eq!(first.status.code(), Some(1));
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(first.stderr, second.stderr);
    assert!(String::from_utf8_lossy(&first.stderr).contains("mismatched types"));
    let s = env.stats();
    assert_eq!(count(&s, "cache_hits"), 1, "{s}");
    std::fs::write(dir.join("src/lib.rs"), "pub fn f() -> u32 { 7 }\n").unwrap();
    let fixed = rustc_through(&env, &dir, &rustc, None);
    assert_ok(&fixed);
    assert!(dir.join("target/debug/deps/libdirect.rlib").is_file());

    let env = Env::new();
    let dir = project(&env, "broken", broken);
    rustc_through(&env, &dir, &rustc, None);
    env.stop();
    let again = rustc_through(&env, &dir, &rustc, None);
    assert_eq!(again.status.code(), Some(1));
    let s = env.stats();
    assert_eq!(hits_and_failures(&s), (0, 1), "{s}");
}

fn hits_and_failures(s: &serde_json::Value) -> (u64, u64) {
    (count(s, "cache_hits"), count(s, "compile_failures"))
}

#[test]
fn the_rustup_proxy_and_the_toolchain_rustc_share_entries() {
    let Some(proxy_dir) = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"))
    else {
        panic!("HOME is not set");
    };
    assert!(
        proxy_dir.join("rustc").exists(),
        "this machine's rustc comes from rustup"
    );
    let env = Env::new();
    let dir = project(&env, "proxy", "pub fn f() -> u32 { 7 }\n");
    let stored = rustc_through(&env, &dir, &real_rustc(), None);
    assert!(stored.status.success());
    env.stop();
    let through_proxy = rustc_through(&env, &dir, "rustc", Some(&proxy_dir));
    assert_ok(&through_proxy);
    assert_eq!(count(&env.stats(), "cache_hits"), 1);
}

/// Runs `cachepot ARGS…` in `dir` with `input` on standard input.
fn with_stdin(env: &Env, dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = env
        .command(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// autocfg's probes: the source on standard input, LLVM IR out, no
/// dep-info asked for. Cached by the digest of the input.
#[test]
fn a_probe_read_from_standard_input_is_cached_by_its_content() {
    let env = Env::new();
    let dir = project(&env, "probe", "");
    let rustc = real_rustc();
    let args = [
        rustc.as_str(),
        "--crate-name",
        "probe0",
        "--crate-type",
        "lib",
        "--emit=llvm-ir",
        "--out-dir",
        "target/debug/deps",
        "-",
    ];
    let code = "pub fn probe() -> i128 { 1 }\n";
    let first = with_stdin(&env, &dir, &args, code);
    assert_ok(&first);
    let ll = dir.join("target/debug/deps/probe0.ll");
    let stored = std::fs::read(&ll).unwrap();
    env.stop();
    std::fs::remove_file(&ll).unwrap();
    let second = with_stdin(&env, &dir, &args, code);
    assert!(second.status.success());
    assert_eq!(std::fs::read(&ll).unwrap(), stored);
    let s = env.stats();
    assert_eq!(
        (count(&s, "cache_hits"), count(&s, "non_cacheable")),
        (1, 0),
        "{s}"
    );
    // Other input, another key; a failing probe fails the same way twice.
    let other = with_stdin(&env, &dir, &args, "pub fn probe() -> u8 { 1 }\n");
    assert!(other.status.success());
    assert_eq!(count(&env.stats(), "cache_misses"), 1);
    // The C compilers take standard input too (not cached, passed on).
    let obj = dir.join("c.o");
    let c = with_stdin(
        &env,
        &dir,
        &["gcc", "-x", "c", "-c", "-", "-o", obj.to_str().unwrap()],
        "int x = 1;\n",
    );
    assert_ok(&c);
    assert!(obj.is_file());
}

/// autocfg 1.5's probes name their crate `autocfg_<random hex>_<N>`, anew
/// in every build script run. The outcome is cached whatever the name;
/// the `.ll`, which depends on the name and which autocfg deletes unread,
/// is never written by a hit.
#[test]
fn autocfg_probes_hit_under_another_random_crate_name() {
    let env = Env::new();
    let dir = project(&env, "autocfg", "");
    let rustc = real_rustc();
    // Each probe runs against a daemon of its own (stopping it waits for
    // its writes), so its statistics count that probe only.
    let probe = |name: &str, code: &str| {
        let args = [
            rustc.as_str(),
            "--crate-name",
            name,
            "--crate-type=lib",
            "--out-dir",
            "target/debug/deps",
            "--emit=llvm-ir",
            "-",
        ];
        let out = with_stdin(&env, &dir, &args, code);
        let hit = count(&env.stats(), "cache_hits") == 1;
        env.stop();
        let ll = dir.join(format!("target/debug/deps/{name}.ll"));
        (out, hit, ll.exists())
    };
    let ok = "pub fn probe() { let _ = 1i128; }\n";
    let (first, hit, wrote) = probe("autocfg_0123456789abcdef_0", ok);
    assert_ok(&first);
    assert!(!hit && wrote, "a miss leaves what rustc wrote");
    let (second, hit, wrote) = probe("autocfg_fedcba9876543210_0", ok);
    assert_ok(&second);
    assert!(hit, "another random name hits");
    assert!(!wrote, "a hit writes no .ll of another crate name");
    // A failing probe: the same error and exit code under another name.
    let bad = "pub fn probe() -> u32 { \"no\" }\n";
    let (failed, hit, _) = probe("autocfg_0123456789abcdef_1", bad);
    assert!(!hit);
    let (replayed, hit, _) = probe("autocfg_ffffffffffffffff_1", bad);
    assert!(hit);
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(replayed.status.code(), Some(1));
    assert_eq!(replayed.stderr, failed.stderr);
    // The probe's number counts; messages that name the crate are not stored.
    let (other, hit, _) = probe("autocfg_0123456789abcdef_7", ok);
    assert_ok(&other);
    assert!(!hit);
    let named = "#![crate_name = \"x\"]\n";
    let (n1, _, _) = probe("autocfg_0123456789abcdef_2", named);
    let (n2, hit, _) = probe("autocfg_1111111111111111_2", named);
    assert!(!hit);
    assert!(String::from_utf8_lossy(&n2.stderr).contains("autocfg_1111111111111111_2"));
    assert_eq!((n1.status.code(), n2.status.code()), (Some(1), Some(1)));
}

/// A compile that asks for no dep-info (`--emit=metadata`, as rustix's
/// probe does): the cache asks for a private one, so a module edit misses.
#[test]
fn a_compile_without_dep_info_is_keyed_by_the_files_it_read() {
    let env = Env::new();
    let dir = project(&env, "nodep", "mod m;\npub fn f() -> u32 { m::V }\n");
    std::fs::write(dir.join("src/m.rs"), "pub const V: u32 = 1;\n").unwrap();
    let rustc = real_rustc();
    let args = [
        rustc.as_str(),
        "--crate-name",
        "nodep",
        "--crate-type",
        "lib",
        "--emit=metadata",
        "--out-dir",
        "target/debug/deps",
        "src/lib.rs",
    ];
    let run = || {
        let out = env
            .command(BIN)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_ok(&out);
    };
    run();
    env.stop();
    run();
    assert_eq!(count(&env.stats(), "cache_hits"), 1);
    std::fs::write(dir.join("src/m.rs"), "pub const V: u32 = 2;\n").unwrap();
    run();
    assert_eq!(count(&env.stats(), "cache_misses"), 1);
    // Nothing of the cache's own is left beside the outputs.
    let names: Vec<String> = std::fs::read_dir(dir.join("target/debug/deps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["libnodep.rmeta"], "{names:?}");
}
