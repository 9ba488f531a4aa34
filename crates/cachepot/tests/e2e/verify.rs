//! `CACHEPOT_VERIFY`: hits compiled again and compared with their entries.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::harness::{
    count, hits_misses, lib_outputs, plant_in_entries, run_app, Env, SCRIPT_RUNS, UNITS,
};

/// Rewrites every stored rlib (entry file `link`) with one byte changed.
fn plant_wrong_rlibs(cache: &Path) -> usize {
    plant_in_entries(
        cache,
        |name| name == "link",
        |bytes| {
            let mut bytes = bytes.to_vec();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x55;
            bytes
        },
    )
}

#[test]
fn verify_catches_a_wrong_entry_and_leaves_the_right_output() {
    let mut env = Env::new();
    let co = env.checkout("verify");
    env.build(&co, &[]);
    env.stop();
    let right = lib_outputs(&co.target);
    // itoa's and util's rlibs.
    assert_eq!(plant_wrong_rlibs(&env.cache), 2);

    env.extra.push(("CACHEPOT_VERIFY".into(), "1".into()));
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s), (UNITS, 0), "{s}");
    assert_eq!(count(&s, "verify_mismatches"), 2, "{s}");
    // The build script's run is verified too.
    assert_eq!(count(&s, "verified"), UNITS - 2 + SCRIPT_RUNS, "{s}");
    // The fresh compile's outputs are the ones in place.
    assert_eq!(lib_outputs(&co.target), right);
    assert_eq!(run_app(&co), "hello 42");

    // The wrong entries are gone: without verifying, those two units
    // miss (and store right ones), the others hit.
    env.extra.clear();
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s), (UNITS - 2, 2), "{s}");
    assert_eq!(lib_outputs(&co.target), right);
}

#[test]
fn verify_runs_clean_on_right_entries() {
    let mut env = Env::new();
    let co = env.checkout("verify-clean");
    env.build(&co, &[]);
    env.extra.push(("CACHEPOT_VERIFY".into(), "1".into()));
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s), (UNITS, 0), "{s}");
    assert_eq!(count(&s, "verified"), UNITS + SCRIPT_RUNS, "{s}");
    assert_eq!(count(&s, "verify_mismatches"), 0, "{s}");
    assert_eq!(run_app(&co), "hello 42");
}
