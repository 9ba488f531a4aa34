//! Caching real builds: identical outputs, other checkouts, and misses.

#![allow(clippy::unwrap_used)]

use crate::harness::{
    count, hits_misses, lib_outputs, run_app, Env, SCRIPT_RUNS, UNITS, WITH_PROC_MACRO,
};

/// Cacheable units in the fixture: `itoa` and `util` (the binary and the
/// build script are linked, which is a later issue's job).
const CACHEABLE: u64 = UNITS;

#[test]
fn a_cached_rebuild_is_byte_identical_to_an_uncached_build() {
    let env = Env::new();
    let co = env.checkout("a");
    env.cargo_with(&co, false, &["build"], &[]);
    let reference = lib_outputs(&co.target);
    assert_eq!(
        reference.len(),
        10,
        "{:?}",
        reference.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&co.target).unwrap();

    env.build(&co, &[]);
    assert_eq!(
        lib_outputs(&co.target),
        reference,
        "cold cached build differs"
    );
    let s = env.stats();
    assert_eq!(count(&s, "cache_misses"), CACHEABLE);
    env.stop();

    std::fs::remove_dir_all(&co.target).unwrap();
    env.zero();
    env.build(&co, &[]);
    let s = env.stats();
    assert_eq!(count(&s, "cache_hits"), CACHEABLE, "{s}");
    assert_eq!(count(&s, "cache_misses"), 0, "{s}");
    assert_eq!(
        lib_outputs(&co.target),
        reference,
        "restored outputs differ"
    );
    assert_eq!(run_app(&co), "hello 42");

    // cargo accepts what was restored: a second build compiles nothing.
    let out = env.build(&co, &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Compiling"));
}

#[test]
fn another_checkout_with_another_cargo_home_hits_every_unit() {
    let env = Env::new();
    let a = env.checkout("first");
    env.build(&a, &[]);
    env.stop();

    let b = env.checkout("second-checkout-elsewhere");
    assert_ne!(a.home, b.home);
    env.zero();
    env.build(&b, &[]);
    let s = env.stats();
    assert_eq!(count(&s, "cache_hits"), CACHEABLE, "{s}");
    assert_eq!(count(&s, "cache_misses"), 0, "{s}");
    assert_eq!(run_app(&b), "hello 42");
    // Restored dep-info names this checkout's files, not the first one's.
    for (name, bytes) in lib_outputs(&b.target) {
        if name.ends_with(".d") {
            let text = String::from_utf8(bytes).unwrap();
            assert!(!text.contains(a.ws.to_str().unwrap()), "{name}: {text}");
            assert!(!text.contains(a.home.to_str().unwrap()), "{name}: {text}");
            assert!(text.contains(b.target.to_str().unwrap()), "{name}: {text}");
        }
    }
    // cargo's freshness check accepts the restored dep-info.
    let out = env.build(&b, &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Compiling"));
}

/// Builds once, changes one input, builds again, and returns (hits, misses).
fn rebuild_after(
    change: impl FnOnce(&crate::harness::Checkout),
    env_vars: &[(&str, &str)],
    features: bool,
) -> (u64, u64, String) {
    let env = Env::new();
    let co = env.checkout("c");
    env.build(&co, &[]);
    env.stop();
    std::fs::remove_dir_all(&co.target).unwrap();
    change(&co);
    env.zero();
    let args: &[&str] = if features {
        &["build", "--features", "loud"]
    } else {
        &["build"]
    };
    env.cargo_with(&co, true, args, env_vars);
    let s = env.stats();
    (
        count(&s, "cache_hits"),
        count(&s, "cache_misses"),
        run_app(&co),
    )
}

#[test]
fn a_source_change_in_a_dependency_misses_that_crate_only() {
    let (hits, misses, out) = rebuild_after(
        |co| {
            let p = co.ws.join("util/src/lib.rs");
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("\"hello\"", "\"howdy\"");
            std::fs::write(p, text).unwrap();
        },
        &[],
        false,
    );
    // util and the app that links it; itoa and the build script hit.
    assert_eq!((hits, misses), (2, 2));
    assert_eq!(out, "howdy 42");
}

#[test]
fn a_change_to_a_module_file_misses() {
    let (hits, misses, out) = rebuild_after(
        |co| {
            let p = co.ws.join("util/src/shout.rs");
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("    s\n}", "    s + \"?\"\n}");
            std::fs::write(p, text).unwrap();
        },
        &[],
        false,
    );
    assert_eq!((hits, misses), (2, 2));
    assert_eq!(out, "hello 42?");
}

#[test]
fn an_env_var_read_with_option_env_misses() {
    let (hits, misses, out) = rebuild_after(|_| {}, &[("FIXTURE_GREETING", "bonjour")], false);
    assert_eq!((hits, misses), (2, 2));
    assert_eq!(out, "bonjour 42");
}

#[test]
fn a_feature_change_misses() {
    let (hits, misses, out) = rebuild_after(|_| {}, &[], true);
    // The build script sees the feature too.
    assert_eq!((hits, misses), (1, 3));
    assert_eq!(out, "HELLO 42!");
}

#[test]
fn a_rustflags_change_misses_everything() {
    let (hits, misses, out) = rebuild_after(|_| {}, &[("RUSTFLAGS", "-C opt-level=1")], false);
    assert_eq!((hits, misses), (0, CACHEABLE));
    assert_eq!(out, "hello 42");
}

#[test]
fn cargo_check_is_cached_too() {
    let env = Env::new();
    let co = env.checkout("chk");
    env.cargo_with(&co, true, &["check"], &[]);
    env.stop();
    std::fs::remove_dir_all(&co.target).unwrap();
    env.zero();
    env.cargo_with(&co, true, &["check"], &[]);
    let s = env.stats();
    assert_eq!(count(&s, "cache_misses"), 0, "{s}");
    assert_eq!(count(&s, "cache_hits"), CACHEABLE, "{s}");
}

#[test]
fn clippy_runs_are_cached_apart_from_rustc_runs() {
    let env = Env::new();
    let co = env.checkout("clippy");
    // Lints from clippy must never come back from a plain rustc entry.
    std::fs::write(
        co.ws.join("util/src/extra.rs"),
        "pub fn len(v: &Vec<u8>) -> usize {\n    v.len()\n}\n",
    )
    .unwrap();
    let lib = co.ws.join("util/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("pub mod extra;\n{text}")).unwrap();
    env.cargo_with(&co, true, &["check"], &[]);
    env.stop();
    std::fs::remove_dir_all(&co.target).unwrap();
    env.zero();
    let first = env.cargo_with(&co, true, &["clippy"], &[]);
    let first_err = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(
        first_err.contains("ptr_arg") || first_err.contains("&Vec"),
        "{first_err}"
    );
    let s = env.stats();
    // itoa is compiled by rustc as in `cargo check`; util, its build
    // script and the app by clippy-driver.
    assert_eq!(hits_misses(&s), (1, 3), "{s}");
    env.stop();

    std::fs::remove_dir_all(&co.target).unwrap();
    env.zero();
    let second = env.cargo_with(&co, true, &["clippy"], &[]);
    let s = env.stats();
    assert_eq!(hits_misses(&s), (CACHEABLE, 0), "{s}");
    // The replayed lint is the same warning cargo showed the first time.
    assert!(String::from_utf8_lossy(&second.stderr).contains("ptr_arg"));
}

/// A proc-macro's crate hash depends on where it was built, so crates below
/// it are keyed by its exact content. Cached, the second checkout restores
/// the first one's proc-macro byte for byte, and every crate below it hits
/// (compiled against that very file); rustc accepts the mix.
#[test]
fn a_proc_macro_and_the_crates_below_it_hit_in_another_checkout() {
    let env = Env::new();
    let a = env.checkout_with("macro-a", WITH_PROC_MACRO);
    env.build(&a, &[]);
    env.stop();
    let b = env.checkout_with("macro-b-elsewhere", WITH_PROC_MACRO);
    env.zero();
    env.build(&b, &[]);
    let s = env.stats();
    assert_eq!(hits_misses(&s), (CACHEABLE + 1, 0), "{s}");
    assert_eq!(run_app(&b), "hello 42");
}

#[test]
fn recache_compiles_and_overwrites_and_no_cache_bypasses_the_cache() {
    let env = Env::new();
    let co = env.checkout("modes");
    env.build(&co, &[]);
    let s = env.rebuild_fresh(&co, &[("CACHEPOT_RECACHE", "1")]);
    assert_eq!(hits_misses(&s), (0, CACHEABLE), "{s}");
    // Compiles and the build script's run are stored again.
    assert_eq!(
        count(&s, "cache_writes") + count(&s, "pending_writes"),
        CACHEABLE + SCRIPT_RUNS,
        "{s}"
    );
    env.stop();

    std::fs::remove_dir_all(&co.target).unwrap();
    env.zero();
    env.build(&co, &[("CACHEPOT_NO_CACHE", "1")]);
    let s = env.stats();
    assert_eq!(count(&s, "compile_requests"), 0, "{s}");
    assert_eq!(run_app(&co), "hello 42");

    std::fs::remove_dir_all(&co.target).unwrap();
    env.build(&co, &[]);
    assert_eq!(count(&env.stats(), "cache_hits"), CACHEABLE);
}

/// Incremental compiles (cargo's default for workspace members in the dev
/// profile) hit; a hit leaves rustc's session directory alone, and the next
/// edit compiles correctly from whatever session state is there.
#[test]
fn incremental_builds_hit_and_later_edits_compile_correctly() {
    let env = Env::new();
    let co = env.checkout("inc");
    let inc = [("CARGO_INCREMENTAL", "1")];
    let shout = co.ws.join("util/src/shout.rs");
    let original = std::fs::read_to_string(&shout).unwrap();
    env.build(&co, &inc);
    let s = env.rebuild_fresh(&co, &inc);
    assert_eq!(hits_misses(&s), (CACHEABLE, 0), "{s}");
    assert_eq!(count(&s, "non_cacheable"), 0, "{s}");
    assert!(co.target.join("debug/incremental").is_dir());
    // v2 compiled (session state v2), back to v1 (a hit: outputs of v1,
    // session state still v2), then v3: must be v3.
    std::fs::write(&shout, original.replace("s\n}", "s + \"?\"\n}")).unwrap();
    env.build(&co, &inc);
    assert_eq!(run_app(&co), "hello 42?");
    env.stop();
    std::fs::write(&shout, &original).unwrap();
    env.zero();
    env.build(&co, &inc);
    assert_eq!(hits_misses(&env.stats()), (2, 0));
    assert_eq!(run_app(&co), "hello 42");
    std::fs::write(&shout, original.replace("s\n}", "s + \"!\"\n}")).unwrap();
    env.build(&co, &inc);
    assert_eq!(run_app(&co), "hello 42!");
}

/// Two builds of one project, started together with an empty cache (two
/// worktrees, two CI jobs on one runner): each unit is compiled once, and
/// the other build waits for it and hits.
#[test]
fn two_builds_at_once_compile_each_unit_once() {
    let env = Env::new();
    let (a, b) = (env.checkout("twin-a"), env.checkout("twin-b"));
    env.cachepot(&["--start-server"]);
    let start = |co: &crate::harness::Checkout| {
        env.cargo_command(co, true)
            .args(["build", "--offline"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut ca, mut cb) = (start(&a), start(&b));
    assert!(ca.wait().unwrap().success() && cb.wait().unwrap().success());
    let s = env.stats();
    assert_eq!(hits_misses(&s), (CACHEABLE, CACHEABLE), "{s}");
    assert_eq!(run_app(&a), "hello 42");
    assert_eq!(run_app(&b), "hello 42");
}
