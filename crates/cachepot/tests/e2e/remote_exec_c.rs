//! gcc and clang compiles on the executing BuildGrid of `scripts/services.sh`. Its
//! sandboxed workers hide the machine's `/usr/include`, `/usr/lib/gcc`
//! and clang's headers, so an action compiles only with the toolchain and
//! headers it brought.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use crate::harness::{count, hits_misses, Env, BIN};
use crate::remote::{server, unique};

fn executing(env: &mut Env, prefix: &str) {
    env.extra = vec![
        (
            "CACHEPOT_REAPI_ENDPOINT".into(),
            server("CACHEPOT_TEST_REAPI_EXEC"),
        ),
        ("CACHEPOT_REAPI_EXECUTE".into(), "1".into()),
        ("CACHEPOT_REAPI_KEY_PREFIX".into(), prefix.into()),
    ];
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `cachepot COMPILER ARGS…`, or the compiler itself with `plain`, in `dir`.
fn compile(env: &Env, dir: &Path, plain: bool, compiler: &str, args: &[&str]) -> Output {
    compile_with(env, dir, plain, compiler, args, &[])
}

fn compile_with(
    env: &Env,
    dir: &Path,
    plain: bool,
    compiler: &str,
    args: &[&str],
    vars: &[(&str, &Path)],
) -> Output {
    let mut c = if plain {
        env.command(compiler)
    } else {
        let mut c = env.command(BIN);
        c.arg(compiler);
        c
    };
    for (k, v) in vars {
        c.env(k, v);
    }
    c.args(args).current_dir(dir).output().unwrap()
}

/// Compiles `source` in `dir` plainly and through cachepot (with `vars`),
/// and asserts both objects are the same bytes.
fn same_object(env: &Env, dir: &Path, args: &[&str], vars: &[(&str, &Path)]) {
    let mut plain = args.to_vec();
    plain.extend(["-o", "plain.o"]);
    let out = compile_with(env, dir, true, "gcc", &plain, vars);
    assert!(out.status.success(), "{out:?}");
    let mut cached = args.to_vec();
    cached.extend(["-o", "cached.o"]);
    let out = compile_with(env, dir, false, "gcc", &cached, vars);
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read(dir.join("plain.o")).unwrap() == std::fs::read(dir.join("cached.o")).unwrap(),
        "{args:?}: objects differ"
    );
}

/// A C source with system headers, a header through `-I`, `__FILE__`,
/// and a `__has_include` of a file it never includes; a C++ source with
/// the standard library (whose `c++config.h` asks `__has_include` too).
fn project(dir: &Path) {
    write(&dir.join("include/value.h"), "#define VALUE 41\n");
    write(&dir.join("include/probed.h"), "#error never included\n");
    write(
        &dir.join("src/main.c"),
        "#include <stdio.h>\n#include <string.h>\n#include \"value.h\"\n\
         #if __has_include(\"probed.h\")\n#define PROBED 1\n#else\n#define PROBED 0\n#endif\n\
         int probed(void) { return PROBED; }\n\
         int value(const char *s) { printf(\"%s %s\\n\", s, __FILE__); return VALUE + (int)strlen(s); }\n",
    );
    write(
        &dir.join("src/join.cpp"),
        "#include <string>\n#include <vector>\n#include <iostream>\n\
         std::string join(const std::vector<std::string>& v) {\n\
         std::string s; for (auto& x : v) s += x; std::cout << s; return s; }\n",
    );
}

#[test]
fn c_and_cxx_objects_compile_on_the_engine_as_they_would_here() {
    let mut env = Env::new();
    executing(&mut env, &unique("exec-c"));
    let dir = env.root.path().join("proj");
    project(&dir);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let src = dir.join("src/main.c");
    let src = src.to_str().unwrap();
    let c = vec!["-g", "-O1", "-Iinclude", "-c", src];
    let cxx = vec!["-g", "-O1", "-fPIC", "-c", "src/join.cpp"];
    let compiles = [
        ("gcc", c.clone()),
        ("g++", cxx.clone()),
        ("clang", c),
        ("clang++", cxx),
    ];
    for (i, (compiler, args)) in compiles.iter().enumerate() {
        let mut plain = args.clone();
        plain.extend(["-o", "out/plain.o"]);
        let out = compile(&env, &dir, true, compiler, &plain);
        assert!(out.status.success(), "{out:?}");
        let mut cached = args.clone();
        cached.extend(["-o", "out/remote.o"]);
        let out = compile(&env, &dir, false, compiler, &cached);
        assert!(out.status.success(), "{out:?}");
        let s = env.stats();
        assert_eq!(count(&s, "remote_executions"), i as u64 + 1, "{s}");
        assert_eq!(count(&s, "remote_execution_failures"), 0, "{s}");
        assert!(
            std::fs::read(dir.join("out/plain.o")).unwrap()
                == std::fs::read(dir.join("out/remote.o")).unwrap(),
            "{compiler}: the engine's object differs from the local one"
        );
    }
    // The byte-identical C objects also show that the worker's
    // `__has_include` found the header this machine has (PROBED is 1).
    // Another object path is a hit from the store.
    let mut again = compiles[0].1.clone();
    again.extend(["-o", "out/again.o"]);
    let out = compile(&env, &dir, false, "gcc", &again);
    assert!(out.status.success(), "{out:?}");
    let s = env.stats();
    assert_eq!(count(&s, "remote_executions"), 4, "{s}");
    assert_eq!(hits_misses(&s), (1, 4), "{s}");
}

#[test]
fn a_c_compile_error_is_this_machines_and_coverage_stays_here() {
    let mut env = Env::new();
    executing(&mut env, &unique("exec-c-error"));
    let dir = env.root.path().join("proj");
    write(
        &dir.join("src/bad.c"),
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", missing); }\n",
    );
    let args = ["-c", "src/bad.c", "-o", "bad.o"];
    let plain = compile(&env, &dir, true, "gcc", &args);
    let remote = compile(&env, &dir, false, "gcc", &args);
    assert_eq!(plain.status.code(), Some(1));
    assert_eq!(remote.status.code(), plain.status.code());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("missing"));
    assert_eq!(
        String::from_utf8_lossy(&remote.stderr),
        String::from_utf8_lossy(&plain.stderr)
    );
    let s = env.stats();
    // gcc runs several programs, and a failure of the worker's own (its
    // assembler, its disk) would look the same: the error is this
    // machine's.
    assert_eq!(count(&s, "remote_execution_failures"), 1, "{s}");
    assert_eq!(
        s["remote_execution"]["failure_reasons"]["C compile error, compiled here"].as_u64(),
        Some(1),
        "{s}"
    );
    // Coverage notes name the object's path: compiled here, counted
    // under its reason.
    write(&dir.join("src/ok.c"), "int ok(void) { return 1; }\n");
    let args = ["--coverage", "-c", "src/ok.c", "-o", "ok.o"];
    let out = compile(&env, &dir, false, "gcc", &args);
    assert!(out.status.success(), "{out:?}");
    let s = env.stats();
    let kept = &s["remote_execution"]["kept_local"];
    assert_eq!(
        kept["coverage, profiling or split DWARF"].as_u64(),
        Some(1),
        "{s}"
    );
}

#[test]
fn the_cc_crate_compiles_on_the_engine() {
    let mut env = Env::new();
    executing(&mut env, &unique("exec-cc"));
    let co = env.checkout_cc("cc");
    env.build(&co, &[]);
    let out = std::process::Command::new(co.target.join("debug/cnative"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
    let s = env.stats();
    // The C object and the cc crate's libraries ran there; the build
    // script and the binary are linked.
    let rust = s["languages"]["rust"]["misses"].as_u64().unwrap();
    let linked = s["remote_execution"]["kept_local"]["linked crate"].as_u64();
    assert_eq!(linked, Some(2), "{s}");
    assert_eq!(count(&s, "remote_executions"), rust - 2 + 1, "{s}");
    assert_eq!(count(&s, "remote_execution_failures"), 0, "{s}");
    assert_eq!(s["languages"]["c"]["misses"], 1, "{s}");
}

#[test]
fn what_the_worker_cannot_match_compiles_here_and_right() {
    let mut env = Env::new();
    executing(&mut env, &unique("exec-c-here"));
    let dir = env.root.path().join("proj");
    // `inc/sub` is a link: `inc/sub/../config.h` is `other/config.h`, not
    // `inc/config.h`, which is read too.
    write(&dir.join("inc/config.h"), "#define A 1\n");
    write(&dir.join("other/include/x.h"), "");
    write(&dir.join("other/config.h"), "#define B 2\n");
    std::os::unix::fs::symlink(dir.join("other/include"), dir.join("inc/sub")).unwrap();
    write(
        &dir.join("link.c"),
        "#include \"inc/config.h\"\n#include \"inc/sub/../config.h\"\nint ab = A + B;\n",
    );
    // `__has_include` wrapped in a function-like macro: what it asks is
    // not known before the compile.
    write(&dir.join("probe.h"), "");
    write(
        &dir.join("wrapped.c"),
        "#define HAS(x) __has_include(x)\n#if HAS(\"probe.h\")\nint p = 1;\n#else\nint p = 0;\n#endif\n",
    );
    // `__TIMESTAMP__` is the file's time, which the worker's copy lacks.
    write(&dir.join("stamp.c"), "const char *t = __TIMESTAMP__;\n");
    for source in ["link.c", "wrapped.c", "stamp.c"] {
        same_object(&env, &dir, &["-c", source], &[]);
    }
    let s = env.stats();
    assert_eq!(count(&s, "remote_executions"), 0, "{s}");
    assert_eq!(
        s["remote_execution"]["failure_reasons"]["reads what the worker cannot match"].as_u64(),
        Some(3),
        "{s}"
    );
    // Debug information records `$PWD` when it names the directory
    // through a link; a locale the worker may lack changes messages.
    write(&dir.join("real/dbg.c"), "int dbg(void) { return 3; }\n");
    std::os::unix::fs::symlink(dir.join("real"), dir.join("via")).unwrap();
    same_object(
        &env,
        &dir.join("real"),
        &["-g", "-c", "dbg.c"],
        &[("PWD", &dir.join("via"))],
    );
    let de = Path::new("de_DE.UTF-8");
    same_object(&env, &dir.join("real"), &["-c", "dbg.c"], &[("LANG", de)]);
    // An object-like alias (xxHash's form) is followed: it runs there, and
    // its probe sees probe.h.
    write(
        &dir.join("alias.c"),
        "#define HAS __has_include\n#if HAS(\"probe.h\")\nint p = 1;\n#else\nint p = 0;\n#endif\n",
    );
    same_object(&env, &dir, &["-c", "alias.c"], &[]);
    let s = env.stats();
    let kept = &s["remote_execution"]["kept_local"];
    assert_eq!(
        kept["working directory named through a link"].as_u64(),
        Some(1),
        "{s}"
    );
    assert_eq!(
        kept["locale other than C or English UTF-8"].as_u64(),
        Some(1),
        "{s}"
    );
    assert_eq!(count(&s, "remote_executions"), 1, "{s}");
}
