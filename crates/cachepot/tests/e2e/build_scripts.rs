//! Build-script runs through the cache: replayed in a fresh target
//! directory and in another checkout, rerun when what they declared
//! changes, failures as without cachepot, and `CACHEPOT_VERIFY`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{assert_ok, count, files_below, plant_in_entries, Checkout, Env};

/// The workspace's build scripts: gen, native, user.
const RUNS: u64 = 3;

/// What the app prints by default.
const PRINTED: &str = "data plain 3 40 40";

fn app(co: &Checkout) -> String {
    let out = Command::new(co.target.join("debug/app")).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Hits, misses and failures of build-script runs.
fn runs(s: &serde_json::Value) -> (u64, u64, u64) {
    let b = &s["build_scripts"];
    let n = |k: &str| b[k].as_u64().unwrap_or(0);
    (n("hits"), n("misses"), n("failed"))
}

/// The directory cargo gave a package's build-script run (`…/build/<pkg>-<hash>`
/// holding `out/`).
fn run_dir(co: &Checkout, package: &str) -> PathBuf {
    std::fs::read_dir(co.target.join("debug/build"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{package}-"))
                && d.join("out").is_dir()
        })
        .unwrap_or_else(|| panic!("no run directory of {package}"))
}

fn has_launcher(co: &Checkout, package: &str) -> bool {
    let build = co.target.join("debug/build");
    std::fs::read_dir(&build).unwrap().any(|e| {
        let d = e.unwrap().path();
        d.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{package}-"))
            && std::fs::read_dir(&d).unwrap().any(|f| {
                f.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".cachepot-real")
            })
    })
}

#[test]
fn runs_are_replayed_in_a_fresh_target_and_in_another_checkout() {
    let env = Env::new();
    let a = env.checkout_scripts("a");
    env.build(&a, &[]);
    assert_eq!(runs(&env.stats()), (0, RUNS, 0));
    assert_eq!(app(&a), PRINTED);

    let s = env.rebuild_fresh(&a, &[]);
    assert_eq!(runs(&s), (RUNS, 0, 0), "{s}");
    assert_eq!(count(&s, "cache_misses"), 0, "{s}");
    assert_eq!(app(&a), PRINTED);
    // What configure and make left is back, and the generated code names
    // this target directory.
    let native = run_dir(&a, "native");
    for f in [
        "out/lib/libnative.a",
        "out/build/config.h",
        "out/build/Makefile",
    ] {
        assert!(native.join(f).is_file(), "{f}");
    }
    let gen = std::fs::read_to_string(run_dir(&a, "gen").join("out/gen.rs")).unwrap();
    assert!(gen.contains(&a.target.display().to_string()), "{gen}");

    // cargo takes the replay as a run: building again runs nothing.
    env.zero();
    let out = env.build(&a, &[]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("Compiling"), "{text}");
    assert_eq!(runs(&env.stats()), (0, 0, 0));

    // Another checkout with its own CARGO_HOME, the first one gone: the
    // restored link search path, metadata and generated code name this
    // checkout (linking against the first one's would fail).
    env.stop();
    std::fs::remove_dir_all(&a.target).unwrap();
    let b = env.checkout_scripts("b");
    env.zero();
    env.build(&b, &[]);
    let s = env.stats();
    assert_eq!(runs(&s), (RUNS, 0, 0), "{s}");
    assert_eq!(app(&b), PRINTED);
    let output = std::fs::read_to_string(run_dir(&b, "native").join("output")).unwrap();
    assert!(
        output.contains(&format!("rustc-link-search=native={}", b.target.display())),
        "{output}"
    );
    assert!(!output.contains(&a.ws.display().to_string()), "{output}");
    let gen = std::fs::read_to_string(run_dir(&b, "gen").join("out/gen.rs")).unwrap();
    assert!(gen.contains(&b.target.display().to_string()), "{gen}");
}

#[test]
fn declared_inputs_rerun_their_script_and_nothing_else() {
    let env = Env::new();
    let co = env.checkout_scripts("a");
    env.build(&co, &[]);

    // A declared variable: another value misses, the first one hits.
    let s = env.rebuild_fresh(&co, &[("FLAVOR", "kiwi")]);
    assert_eq!(runs(&s), (RUNS - 1, 1, 0), "{s}");
    assert_eq!(app(&co), "data kiwi 3 40 40");
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(runs(&s), (RUNS, 0, 0), "{s}");
    assert_eq!(app(&co), PRINTED);

    // Touched, not changed: cargo reruns exactly that script; it hits.
    env.zero();
    let data = co.ws.join("gen/data.txt");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .append(true)
        .open(&data)
        .unwrap()
        .set_modified(later)
        .unwrap();
    env.build(&co, &[]);
    assert_eq!(runs(&env.stats()), (1, 0, 0));
    assert_eq!(app(&co), PRINTED);

    // A declared file edited: cargo reruns gen's script, which misses.
    env.zero();
    std::fs::write(&data, "edited\n").unwrap();
    env.build(&co, &[]);
    assert_eq!(runs(&env.stats()), (0, 1, 0));
    assert_eq!(app(&co), "edited plain 3 40 40");
}

/// `cargo build` of a checkout, uncached or through cachepot, expected to
/// fail: its exit code and the build script's message.
fn failing_build(env: &Env, co: &Checkout, cached: bool) -> (Option<i32>, bool) {
    let out = env
        .cargo_command(co, cached)
        .args(["build", "--offline"])
        .env("FIXTURE_FAIL", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        text.contains("fixture build script failed on purpose"),
    )
}

#[test]
fn a_failing_script_fails_the_build_as_without_cachepot_and_is_not_stored() {
    let env = Env::new();
    let co = env.checkout_scripts("a");
    let plain = failing_build(&env, &co, false);
    assert_eq!(plain, (Some(101), true));
    std::fs::remove_dir_all(&co.target).unwrap();
    assert_eq!(failing_build(&env, &co, true), plain);
    assert_eq!(runs(&env.stats()).2, 1);
    env.stop();
    env.zero();
    std::fs::remove_dir_all(&co.target).unwrap();
    assert_eq!(failing_build(&env, &co, true), plain);
    // It ran again (a replay would be a hit, not a failure).
    let s = env.stats();
    assert_eq!(runs(&s).2, 1, "{s}");
    // Without the failure, the build works.
    env.build(&co, &[]);
    assert_eq!(app(&co), PRINTED);
}

#[test]
fn c_compiled_by_a_cc_crate_script_is_not_compiled_again() {
    let env = Env::new();
    let co = env.checkout_cc("a");
    env.build(&co, &[]);
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(runs(&s), (1, 0, 0), "{s}");
    assert!(s["languages"]["c"].is_null(), "no C compile ran: {s}");
    let run = || {
        let out = Command::new(co.target.join("debug/cnative"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(run(), "5");
    // A header the script declares (a directory) changes: rerun.
    std::fs::write(co.ws.join("include/add.h"), "#define OFFSET 10\n").unwrap();
    env.zero();
    env.build(&co, &[]);
    assert_eq!(runs(&env.stats()), (0, 1, 0));
    assert_eq!(run(), "15");
}

#[test]
fn turned_off_globally_or_for_a_package_scripts_run_as_they_are() {
    let mut env = Env::new();
    let co = env.checkout_scripts("a");
    env.extra
        .push(("CACHEPOT_BUILD_SCRIPTS_SKIP".into(), "native".into()));
    env.build(&co, &[]);
    assert!(has_launcher(&co, "gen") && !has_launcher(&co, "native"));
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(runs(&s), (RUNS - 1, 0, 0), "{s}");
    assert_eq!(app(&co), PRINTED);

    env.extra = vec![("CACHEPOT_BUILD_SCRIPTS".into(), "off".into())];
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(runs(&s), (0, 0, 0), "{s}");
    assert!(!has_launcher(&co, "gen"));
    assert_eq!(app(&co), PRINTED);
}

/// Rewrites gen's stored `gen.rs` (whatever its entry name) to other
/// valid code under its right key. Returns how many entries it changed.
fn plant_wrong_generated_code(cache: &Path) -> usize {
    plant_in_entries(
        cache,
        |name| name.ends_with(":gen.rs"),
        |bytes| {
            String::from_utf8_lossy(bytes)
                .replace("\"data\"", "\"wrong\"")
                .into_bytes()
        },
    )
}

#[test]
fn verify_catches_a_wrong_replay_and_leaves_the_real_run() {
    let mut env = Env::new();
    let co = env.checkout_scripts("a");
    env.build(&co, &[]);
    env.stop();
    assert_eq!(plant_wrong_generated_code(&env.cache), 1);
    env.extra.push(("CACHEPOT_VERIFY".into(), "1".into()));
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(runs(&s), (RUNS, 0, 0), "{s}");
    assert_eq!(count(&s, "verify_mismatches"), 1, "{s}");
    // gen's library compiled from the real run's code.
    assert_eq!(app(&co), PRINTED);
    // The wrong entry is gone: gen's run misses once verifying is off.
    env.extra.clear();
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(runs(&s), (RUNS - 1, 1, 0), "{s}");
    assert_eq!(app(&co), PRINTED);
    let out = env.build(&co, &[]);
    assert_ok(&out);
}

#[test]
fn verify_tells_a_script_whose_runs_differ_from_a_wrong_replay() {
    // gen writes a time stamp: its two real runs differ there, so its
    // replay cannot be verified, and is not a mismatch either.
    let mut env = Env::new();
    let co = env.checkout_scripts("a");
    env.build(&co, &[]);
    env.extra.push(("CACHEPOT_VERIFY".into(), "1".into()));
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(runs(&s), (RUNS, 0, 0), "{s}");
    assert_eq!(count(&s, "verify_mismatches"), 0, "{s}");
    assert_eq!(count(&s, "verify_unverifiable"), 1, "{s}");
    assert_eq!(app(&co), PRINTED);
    // The second run's files are the ones in place, whole.
    let out = run_dir(&co, "gen").join("out");
    assert!(out.join("stamp.txt").is_file() && out.join("gen.rs").is_file());
    assert!(!files_below(&co.target)
        .iter()
        .any(|p| p.to_string_lossy().contains(".cachepot-verify")));
}
