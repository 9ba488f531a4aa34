//! Remote execution of misses (`CACHEPOT_REAPI_EXECUTE`) on the executing
//! BuildGrid of `scripts/services.sh`, whose workers
//! (`scripts/reapi_worker.py`) run each action in a sandbox that sees only
//! its input root and the system's directories.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};

use crate::harness::{count, hits_misses, run_app, Checkout, Env, UNITS, WITH_PROC_MACRO};
use crate::remote::{server, unique};

/// The fixture's library compiles (itoa and util) run on the engine; the
/// proc-macro crate, util's build script and the app are linked, so they
/// run here.
const REMOTE_UNITS: u64 = 2;
const LINKED_UNITS: u64 = 3;

/// Settings for executing on `endpoint`, storing there under `prefix`.
fn executing(endpoint: String, prefix: &str) -> Vec<(String, String)> {
    vec![
        ("CACHEPOT_REAPI_ENDPOINT".into(), endpoint),
        ("CACHEPOT_REAPI_EXECUTE".into(), "1".into()),
        ("CACHEPOT_REAPI_KEY_PREFIX".into(), prefix.into()),
    ]
}

fn remote_counts(s: &serde_json::Value) -> (u64, u64) {
    (
        count(s, "remote_executions"),
        count(s, "remote_execution_failures"),
    )
}

/// The library outputs of a build, by file name (rlib, rmeta, dep-info).
fn library_outputs(co: &Checkout) -> Vec<(String, Vec<u8>)> {
    let deps = co.target.join("debug/deps");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&deps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            (n.starts_with("libitoa") || n.starts_with("libutil"))
                && (n.ends_with(".rlib") || n.ends_with(".rmeta"))
                || ((n.starts_with("itoa-") || n.starts_with("util-")) && n.ends_with(".d"))
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn libraries_compile_on_the_engine_as_they_would_here() {
    let prefix = unique("exec");
    let mut env = Env::new();
    env.extra = executing(server("CACHEPOT_TEST_REAPI_EXEC"), &prefix);
    let co = env.checkout_with("exec", WITH_PROC_MACRO);
    env.build(&co, &[]);
    assert_eq!(run_app(&co), "hello 42");
    let s = env.stats();
    assert_eq!(remote_counts(&s), (REMOTE_UNITS, 0), "{s}");
    assert_eq!(
        s["remote_execution"]["kept_local"]["linked crate"].as_u64(),
        Some(LINKED_UNITS),
        "{s}"
    );
    // The sources went up (and the toolchain, unless an earlier test
    // sent it); the rlibs came down.
    assert!(count(&s["remote_execution"], "bytes_uploaded") > 0, "{s}");
    assert!(count(&s["remote_execution"], "bytes_downloaded") > 0, "{s}");
    let remote = library_outputs(&co);
    assert_eq!(
        remote.len(),
        6,
        "{:?}",
        remote.iter().map(|r| &r.0).collect::<Vec<_>>()
    );

    // The same checkout compiled here: the engine unreachable, every
    // library compile falls back. The files are the same bytes.
    env.stop();
    std::fs::remove_dir_all(&co.target).unwrap();
    let mut here = Env::new();
    here.extra = executing("grpc://127.0.0.1:1".into(), &prefix);
    here.extra
        .push(("CACHEPOT_REMOTE_TIMEOUT".into(), "2".into()));
    here.build(&co, &[]);
    assert_eq!(run_app(&co), "hello 42");
    let s = here.stats();
    assert_eq!(remote_counts(&s), (0, REMOTE_UNITS), "{s}");
    let local = library_outputs(&co);
    assert_eq!(
        remote.iter().map(|r| &r.0).collect::<Vec<_>>(),
        local.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in remote.iter().zip(&local) {
        assert!(a == b, "{name} differs between the engine and here");
    }

    // A second machine (its own cache and checkout) gets every unit from
    // the engine's action cache, the toolchain is not sent again.
    let mut second = Env::new();
    second.extra = executing(server("CACHEPOT_TEST_REAPI_EXEC"), &prefix);
    let co2 = second.checkout_with("exec-2", WITH_PROC_MACRO);
    second.build(&co2, &[]);
    assert_eq!(run_app(&co2), "hello 42");
    let s = second.stats();
    assert_eq!(hits_misses(&s), (UNITS + 1, 0), "{s}");
    assert_eq!(remote_counts(&s), (0, 0), "{s}");
}

#[test]
fn a_compile_error_on_the_engine_is_the_compilers_own() {
    let broken: &[(&str, &str)] = &[(
        "util/src/shout.rs",
        "pub fn maybe(s: String) -> String {\n    s + 1\n}\n",
    )];
    let mut env = Env::new();
    let co = env.checkout_with("error", broken);
    let cargo = |env: &Env, cached: bool| {
        let mut c = env.cargo_command(&co, cached);
        c.args(["build", "--offline", "-j1"]);
        c.output().unwrap()
    };
    let plain = cargo(&env, false);
    std::fs::remove_dir_all(&co.target).unwrap();
    env.extra = executing(server("CACHEPOT_TEST_REAPI_EXEC"), &unique("error"));
    let remote = cargo(&env, true);
    assert_eq!(plain.status.code(), Some(101));
    assert_eq!(remote.status.code(), plain.status.code());
    // rustc's messages, without cargo's progress lines.
    let messages = |o: &std::process::Output| -> String {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| !l.trim_start().starts_with("Compiling"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        messages(&plain).contains("util/src/shout.rs"),
        "{}",
        messages(&plain)
    );
    assert_eq!(messages(&remote), messages(&plain));
    let s = env.stats();
    // itoa and util ran there; util's error is counted as a failure of
    // the compile, not of the engine.
    assert_eq!(remote_counts(&s), (2, 0), "{s}");
    assert_eq!(count(&s, "compile_failures"), 1, "{s}");
}

/// A relay in front of the executing engine, killed by the fixture's
/// build script.
fn relay(to: &str) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/latency_proxy.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--target", to])
        .args(["--delay-ms", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    (child, format!("grpc://127.0.0.1:{port}"))
}

#[test]
fn an_engine_gone_mid_build_leaves_it_green() {
    let engine = server("CACHEPOT_TEST_REAPI_EXEC");
    let (mut child, endpoint) = relay(engine.trim_start_matches("grpc://"));
    let mut env = Env::new();
    env.extra = executing(endpoint, &unique("gone"));
    env.extra
        .push(("CACHEPOT_REMOTE_TIMEOUT".into(), "2".into()));
    let co = env.checkout("gone");
    let took = env.build_killing(&co, child.id());
    let _ = child.wait();
    assert_eq!(run_app(&co), "hello 42");
    let s = env.stats();
    // util compiles after its build script killed the relay: it runs
    // here, counted.
    let (ran, failed) = remote_counts(&s);
    assert!(failed >= 1, "{s}");
    assert_eq!(ran + failed, REMOTE_UNITS, "{s}");
    assert!(took < std::time::Duration::from_secs(120), "took {took:?}");
}

#[test]
fn execute_without_an_engine_is_named() {
    let env = Env::new();
    for (value, endpoint, says) in [
        (
            "1",
            None,
            "CACHEPOT_REAPI_EXECUTE needs CACHEPOT_REAPI_ENDPOINT",
        ),
        (
            "maybe",
            Some(server("CACHEPOT_TEST_REAPI_EXEC")),
            "CACHEPOT_REAPI_EXECUTE: expected true or false",
        ),
    ] {
        let mut c = env.command(crate::harness::BIN);
        c.arg("--start-server")
            .env("CACHEPOT_REAPI_EXECUTE", value)
            .env_remove("CACHEPOT_REAPI_ENDPOINT");
        if let Some(e) = endpoint {
            c.env("CACHEPOT_REAPI_ENDPOINT", e);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

/// Crates the worker cannot compile as this machine would: each runs
/// here, counted, and the build is what a local one gives.
const TRAPS: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        "[workspace]\nmembers = [\"app\", \"util\", \"envy\", \"readme\"]\nresolver = \"2\"\n",
    ),
    ("README.md", "read from outside the package\n"),
    (
        "envy/Cargo.toml",
        "[package]\nname = \"envy\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    ),
    // HOME is not sent to the engine.
    (
        "envy/src/lib.rs",
        "pub fn home() -> Option<&'static str> {\n    option_env!(\"HOME\")\n}\n",
    ),
    (
        "readme/Cargo.toml",
        "[package]\nname = \"readme\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    ),
    // A file outside the package directory is not sent.
    (
        "readme/src/lib.rs",
        "pub const TEXT: &str = include_str!(\"../../README.md\");\n",
    ),
    (
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nutil = { path = \"../util\" }\nenvy = { path = \"../envy\" }\nreadme = { path = \"../readme\" }\n",
    ),
    (
        "app/src/main.rs",
        "fn main() {\n    println!(\"{}\", util::greeting());\n    assert_eq!(envy::home(), option_env!(\"HOME\"));\n    assert!(readme::TEXT.starts_with(\"read from\"));\n    assert!(util::OUT.ends_with(\"out\"));\n}\n",
    ),
    // The worker's OUT_DIR would be embedded as a value.
    (
        "util/src/lib.rs",
        "mod shout;\ninclude!(concat!(env!(\"OUT_DIR\"), \"/generated.rs\"));\n\npub const OUT: &str = env!(\"OUT_DIR\");\n\npub fn greeting() -> String {\n    let base = option_env!(\"FIXTURE_GREETING\").unwrap_or(\"hello\");\n    let mut buf = itoa::Buffer::new();\n    let n = buf.format(ANSWER);\n    shout::maybe(format!(\"{base} {n}\"))\n}\n",
    ),
];

#[test]
fn what_the_worker_would_compile_otherwise_runs_here() {
    let mut env = Env::new();
    env.extra = executing(server("CACHEPOT_TEST_REAPI_EXEC"), &unique("traps"));
    let co = env.checkout_with("traps", TRAPS);
    env.build(&co, &[("HOME", "/home/cachepot-test")]);
    assert_eq!(run_app(&co), "hello 42");
    let s = env.stats();
    // itoa ran there; util, envy and readme here.
    assert_eq!(remote_counts(&s), (1, 3), "{s}");
    let reasons = &s["remote_execution"]["failure_reasons"];
    assert_eq!(reasons["worker path in output"].as_u64(), Some(1), "{s}");
    assert_eq!(
        reasons["environment differs on worker"].as_u64(),
        Some(1),
        "{s}"
    );
    // rustc stops before its dep-info when include_str! finds no file.
    let missing = reasons["input missing on worker"].as_u64().unwrap_or(0)
        + reasons["error without dep-info"].as_u64().unwrap_or(0);
    assert_eq!(missing, 1, "{s}");
}

/// A `RUSTC` script may add arguments or variables the engine would not
/// see: its library compiles run here.
#[test]
fn a_compiler_script_keeps_its_compiles_here() {
    let mut env = Env::new();
    env.extra = executing(server("CACHEPOT_TEST_REAPI_EXEC"), &unique("script"));
    let co = env.checkout("script");
    let script = env.root.path().join("rustc-script");
    std::fs::write(&script, "#!/bin/sh\nexec rustc \"$@\"\n").unwrap();
    let st = Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    assert!(st.success());
    env.build(&co, &[("RUSTC", script.to_str().unwrap())]);
    assert_eq!(run_app(&co), "hello 42");
    let s = env.stats();
    assert_eq!(remote_counts(&s), (0, 0), "{s}");
    assert_eq!(
        s["remote_execution"]["kept_local"]["compiler is not the toolchain's rustc"].as_u64(),
        Some(REMOTE_UNITS),
        "{s}"
    );
}

/// Verify mode compiles the engine's entries again here: no mismatch.
#[test]
fn verify_mode_finds_the_engines_outputs_exact() {
    let mut env = Env::new();
    env.extra = executing(server("CACHEPOT_TEST_REAPI_EXEC"), &unique("verify"));
    let co = env.checkout_with("verify", WITH_PROC_MACRO);
    env.build(&co, &[]);
    assert_eq!(remote_counts(&env.stats()), (REMOTE_UNITS, 0));
    env.extra.push(("CACHEPOT_VERIFY".into(), "1".into()));
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(run_app(&co), "hello 42");
    assert_eq!(count(&s, "verify_mismatches"), 0, "{s}");
    assert!(count(&s, "verified") >= REMOTE_UNITS, "{s}");
    assert_eq!(
        s["remote_execution"]["kept_local"]["verify"].as_u64(),
        Some(REMOTE_UNITS),
        "{s}"
    );
}
