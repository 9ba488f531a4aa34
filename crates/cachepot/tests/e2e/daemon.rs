//! The daemon's life: failures never fail a build, idle exit, replacement
//! by another build, stats and configuration errors.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{count, lib_outputs, run_app, Env, BIN};

fn pid_alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// Waits (bounded) for a condition that the code under test makes true.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killing_the_daemon_mid_build_leaves_the_build_green() {
    let env = Env::new();
    let co = env.checkout("k");
    let pid = count(&env.stats(), "daemon_pid");
    let pidfile = env.root.path().join("pid");
    std::fs::write(&pidfile, pid.to_string()).unwrap();
    // util's build script kills the daemon; util and app compile after that.
    env.build(&co, &[("FIXTURE_KILL_PIDFILE", pidfile.to_str().unwrap())]);
    assert!(!pid_alive(pid), "the daemon should have been killed");
    assert_eq!(run_app(&co), "hello 42");
    // A new daemon answers afterwards.
    assert_ne!(count(&env.stats(), "daemon_pid"), pid);
}

#[test]
fn corrupt_entries_are_misses_counted_and_removed() {
    let env = Env::new();
    let co = env.checkout("corrupt");
    env.build(&co, &[]);
    env.stop();
    let reference = lib_outputs(&co.target);
    let mut corrupted = 0;
    for shard in std::fs::read_dir(env.cache.join("v1")).unwrap() {
        for entry in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let p = entry.unwrap().path();
            let mut bytes = std::fs::read(&p).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&p, bytes).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted >= 4);
    std::fs::remove_dir_all(&co.target).unwrap();
    env.build(&co, &[]);
    let s = env.stats();
    assert!(count(&s, "corrupt_entries") >= 2, "{s}");
    assert_eq!(count(&s, "cache_hits"), 0, "{s}");
    assert_eq!(lib_outputs(&co.target), reference);
    assert_eq!(run_app(&co), "hello 42");
    // Rewritten on the miss: the next build hits.
    assert_eq!(count(&env.rebuild_fresh(&co, &[]), "cache_hits"), 4);
}

#[test]
fn stats_json_has_the_documented_counters() {
    let env = Env::new();
    let s = env.stats();
    for k in [
        "compile_requests",
        "cache_hits",
        "cache_misses",
        "non_cacheable",
        "cache_errors",
        "compile_failures",
    ] {
        assert_eq!(count(&s, k), 0, "{k}");
    }
    assert!(s["non_cacheable_reasons"].is_object());
    let log = s["log_file"].as_str().unwrap();
    assert!(std::path::Path::new(log).starts_with(&env.runtime), "{log}");
    let text = env.cachepot(&["--show-stats"]);
    assert!(
        text.contains("Cache hit rate") && text.contains(log),
        "{text}"
    );
}

#[test]
fn non_cacheable_compiles_are_counted_with_their_reason() {
    let env = Env::new();
    let co = env.checkout("nc");
    env.build(&co, &[("RUSTFLAGS", "-Csave-temps")]);
    let s = env.stats();
    // Temporary files the cache does not know of.
    assert_eq!(
        s["non_cacheable_reasons"]["-C save-temps"].as_u64(),
        Some(4),
        "{s}"
    );
    assert_eq!(count(&s, "compile_requests"), 4, "{s}");
}

#[test]
fn the_daemon_exits_when_idle() {
    let mut env = Env::new();
    env.extra.push(("CACHEPOT_IDLE_TIMEOUT".into(), "1".into()));
    let pid = count(&env.stats(), "daemon_pid");
    assert!(pid_alive(pid));
    wait_until("the idle daemon to exit", Duration::from_secs(20), || {
        !pid_alive(pid)
    });
}

#[test]
fn a_daemon_of_another_build_is_replaced() {
    let env = Env::new();
    let pid = count(&env.stats(), "daemon_pid");
    // A copy of the binary has another mtime, so another build identity.
    let other = env.root.path().join("cachepot-other");
    std::fs::copy(BIN, &other).unwrap();
    let f = std::fs::File::options().write(true).open(&other).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(f);
    // Another test thread may fork while the copy is still open for writing;
    // exec then fails with ETXTBSY until that child has exec'd.
    let out = (0..100)
        .find_map(|_| {
            match env
                .command(other.to_str().unwrap())
                .args(["--show-stats", "--stats-format", "json"])
                .output()
            {
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20));
                    None
                }
                r => Some(r.unwrap()),
            }
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(count(&s, "daemon_pid"), pid);
    wait_until("the old daemon to exit", Duration::from_secs(20), || {
        !pid_alive(pid)
    });
}

#[test]
fn the_foreground_daemon_logs_to_the_terminal_and_serves() {
    let env = Env::new();
    let mut child = env
        .command(BIN)
        .env("CACHEPOT_START_SERVER", "1")
        .env("CACHEPOT_NO_DAEMON", "1")
        .env("CACHEPOT_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening on"), "{first}");
    wait_until("the daemon ready line", Duration::from_secs(20), || {
        lines
            .next()
            .is_some_and(|l| l.unwrap().contains("daemon ready"))
    });
    assert_eq!(count(&env.stats(), "daemon_pid"), u64::from(child.id()));
    env.stop();
    assert!(child.wait().unwrap().success());
}

#[test]
fn many_wrappers_at_once_start_one_daemon() {
    let env = Env::new();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let mut c = env.command(BIN);
            c.args(["--show-stats", "--stats-format", "json"]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    let pids: Vec<u64> = handles
        .into_iter()
        .map(|h| {
            let out = h.join().unwrap();
            assert!(out.status.success());
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            count(&s, "daemon_pid")
        })
        .collect();
    assert!(pids.iter().all(|p| *p == pids[0]), "{pids:?}");
}

#[test]
fn a_malformed_setting_is_named_and_never_fails_a_build() {
    let mut env = Env::new();
    env.extra
        .push(("CACHEPOT_CACHE_SIZE".into(), "lots".into()));
    let out = env.command(BIN).arg("--show-stats").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CACHEPOT_CACHE_SIZE") && err.contains("500M"),
        "{err}"
    );

    let co = env.checkout("bad");
    let out = env.build(&co, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CACHEPOT_CACHE_SIZE"));
    assert_eq!(run_app(&co), "hello 42");
}

#[test]
fn sccache_variable_names_are_accepted() {
    let env = Env::new();
    let other_cache = env.root.path().join("sccache-dir");
    let out = env
        .command(BIN)
        .env_remove("CACHEPOT_DIR")
        .env("SCCACHE_DIR", &other_cache)
        .args(["--show-stats", "--stats-format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        s["cache_location"].as_str(),
        Some(other_cache.to_str().unwrap())
    );
    let _ = env
        .command(BIN)
        .env_remove("CACHEPOT_DIR")
        .env("SCCACHE_DIR", &other_cache)
        .arg("--stop-server")
        .output();
}

#[test]
fn a_backend_that_cannot_be_configured_is_named_to_the_build_which_still_succeeds() {
    let mut env = Env::new();
    // A Memcached endpoint without a port cannot be configured.
    env.extra.push((
        "CACHEPOT_MEMCACHED_ENDPOINT".into(),
        "tcp://127.0.0.1".into(),
    ));
    let co = env.checkout("unconfigurable");
    let out = env.build(&co, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the daemon failed to start") && stderr.contains("port"),
        "{stderr}"
    );
    assert_eq!(run_app(&co), "hello 42");
}
