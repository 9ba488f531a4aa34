//! C and C++ compiles through cachepot with the real gcc and clang.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::{assert_ok, count, hits_misses, Env, BIN};

/// The C compilers every test runs with; both must be installed
/// (`scripts/services.sh install` puts clang in).
const COMPILERS: [&str; 2] = ["gcc", "clang"];

/// A small C project: a source that includes a header through `-I`.
struct Project {
    root: PathBuf,
}

impl Project {
    fn new(env: &Env, name: &str) -> Project {
        let root = env.root.path().join(name);
        write(&root.join("include/value.h"), "#define VALUE 41\n");
        write(
            &root.join("src/main.c"),
            "#include <stdio.h>\n#include \"value.h\"\nint value(void) { return VALUE + 1; }\n",
        );
        Project { root }
    }

    fn obj(&self) -> PathBuf {
        self.root.join("out/main.o")
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Runs `cachepot CC ARGS…` (or, with `plain`, the compiler itself) in `dir`.
fn cc(env: &Env, dir: &Path, plain: bool, compiler: &str, args: &[&str]) -> Output {
    let mut c = if plain {
        env.command(compiler)
    } else {
        let mut c = env.command(BIN);
        c.arg(compiler);
        c
    };
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let out = c.args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("{compiler}: {e}; `scripts/services.sh install` installs gcc, g++ and clang")
    });
    assert!(
        out.status.success(),
        "{compiler} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const ARGS: &[&str] = &["-O1", "-Iinclude", "-c", "src/main.c", "-o", "out/main.o"];

fn lang_hits(env: &Env, lang: &str) -> u64 {
    env.stats()["languages"][lang]["hits"].as_u64().unwrap_or(0)
}

#[test]
fn a_cached_rebuild_is_byte_identical_to_the_compiler_s_output() {
    for compiler in COMPILERS {
        let env = Env::new();
        let p = Project::new(&env, "p");
        let mut args = ARGS.to_vec();
        args.extend(["-g", "-MD", "-MF", "out/main.d"]);
        cc(&env, &p.root, true, compiler, &args);
        let plain_obj = std::fs::read(p.obj()).unwrap();
        let plain_dep = std::fs::read(p.root.join("out/main.d")).unwrap();
        cc(&env, &p.root, false, compiler, &args);
        env.stop();
        std::fs::remove_dir_all(p.root.join("out")).unwrap();
        env.zero();
        cc(&env, &p.root, false, compiler, &args);
        assert_eq!(hits_misses(&env.stats()), (1, 0), "{compiler}");
        assert_eq!(lang_hits(&env, "c"), 1);
        assert!(
            std::fs::read(p.obj()).unwrap() == plain_obj,
            "{compiler}: object differs"
        );
        assert_eq!(std::fs::read(p.root.join("out/main.d")).unwrap(), plain_dep);
        // The cache's own dependency file is not left behind.
        let names: Vec<_> = std::fs::read_dir(p.root.join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}

#[test]
fn a_header_edit_and_a_define_change_miss() {
    for compiler in COMPILERS {
        let env = Env::new();
        let p = Project::new(&env, "p");
        cc(&env, &p.root, false, compiler, ARGS);
        env.stop();
        env.zero();
        write(&p.root.join("include/value.h"), "#define VALUE 99\n");
        cc(&env, &p.root, false, compiler, ARGS);
        let edited = std::fs::read(p.obj()).unwrap();
        cc(&env, &p.root, true, compiler, ARGS);
        assert_eq!(
            edited,
            std::fs::read(p.obj()).unwrap(),
            "{compiler}: stale object"
        );
        let mut defined = ARGS.to_vec();
        defined.push("-DEXTRA=1");
        cc(&env, &p.root, false, compiler, &defined);
        assert_eq!(hits_misses(&env.stats()), (0, 2), "{compiler}");
        // And the edited header hits once stored (statistics restart with
        // the daemon).
        env.stop();
        cc(&env, &p.root, false, compiler, ARGS);
        assert_eq!(hits_misses(&env.stats()), (1, 0), "{compiler}");
    }
}

#[test]
fn another_checkout_path_hits_through_include_directories() {
    for compiler in COMPILERS {
        let env = Env::new();
        let a = Project::new(&env, "a");
        let b = Project::new(&env, "b");
        let abs = |p: &Project, rel: &str| p.root.join(rel).display().to_string();
        let args = |p: &Project| {
            vec![
                "-O1".to_string(),
                format!("-I{}", abs(p, "include")),
                "-c".into(),
                abs(p, "src/main.c"),
                "-o".into(),
                abs(p, "out/main.o"),
            ]
        };
        let a_args = args(&a);
        let a_args: Vec<&str> = a_args.iter().map(String::as_str).collect();
        cc(&env, &a.root, false, compiler, &a_args);
        env.stop();
        env.zero();
        let b_args = args(&b);
        let b_args: Vec<&str> = b_args.iter().map(String::as_str).collect();
        cc(&env, &b.root, false, compiler, &b_args);
        assert_eq!(hits_misses(&env.stats()), (1, 0), "{compiler}");
        let restored = std::fs::read(b.obj()).unwrap();
        cc(&env, &b.root, true, compiler, &b_args);
        assert_eq!(restored, std::fs::read(b.obj()).unwrap(), "{compiler}");
    }
}

#[test]
fn debug_info_is_shared_by_default_and_keyed_under_exact_paths() {
    let mut env = Env::new();
    let a = Project::new(&env, "a");
    let b = Project::new(&env, "b");
    let mut g = ARGS.to_vec();
    g.push("-g");
    cc(&env, &a.root, false, "gcc", &g);
    env.stop();
    env.zero();
    cc(&env, &b.root, false, "gcc", &g);
    assert_eq!(
        hits_misses(&env.stats()),
        (1, 0),
        "share: another checkout hits"
    );
    // The restored object names the storing checkout's directory.
    let restored = std::fs::read(b.obj()).unwrap();
    let a_dir = a.root.to_string_lossy().into_owned();
    assert!(restored.windows(a_dir.len()).any(|w| w == a_dir.as_bytes()));
    env.extra
        .push(("CACHEPOT_PATH_POLICY".into(), "exact".into()));
    cc(&env, &a.root, false, "gcc", &g);
    env.stop();
    env.zero();
    cc(&env, &b.root, false, "gcc", &g);
    assert_eq!(
        hits_misses(&env.stats()),
        (0, 1),
        "exact: DW_AT_comp_dir differs"
    );
    let own = std::fs::read(b.obj()).unwrap();
    let b_dir = b.root.to_string_lossy().into_owned();
    assert!(own.windows(b_dir.len()).any(|w| w == b_dir.as_bytes()));
    env.extra.clear();
    let mapped = |p: &Project| format!("-ffile-prefix-map={}=.", p.root.display());
    let (ma, mb) = (mapped(&a), mapped(&b));
    let mut ga = g.clone();
    ga.push(&ma);
    let mut gb = g.clone();
    gb.push(&mb);
    cc(&env, &a.root, false, "gcc", &ga);
    env.stop();
    env.zero();
    cc(&env, &b.root, false, "gcc", &gb);
    assert_eq!(hits_misses(&env.stats()), (1, 0));
    let restored = std::fs::read(b.obj()).unwrap();
    cc(&env, &b.root, true, "gcc", &gb);
    assert_eq!(restored, std::fs::read(b.obj()).unwrap());
}

/// Profiling code embeds where its counters go (gcc: the `.gcda` path,
/// from the object's absolute path): a rebuild at the same place hits
/// with the same object; another checkout misses.
#[test]
fn profiling_code_hits_in_place_and_misses_elsewhere() {
    for (compiler, flag) in [
        ("gcc", "-fprofile-generate"),
        ("clang", "-fprofile-instr-generate"),
    ] {
        let env = Env::new();
        let (a, b) = (Project::new(&env, "a"), Project::new(&env, "b"));
        let mut args = ARGS.to_vec();
        args.push(flag);
        cc(&env, &a.root, false, compiler, &args);
        let stored = std::fs::read(a.obj()).unwrap();
        env.stop();
        std::fs::remove_dir_all(a.root.join("out")).unwrap();
        env.zero();
        cc(&env, &a.root, false, compiler, &args);
        assert_eq!(hits_misses(&env.stats()), (1, 0), "{compiler}");
        assert_eq!(std::fs::read(a.obj()).unwrap(), stored, "{compiler}");
        if compiler == "gcc" {
            let gcda = a.root.join("out/main.gcda");
            let needle = gcda.to_string_lossy().into_owned();
            let text = String::from_utf8_lossy(&stored).into_owned();
            assert!(text.contains(&needle), "gcc embeds {needle}");
        }
        cc(&env, &b.root, false, compiler, &args);
        assert_eq!(
            hits_misses(&env.stats()),
            (1, 1),
            "{compiler}: other checkout"
        );
    }
}

#[test]
fn time_macros_turn_direct_mode_off() {
    let env = Env::new();
    let p = Project::new(&env, "p");
    write(
        &p.root.join("include/value.h"),
        "#define VALUE 41\nstatic const char *built = __TIME__;\n",
    );
    // First: a direct-mode miss finds the macro and turns direct mode off.
    // Then every lookup preprocesses; the __TIME__ text changes each
    // second, so a hit only ever replays the same second's object.
    cc(&env, &p.root, false, "gcc", ARGS);
    env.stop();
    cc(&env, &p.root, false, "gcc", ARGS);
    let s = env.stats();
    assert_eq!(
        count(&s, "cache_misses"),
        1,
        "statistics restart with the daemon"
    );
    assert_eq!(count(&s, "cache_hits"), 0);
    // A source without time macros keeps direct mode.
    write(&p.root.join("include/value.h"), "#define VALUE 41\n");
    let mut d = ARGS.to_vec();
    d.push("-DPLAIN");
    cc(&env, &p.root, false, "gcc", &d);
    env.stop();
    cc(&env, &p.root, false, "gcc", &d);
    assert_eq!(hits_misses(&env.stats()), (1, 0));
}

#[test]
fn mmd_uses_the_preprocessor_and_hits() {
    let env = Env::new();
    let p = Project::new(&env, "p");
    let mut args = ARGS.to_vec();
    args.extend(["-MMD", "-MF", "out/main.d"]);
    cc(&env, &p.root, false, "clang", &args);
    let dep = std::fs::read_to_string(p.root.join("out/main.d")).unwrap();
    assert!(
        !dep.contains("stdio.h"),
        "-MMD leaves system headers out: {dep}"
    );
    env.stop();
    std::fs::remove_dir_all(p.root.join("out")).unwrap();
    cc(&env, &p.root, false, "clang", &args);
    assert_eq!(hits_misses(&env.stats()), (1, 0));
    assert_eq!(
        std::fs::read_to_string(p.root.join("out/main.d")).unwrap(),
        dep
    );
    // A header edit changes the preprocessed text.
    write(&p.root.join("include/value.h"), "#define VALUE 7\n");
    cc(&env, &p.root, false, "clang", &args);
    assert_eq!(hits_misses(&env.stats()), (1, 1));
}

#[test]
fn cache_buster_and_cxx_are_keyed_and_counted() {
    let env = Env::new();
    let p = Project::new(&env, "p");
    write(
        &p.root.join("src/lib.cc"),
        "#include <vector>\nint n() { return std::vector<int>(3).size(); }\n",
    );
    let args = ["-c", "src/lib.cc", "-o", "out/lib.o"];
    cc(&env, &p.root, false, "g++", &args);
    env.stop();
    cc(&env, &p.root, false, "g++", &args);
    assert_eq!(lang_hits(&env, "c++"), 1);
    let mut busted = env.command(BIN);
    let out = busted
        .args(["g++"])
        .args(args)
        .current_dir(&p.root)
        .env("CACHEPOT_C_CUSTOM_CACHE_BUSTER", "x")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(hits_misses(&env.stats()), (1, 1));
}

#[test]
fn non_compiles_and_other_programs_are_passed_through_with_a_reason() {
    let env = Env::new();
    let p = Project::new(&env, "p");
    cc(&env, &p.root, false, "gcc", ARGS);
    // Linking, preprocessing only, a program that is no C compiler.
    cc(
        &env,
        &p.root,
        false,
        "gcc",
        &["out/main.o", "-shared", "-o", "out/libm.so"],
    );
    let pre = cc(
        &env,
        &p.root,
        false,
        "gcc",
        &["-Iinclude", "-E", "src/main.c"],
    );
    assert!(String::from_utf8_lossy(&pre.stdout).contains("value(void)"));
    let echo = cc(&env, &p.root, false, "echo", &["-c", "x.c"]);
    assert_eq!(String::from_utf8_lossy(&echo.stdout), "-c x.c\n");
    // A failing compile fails, with the compiler's message.
    let bad = env
        .command(BIN)
        .args(["gcc", "-c", "missing.c"])
        .current_dir(&p.root)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.c"));
    let s = env.stats();
    let reasons = &s["non_cacheable_reasons"];
    assert_eq!(reasons["linking"], 1, "{s}");
    assert_eq!(reasons["preprocessing only"], 1, "{s}");
    assert_eq!(reasons["unsupported compiler"], 1, "{s}");
}

#[test]
fn a_link_named_after_the_compiler_wraps_it() {
    let env = Env::new();
    let p = Project::new(&env, "p");
    let bin = env.root.path().join("links");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["gcc", "cc"] {
        std::os::unix::fs::symlink(BIN, bin.join(name)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    std::fs::create_dir_all(p.root.join("out")).unwrap();
    for (i, name) in ["gcc", "cc"].into_iter().enumerate() {
        if i > 0 {
            env.stop();
        }
        let out = env
            .command(name)
            .args(ARGS)
            .current_dir(&p.root)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert_ok(&out);
    }
    // `cc` is gcc on this machine: the same compiler, known by what it
    // says it is, so the second compile hits.
    assert_eq!(hits_misses(&env.stats()), (1, 0));
}

#[test]
fn c_compiled_by_a_build_script_through_the_cc_crate_hits() {
    // With build scripts run as they are, the cc crate's compile itself.
    let mut env = Env::new();
    env.extra
        .push(("CACHEPOT_BUILD_SCRIPTS".into(), "off".into()));
    let co = env.checkout_cc("a");
    env.build(&co, &[]);
    let s = env.rebuild_fresh(&co, &[]);
    let c = &s["languages"]["c"];
    assert_eq!(c["hits"], 1, "{s}");
    assert_eq!(c["misses"], 0, "{s}");
    assert_eq!(run(&co), "5");
    // A header edit reaches the binary.
    write(&co.ws.join("include/add.h"), "#define OFFSET 10\n");
    env.build(&co, &[]);
    assert_eq!(run(&co), "15");
    let s = env.stats();
    assert_eq!(s["languages"]["c"]["misses"], 1, "{s}");
    // The binary's arguments are the same; the native library it links
    // (libadd.a, found through -L) is not: it misses and is linked again.
    // (The fresh rebuild before hit every Rust compile.)
    assert_eq!(s["languages"]["rust"]["misses"], 1, "{s}");
}

fn run(co: &crate::harness::Checkout) -> String {
    let out = std::process::Command::new(co.target.join("debug/cnative"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn side_outputs_assembler_and_objective_c_are_restored() {
    let env = Env::new();
    let p = Project::new(&env, "p");
    write(
        &p.root.join("src/start.S"),
        "#define VALUE 7\n.globl seven\nseven:\n  mov $VALUE, %eax\n  ret\n",
    );
    write(&p.root.join("src/plain.s"), ".globl one\none:\n  ret\n");
    write(
        &p.root.join("src/obj.m"),
        "int objc_value(void) { return 3; }\n",
    );
    let compiles: [(&str, &[&str], &[&str]); 5] = [
        (
            "gcc",
            &[
                "-gsplit-dwarf",
                "-g",
                "-c",
                "src/main.c",
                "-Iinclude",
                "-o",
                "out/split.o",
            ],
            &["out/split.o", "out/split.dwo"],
        ),
        (
            "gcc",
            &[
                "--coverage",
                "-c",
                "src/main.c",
                "-Iinclude",
                "-o",
                "out/cov.o",
            ],
            &["out/cov.o", "out/cov.gcno"],
        ),
        (
            "gcc",
            &["-c", "src/start.S", "-o", "out/start.o"],
            &["out/start.o"],
        ),
        (
            "gcc",
            &["-c", "src/plain.s", "-o", "out/plain.o"],
            &["out/plain.o"],
        ),
        (
            "clang",
            &["-c", "src/obj.m", "-o", "out/obj.o"],
            &["out/obj.o"],
        ),
    ];
    // What the missed compiles wrote (gcc's coverage notes carry a stamp
    // that differs on every run, so the reference is the stored run's).
    for (compiler, args, _) in &compiles {
        cc(&env, &p.root, false, compiler, args);
    }
    let read_all = |files: &[&str]| -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|f| std::fs::read(p.root.join(f)).unwrap())
            .collect()
    };
    let stored: Vec<_> = compiles.iter().map(|(_, _, f)| read_all(f)).collect();
    env.stop();
    std::fs::remove_dir_all(p.root.join("out")).unwrap();
    for (compiler, args, _) in &compiles {
        cc(&env, &p.root, false, compiler, args);
    }
    let s = env.stats();
    assert_eq!(hits_misses(&s), (5, 0), "{s}");
    assert_eq!(s["languages"]["asm"]["hits"], 2, "{s}");
    assert_eq!(s["languages"]["objective-c"]["hits"], 1, "{s}");
    for ((_, args, files), want) in compiles.iter().zip(stored) {
        assert!(read_all(files) == want, "{args:?}: restored files differ");
    }
}

#[test]
fn a_precompiled_header_in_the_include_path_is_not_cached() {
    let env = Env::new();
    let p = Project::new(&env, "p");
    // gcc uses value.h.gch for `#include "value.h"` and names neither file
    // in the dependency file: a cached object could outlive a header edit.
    let gch = cc(
        &env,
        &p.root,
        true,
        "gcc",
        &[
            "-x",
            "c-header",
            "include/value.h",
            "-o",
            "include/value.h.gch",
        ],
    );
    assert!(gch.status.success());
    cc(&env, &p.root, false, "gcc", ARGS);
    let s = env.stats();
    assert_eq!(hits_misses(&s), (0, 0), "{s}");
    assert_eq!(
        s["non_cacheable_reasons"]["precompiled header use"], 1,
        "{s}"
    );
}

#[test]
fn build_script_c_hits_in_another_checkout() {
    // The `cc` crate compiles with debug info in the dev profile and runs
    // in the package's directory (under `CARGO_HOME` for registry crates):
    // shared by default, keyed under exact paths; `-ffile-prefix-map` in
    // CFLAGS makes the objects themselves the same in every checkout.
    let mut env = Env::new();
    env.extra
        .push(("CACHEPOT_BUILD_SCRIPTS".into(), "off".into()));
    let (a, b, c) = (
        env.checkout_cc("a"),
        env.checkout_cc("b"),
        env.checkout_cc("c"),
    );
    env.build(&a, &[]);
    env.stop();
    env.zero();
    env.build(&c, &[]);
    let s = env.stats();
    assert_eq!(s["languages"]["c"]["hits"], 1, "{s}");
    assert_eq!(s["languages"]["c"]["misses"], 0, "{s}");
    assert_eq!(run(&c), "5");
    env.extra
        .push(("CACHEPOT_PATH_POLICY".into(), "exact".into()));
    std::fs::remove_dir_all(&a.target).unwrap();
    env.build(&a, &[]);
    env.stop();
    env.zero();
    std::fs::remove_dir_all(&c.target).unwrap();
    env.build(&c, &[]);
    let s = env.stats();
    assert_eq!(s["languages"]["c"]["misses"], 1, "{s}");
    assert_eq!(s["languages"]["c"]["hits"], 0, "{s}");
    env.extra.retain(|(k, _)| k != "CACHEPOT_PATH_POLICY");
    // With a map, the objects are the same everywhere, and the binary works.
    let map = |co: &crate::harness::Checkout| format!("-ffile-prefix-map={}=.", co.ws.display());
    env.build(&a, &[("CFLAGS", &map(&a))]);
    env.stop();
    env.zero();
    env.build(&b, &[("CFLAGS", &map(&b))]);
    let s = env.stats();
    assert_eq!(s["languages"]["c"]["hits"], 1, "{s}");
    assert_eq!(s["languages"]["c"]["misses"], 0, "{s}");
    assert_eq!(run(&b), "5");
}

#[test]
fn clang_and_clang_plus_plus_are_one_binary_with_two_keys() {
    // clang++ compiles a `.c` file as C++: same binary, another object.
    let env = Env::new();
    let p = Project::new(&env, "p");
    cc(&env, &p.root, false, "clang", ARGS);
    let as_c = std::fs::read(p.obj()).unwrap();
    env.stop();
    cc(&env, &p.root, false, "clang++", ARGS);
    assert_eq!(hits_misses(&env.stats()), (0, 1));
    assert_ne!(as_c, std::fs::read(p.obj()).unwrap());
}

#[test]
fn files_the_assembler_reads_and_device_outputs_are_never_cached() {
    let env = Env::new();
    let p = Project::new(&env, "p");
    // `.incbin` in inline asm reads a file that no dependency file names.
    write(&p.root.join("blob.bin"), "one");
    write(
        &p.root.join("src/blob.c"),
        "__asm__(\".section .rodata\\nblob: .incbin \\\"blob.bin\\\"\\n.previous\");\n",
    );
    let args = ["-c", "src/blob.c", "-o", "out/blob.o"];
    cc(&env, &p.root, false, "gcc", &args);
    env.stop();
    write(&p.root.join("blob.bin"), "two");
    cc(&env, &p.root, false, "gcc", &args);
    let with_two = std::fs::read(p.obj().with_file_name("blob.o")).unwrap();
    cc(&env, &p.root, true, "gcc", &args);
    assert_eq!(
        with_two,
        std::fs::read(p.obj().with_file_name("blob.o")).unwrap()
    );
    // Writing to a device: the compiler runs, nothing is stored.
    cc(
        &env,
        &p.root,
        false,
        "gcc",
        &["-Iinclude", "-c", "src/main.c", "-o", "/dev/null"],
    );
    let s = env.stats();
    assert_eq!(hits_misses(&s), (0, 0), "{s}");
    let reasons = &s["non_cacheable_reasons"];
    assert_eq!(reasons["assembler includes files"], 1, "{s}");
    assert_eq!(reasons["output is not a regular file"], 1, "{s}");
    // /dev/null is still the device.
    use std::os::unix::fs::FileTypeExt;
    let dev_null = Path::new("/dev/null").metadata().unwrap();
    assert!(dev_null.file_type().is_char_device());
}

#[test]
fn march_native_is_cached_by_what_it_expands_to() {
    for compiler in COMPILERS {
        let env = Env::new();
        let p = Project::new(&env, "native");
        let mut args = ARGS.to_vec();
        args.push("-march=native");
        cc(&env, &p.root, true, compiler, &args);
        let plain_obj = std::fs::read(p.obj()).unwrap();
        cc(&env, &p.root, false, compiler, &args);
        let s = env.stats();
        assert_eq!(hits_misses(&s), (0, 1), "{compiler}: {s}");
        assert_eq!(count(&s, "non_cacheable"), 0, "{compiler}: {s}");
        std::fs::remove_file(p.obj()).unwrap();
        cc(&env, &p.root, false, compiler, &args);
        assert_eq!(lang_hits(&env, "c"), 1, "{compiler}");
        assert_eq!(std::fs::read(p.obj()).unwrap(), plain_obj, "{compiler}");
        // Another native option, another expansion: its own entry.
        let mut tune = ARGS.to_vec();
        tune.push("-mtune=native");
        cc(&env, &p.root, false, compiler, &tune);
        let s = env.stats();
        assert_eq!(hits_misses(&s), (1, 2), "{compiler}: {s}");
    }
}
