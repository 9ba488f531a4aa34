//! `CACHEPOT_VERIFY`: hits compiled again and compared with their entries.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use cachepot_storage::{Entry, EntryFile, FileData};

use crate::harness::{
    count, files_below, hits_misses, lib_outputs, run_app, Env, SCRIPT_RUNS, UNITS,
};

/// Rewrites every stored rlib (entry file `link`) with one byte changed,
/// as a valid entry under its right key: a wrong artifact that no
/// checksum catches. Returns how many entries were planted.
fn plant_wrong_rlibs(cache: &Path) -> usize {
    let mut planted = 0;
    for path in files_below(cache) {
        let Ok(mut entry) = Entry::decode(&std::fs::read(&path).unwrap()) else {
            continue;
        };
        let Some(file) = entry.files.iter_mut().find(|f| f.name == "link") else {
            continue;
        };
        let mut bytes = file.data.bytes().unwrap().to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        *file = EntryFile {
            data: FileData::Bytes(bytes),
            ..file.clone()
        };
        std::fs::write(&path, entry.encode().unwrap()).unwrap();
        planted += 1;
    }
    planted
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
