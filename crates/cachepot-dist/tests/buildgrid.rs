//! The REAPI backend against BuildGrid on loopback (`scripts/services.sh
//! start`; `CACHEPOT_TEST_REAPI` from `scripts/services.sh env`).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cachepot_dist::{Reapi, ReapiSettings};
use cachepot_storage::{Storage, StorageKey};

fn reapi(instance: &str, prefix: &str) -> Reapi {
    let endpoint = std::env::var("CACHEPOT_TEST_REAPI").unwrap_or_else(|_| {
        panic!("CACHEPOT_TEST_REAPI is not set: run `scripts/services.sh start` and export `scripts/services.sh env`")
    });
    Reapi::new(
        ReapiSettings {
            endpoint,
            instance: instance.into(),
            key_prefix: prefix.into(),
            headers: vec![("x-cachepot-test".into(), "1".into())],
            platform: Vec::new(),
            ca_file: None,
            read_only: false,
        },
        Duration::from_secs(30),
    )
    .unwrap()
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}-{nanos}-", std::process::id())
}

#[test]
fn small_and_large_values_round_trip_and_removal_hides_them() {
    // The test server's two instance names share one cache.
    for instance in ["", "cachepot"] {
        let prefix = unique();
        let store = reapi(instance, &prefix);
        let key = StorageKey::new("e2-small").unwrap();
        assert_eq!(store.get(&key).unwrap(), None);
        store.put(&key, b"hello").unwrap();
        assert_eq!(store.get(&key).unwrap().as_deref(), Some(&b"hello"[..]));
        // Over the batch limit (4 MiB): through ByteStream both ways.
        let big: Vec<u8> = (0..9_000_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let key = StorageKey::new("e2-big").unwrap();
        store.put(&key, &big).unwrap();
        assert_eq!(store.get(&key).unwrap(), Some(big));
        store.remove(&key).unwrap();
        assert_eq!(store.get(&key).unwrap(), None);
    }
    // Another prefix does not see them.
    let other = reapi("cachepot", &unique());
    assert_eq!(
        other.get(&StorageKey::new("e2-small").unwrap()).unwrap(),
        None
    );
}

#[test]
fn an_unknown_instance_or_a_dead_engine_is_an_error_not_a_hang() {
    let store = reapi("no-such-instance", &unique());
    assert!(store.get(&StorageKey::new("e2-x").unwrap()).is_err());
    let dead = Reapi::new(
        ReapiSettings {
            endpoint: "grpc://127.0.0.1:1".into(),
            ..ReapiSettings::default()
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert!(dead.get(&StorageKey::new("e2-x").unwrap()).is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
    // A CA file that is not there is named.
    let err = Reapi::new(
        ReapiSettings {
            endpoint: "grpcs://engine.example:443".into(),
            instance: String::new(),
            key_prefix: String::new(),
            headers: Vec::new(),
            platform: Vec::new(),
            ca_file: Some("/no/such/ca.pem".into()),
            read_only: false,
        },
        Duration::from_secs(5),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("/no/such/ca.pem"), "{err}");
}

#[test]
fn tls_works_with_the_engines_ca_and_fails_without_it() {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run `scripts/services.sh start` and export `scripts/services.sh env`")
        })
    };
    let settings = |ca: Option<String>| ReapiSettings {
        endpoint: var("CACHEPOT_TEST_REAPI_TLS"),
        instance: "cachepot".into(),
        key_prefix: unique(),
        headers: Vec::new(),
        platform: Vec::new(),
        ca_file: ca.map(Into::into),
        read_only: false,
    };
    let key = StorageKey::new("e2-tls").unwrap();
    let store = Reapi::new(
        settings(Some(var("CACHEPOT_TEST_TLS_CA"))),
        Duration::from_secs(30),
    )
    .unwrap();
    store.put(&key, b"over tls").unwrap();
    assert_eq!(store.get(&key).unwrap().as_deref(), Some(&b"over tls"[..]));
    // The test CA is not among the system's.
    let untrusted = Reapi::new(settings(None), Duration::from_secs(10)).unwrap();
    assert!(untrusted.get(&key).is_err());
}
