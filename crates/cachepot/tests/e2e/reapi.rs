//! `cachepot --check-remote` against BuildGrid on loopback: the store-only
//! server, the one that executes (with the test worker of
//! `scripts/reapi_worker.py`), and the usual mistakes.

#![allow(clippy::unwrap_used)]

use crate::harness::{Env, BIN};
use crate::remote::server;

/// Runs `--check-remote` with these settings: exit code and output.
fn check(env: &Env, settings: &[(&str, String)]) -> (Option<i32>, String) {
    let mut c = env.command(BIN);
    c.arg("--check-remote");
    for (k, v) in settings {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_store_only_engine_is_checked_as_a_store() {
    let env = Env::new();
    let (code, text) = check(
        &env,
        &[("CACHEPOT_REAPI_ENDPOINT", server("CACHEPOT_TEST_REAPI"))],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("digests SHA256"), "{text}");
    assert!(
        text.contains("write: ok") && text.contains("read: ok"),
        "{text}"
    );
    assert!(text.contains("execution: not offered"), "{text}");
}

#[test]
fn an_executing_engine_runs_the_check_action() {
    let env = Env::new();
    let (code, text) = check(
        &env,
        &[(
            "CACHEPOT_REAPI_ENDPOINT",
            server("CACHEPOT_TEST_REAPI_EXEC"),
        )],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("execution yes"), "{text}");
    assert!(text.contains("executes actions"), "{text}");
}

#[test]
fn the_usual_mistakes_are_named() {
    let env = Env::new();
    let (code, text) = check(
        &env,
        &[
            ("CACHEPOT_REAPI_ENDPOINT", server("CACHEPOT_TEST_REAPI")),
            ("CACHEPOT_REAPI_INSTANCE", "no-such-instance".into()),
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("CACHEPOT_REAPI_INSTANCE"), "{text}");
    let (code, text) = check(
        &env,
        &[("CACHEPOT_REAPI_ENDPOINT", "grpc://127.0.0.1:1".into())],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot be reached"), "{text}");
    // A TLS engine: its CA not trusted, or spoken to without TLS.
    let tls = server("CACHEPOT_TEST_REAPI_TLS");
    let (code, text) = check(&env, &[("CACHEPOT_REAPI_ENDPOINT", tls.clone())]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("CACHEPOT_REAPI_CA_FILE"), "{text}");
    let plain = tls.replace("grpcs://", "grpc://");
    let (code, text) = check(&env, &[("CACHEPOT_REAPI_ENDPOINT", plain)]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("grpcs://"), "{text}");
    let (code, text) = check(
        &env,
        &[
            ("CACHEPOT_REAPI_ENDPOINT", tls),
            ("CACHEPOT_REAPI_CA_FILE", server("CACHEPOT_TEST_TLS_CA")),
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = check(&env, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("CACHEPOT_REAPI_ENDPOINT"), "{text}");
}
