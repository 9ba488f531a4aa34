//! A team on one store: machines (each with its own local cache directory,
//! checkout and `CARGO_HOME`) sharing a remote backend, as laptops and CI
//! runners do. Real servers from `scripts/services.sh`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use crate::harness::{count, files_below, hits_misses, run_app, Checkout, Env, UNITS};
use crate::remote::{backend, server, unique};

/// A machine: its own local tier in front of the shared remote `kind`
/// under `prefix`.
fn machine(kind: &str, prefix: &str) -> Env {
    let mut env = Env::new();
    env.extra = backend(kind, prefix);
    env
}

/// The fixture's binary, edited to version `v`.
fn edit_app(co: &Checkout, v: &str) {
    std::fs::write(
        co.ws.join("app/src/main.rs"),
        format!("fn main() {{\n    println!(\"{{}} {v}\", util::greeting());\n}}\n"),
    )
    .unwrap();
}

/// Builds `co` in a fresh target directory on `env`: hits and misses.
fn fresh_build(env: &Env, co: &Checkout) -> (u64, u64) {
    env.stop();
    if co.target.exists() {
        std::fs::remove_dir_all(&co.target).unwrap();
    }
    env.zero();
    env.build(co, &[]);
    let s = env.stats();
    assert_eq!(count(&s, "cache_errors"), 0, "{s}");
    hits_misses(&s)
}

/// Machine A built v1; machine B stored v2; A, edited to the same v2,
/// hits B's entry although its own local tier holds a manifest list for
/// that unit. A's later store (v3) merges with the remote list instead of
/// overwriting it: a third machine still hits v2.
fn newer_remote_manifests_are_found(kind: &str) {
    let prefix = unique(&format!("team-{kind}"));
    let a = machine(kind, &prefix);
    let co_a = a.checkout("a");
    a.build(&co_a, &[]);
    a.stop();

    let b = machine(kind, &prefix);
    let co_b = b.checkout("b");
    edit_app(&co_b, "v2");
    assert_eq!(fresh_build(&b, &co_b), (UNITS - 1, 1));
    b.stop();

    edit_app(&co_a, "v2");
    assert_eq!(fresh_build(&a, &co_a), (UNITS, 0));
    assert_eq!(run_app(&co_a), "hello 42 v2");
    edit_app(&co_a, "v3");
    assert_eq!(fresh_build(&a, &co_a), (UNITS - 1, 1));
    a.stop();

    let c = machine(kind, &prefix);
    let co_c = c.checkout("c");
    for v in ["v2", "v3"] {
        edit_app(&co_c, v);
        assert_eq!(fresh_build(&c, &co_c), (UNITS, 0), "{v}");
        assert_eq!(run_app(&co_c), format!("hello 42 {v}"));
    }
}

#[test]
fn s3_newer_remote_manifests_are_found() {
    newer_remote_manifests_are_found("s3");
}

#[test]
fn garage_newer_remote_manifests_are_found() {
    newer_remote_manifests_are_found("garage");
}

#[test]
fn redis_newer_remote_manifests_are_found() {
    newer_remote_manifests_are_found("redis");
}

/// Two machines store different versions of one unit at the same moment;
/// each hits its own afterwards.
#[test]
fn two_machines_storing_one_key_at_once_both_hit() {
    let prefix = unique("team-race");
    let (a, b) = (machine("s3", &prefix), machine("s3", &prefix));
    let (co_a, co_b) = (a.checkout("a"), b.checkout("b"));
    edit_app(&co_a, "from-a");
    edit_app(&co_b, "from-b");
    std::thread::scope(|s| {
        s.spawn(|| a.build(&co_a, &[]));
        s.spawn(|| b.build(&co_b, &[]));
    });
    for (env, co, v) in [(&a, &co_a, "from-a"), (&b, &co_b, "from-b")] {
        assert_eq!(fresh_build(env, co), (UNITS, 0), "{v}");
        assert_eq!(run_app(co), format!("hello 42 {v}"));
    }
}

/// `redis-cli` on the test server.
fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-u", &server("CACHEPOT_TEST_REDIS"), "--no-auth-warning"])
        .args(["-a", &server("CACHEPOT_TEST_REDIS_PASSWORD")])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "redis-cli {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The Redis keys of the manifest lists under `prefix`.
fn manifest_list_keys(prefix: &str) -> Vec<String> {
    let keys: Vec<String> = redis_cli(&["--scan", "--pattern", &format!("*{prefix}*m2-*")])
        .lines()
        .filter(|k| !k.ends_with("-saved"))
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "no manifest lists under {prefix}");
    keys
}

/// A lost update, made on purpose: B's manifest list is put back over the
/// one A merged into, as if B's write had landed last. A's next store for
/// that unit merges its local list back in, and a new machine hits A's
/// version again.
#[test]
fn a_manifest_lost_to_a_concurrent_write_comes_back_with_the_next_store() {
    let prefix = unique("team-lost");
    let b = machine("redis", &prefix);
    let co_b = b.checkout("b");
    edit_app(&co_b, "vb");
    b.build(&co_b, &[]);
    b.stop();
    let saved = manifest_list_keys(&prefix);
    for k in &saved {
        redis_cli(&["COPY", k, &format!("{k}-saved"), "REPLACE"]);
    }

    let a = machine("redis", &prefix);
    let co_a = a.checkout("a");
    edit_app(&co_a, "va");
    assert_eq!(fresh_build(&a, &co_a), (UNITS - 1, 1));
    a.stop();
    for k in &saved {
        redis_cli(&["COPY", &format!("{k}-saved"), k, "REPLACE"]);
    }

    // A stores v3 of the same unit: its local list (va, vb) is merged with
    // the remote one (vb) and the new manifest.
    edit_app(&co_a, "v3");
    assert_eq!(fresh_build(&a, &co_a), (UNITS - 1, 1));
    a.stop();

    let c = machine("redis", &prefix);
    let co_c = c.checkout("c");
    for v in ["va", "vb", "v3"] {
        edit_app(&co_c, v);
        assert_eq!(fresh_build(&c, &co_c), (UNITS, 0), "{v}");
    }
}

/// A corrupt local copy is removed from the local tier only: the build
/// restores the remote copy, which stays for the next machine.
#[test]
fn a_corrupt_local_entry_leaves_the_remote_copy_in_place() {
    let prefix = unique("team-corrupt");
    let a = machine("s3", &prefix);
    let co_a = a.checkout("a");
    a.build(&co_a, &[]);
    a.stop();
    let local = files_below(&a.cache.join("v1"));
    assert!(local.len() >= 2 * UNITS as usize);
    for p in &local {
        let mut bytes = std::fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(p, bytes).unwrap();
    }
    let s = a.rebuild_fresh(&co_a, &[]);
    assert_eq!(hits_misses(&s), (UNITS, 0), "{s}");
    assert!(count(&s, "corrupt_entries") >= UNITS, "{s}");
    assert_eq!(run_app(&co_a), "hello 42");
    a.stop();

    let b = machine("s3", &prefix);
    let co_b = b.checkout("b");
    assert_eq!(fresh_build(&b, &co_b), (UNITS, 0));
}

/// Entries of another format version under our keys (a client of another
/// version, or a future one) are misses, counted apart from corruption,
/// and never removed from the shared store.
#[test]
fn an_entry_of_another_format_version_is_a_miss_and_stays() {
    let prefix = unique("team-version");
    let mut writer = machine("webdav", &prefix);
    writer.extra.push(("CACHEPOT_LOCAL".into(), "off".into()));
    let co = writer.checkout("w");
    writer.build(&co, &[]);
    writer.stop();
    let stored = files_below(&Path::new(&server("CACHEPOT_TEST_WEBDAV_DIR")).join(&prefix));
    assert!(stored.len() >= 2 * UNITS as usize);
    for p in &stored {
        let mut bytes = std::fs::read(p).unwrap();
        bytes[4..8].copy_from_slice(&99u32.to_le_bytes());
        std::fs::write(p, bytes).unwrap();
    }

    // A pull-request build: reads the shared store, never writes it.
    let mut reader = machine("webdav", &prefix);
    reader.extra.push(("CACHEPOT_LOCAL".into(), "off".into()));
    reader
        .extra
        .push(("CACHEPOT_WEBDAV_RW_MODE".into(), "READ_ONLY".into()));
    let co_r = reader.checkout("r");
    reader.build(&co_r, &[]);
    let s = reader.stats();
    assert_eq!(hits_misses(&s), (0, UNITS), "{s}");
    assert_eq!(count(&s, "corrupt_entries"), 0, "{s}");
    assert!(count(&s, "other_version_entries") >= UNITS, "{s}");
    reader.stop();
    for p in &stored {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(bytes[4..8], 99u32.to_le_bytes(), "{}", p.display());
    }
}

/// Build-level prefetch: the first compile of a new machine's build (here
/// of `util` alone) starts copying what the workspace's last build used
/// into the local tier (or, with `CACHEPOT_LOCAL=off`, the daemon's
/// scratch tier); the next build (the app) then finds its entry locally
/// and asks the remote nothing.
fn prefetch(local: &str) {
    let prefix = unique(&format!("team-prefetch-{local}"));
    let setup = |env: &mut Env| {
        env.extra.push(("CACHEPOT_PREFETCH".into(), "16".into()));
        env.extra.push(("CACHEPOT_LOCAL".into(), local.into()));
    };
    let mut a = machine("s3", &prefix);
    setup(&mut a);
    let co_a = a.checkout("a");
    a.build(&co_a, &[]);
    // The daemon writes the build's record before it stops.
    a.stop();

    let mut b = machine("s3", &prefix);
    setup(&mut b);
    let co_b = b.checkout("b");
    b.cargo_with(&co_b, true, &["build", "-p", "util"], &[]);
    let s = b.stats();
    assert_eq!(hits_misses(&s), (UNITS - 1, 0), "{s}");
    // The app's manifest list and entry at least: no compile asked for them.
    assert!(count(&s, "prefetched") >= 2, "{s}");
    b.zero();
    b.build(&co_b, &[]);
    let s = b.stats();
    assert_eq!(hits_misses(&s), (1, 0), "{s}");
    let remote = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == "s3")
        .unwrap();
    // Not the app's entry (over a megabyte with its debug info): at most
    // the build record, if the daemon wrote it meanwhile.
    assert!(remote["bytes_read"].as_u64().unwrap() < 100_000, "{s}");
    assert_eq!(run_app(&co_b), "hello 42");
    b.stop();
    // The scratch tier goes with the daemon.
    let leftovers: Vec<_> = std::fs::read_dir(&b.cache)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().starts_with("scratch-")),
        "{leftovers:?}"
    );
}

#[test]
fn a_new_machine_prefetches_what_the_workspace_s_last_build_used() {
    prefetch("on");
}

#[test]
fn a_runner_without_a_local_cache_prefetches_into_its_scratch_tier() {
    prefetch("off");
}
