//! Remote storage against real servers on loopback, started by
//! `scripts/services.sh start` (which `scripts/test-all.sh` runs). A test
//! whose server is not configured fails: it never skips.

#![allow(clippy::unwrap_used)]

use crate::harness::{count, hits_misses, lib_outputs, run_app, Env, SCRIPT_RUNS, UNITS};

/// The `CACHEPOT_TEST_*` value that `scripts/services.sh env` prints.
pub fn server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the test servers with `scripts/services.sh start` and export `scripts/services.sh env`, or run `bash scripts/test-all.sh`")
    })
}

/// Settings that point cachepot at one backend, with a prefix of its own
/// so that tests sharing a server do not see each other's entries.
pub fn backend(kind: &str, prefix: &str) -> Vec<(String, String)> {
    let v = |k: &str, val: String| (k.to_string(), val);
    match kind {
        "s3" => vec![
            v("CACHEPOT_BUCKET", "cachepot-test".into()),
            v("CACHEPOT_ENDPOINT", server("CACHEPOT_TEST_S3")),
            v("CACHEPOT_S3_KEY_PREFIX", prefix.into()),
            v("AWS_ACCESS_KEY_ID", server("CACHEPOT_TEST_S3_KEY")),
            v("AWS_SECRET_ACCESS_KEY", server("CACHEPOT_TEST_S3_SECRET")),
        ],
        // A production S3 store (Garage), beside the s3s-fs test server.
        "garage" => vec![
            v("CACHEPOT_BUCKET", "cachepot-test".into()),
            v("CACHEPOT_ENDPOINT", server("CACHEPOT_TEST_GARAGE")),
            v("CACHEPOT_REGION", server("CACHEPOT_TEST_GARAGE_REGION")),
            v("CACHEPOT_S3_KEY_PREFIX", prefix.into()),
            v("AWS_ACCESS_KEY_ID", server("CACHEPOT_TEST_GARAGE_KEY")),
            v(
                "AWS_SECRET_ACCESS_KEY",
                server("CACHEPOT_TEST_GARAGE_SECRET"),
            ),
        ],
        "redis" => vec![
            v("CACHEPOT_REDIS_ENDPOINT", server("CACHEPOT_TEST_REDIS")),
            v(
                "CACHEPOT_REDIS_PASSWORD",
                server("CACHEPOT_TEST_REDIS_PASSWORD"),
            ),
            v("CACHEPOT_REDIS_KEY_PREFIX", prefix.into()),
        ],
        "redis-tls" => vec![
            v("CACHEPOT_REDIS_ENDPOINT", server("CACHEPOT_TEST_REDIS_TLS")),
            v("CACHEPOT_REDIS_KEY_PREFIX", prefix.into()),
            // The test CA, trusted the way the system's store would be.
            v("SSL_CERT_FILE", server("CACHEPOT_TEST_TLS_CA")),
        ],
        "redis-cluster" => vec![
            v(
                "CACHEPOT_REDIS_CLUSTER_ENDPOINTS",
                server("CACHEPOT_TEST_REDIS_CLUSTER"),
            ),
            v("CACHEPOT_REDIS_KEY_PREFIX", prefix.into()),
        ],
        "memcached" => vec![
            v(
                "CACHEPOT_MEMCACHED_ENDPOINT",
                server("CACHEPOT_TEST_MEMCACHED"),
            ),
            v("CACHEPOT_MEMCACHED_KEY_PREFIX", prefix.into()),
        ],
        "gcs" => vec![
            v("CACHEPOT_GCS_BUCKET", "cachepot-test".into()),
            v("CACHEPOT_GCS_ENDPOINT", server("CACHEPOT_TEST_GCS")),
            v("CACHEPOT_GCS_KEY_PREFIX", prefix.into()),
        ],
        "azure" => vec![
            v(
                "CACHEPOT_AZURE_CONNECTION_STRING",
                server("CACHEPOT_TEST_AZURITE"),
            ),
            v("CACHEPOT_AZURE_BLOB_CONTAINER", "cachepot-test".into()),
            v("CACHEPOT_AZURE_KEY_PREFIX", prefix.into()),
        ],
        "azure-account" => {
            // The same Azurite account, given as name, key and endpoint.
            let conn = server("CACHEPOT_TEST_AZURITE");
            let field = |name: &str| {
                conn.split(';')
                    .find_map(|p| p.strip_prefix(&format!("{name}=")))
                    .unwrap_or_else(|| panic!("{name} in {conn}"))
                    .to_string()
            };
            vec![
                v("CACHEPOT_AZURE_ACCOUNT_NAME", field("AccountName")),
                v("CACHEPOT_AZURE_ACCOUNT_KEY", field("AccountKey")),
                v("CACHEPOT_AZURE_ENDPOINT", field("BlobEndpoint")),
                v("CACHEPOT_AZURE_BLOB_CONTAINER", "cachepot-test".into()),
                v("CACHEPOT_AZURE_KEY_PREFIX", prefix.into()),
            ]
        }
        "webdav" => vec![
            v("CACHEPOT_WEBDAV_ENDPOINT", server("CACHEPOT_TEST_WEBDAV")),
            v(
                "CACHEPOT_WEBDAV_USERNAME",
                server("CACHEPOT_TEST_WEBDAV_USER"),
            ),
            v(
                "CACHEPOT_WEBDAV_PASSWORD",
                server("CACHEPOT_TEST_WEBDAV_PASSWORD"),
            ),
            v("CACHEPOT_WEBDAV_KEY_PREFIX", prefix.into()),
        ],
        // A Remote Execution API engine's Action Cache and CAS (BuildGrid),
        // on its named instance.
        "reapi" => vec![
            v("CACHEPOT_REAPI_ENDPOINT", server("CACHEPOT_TEST_REAPI")),
            v("CACHEPOT_REAPI_INSTANCE", "cachepot".into()),
            v("CACHEPOT_REAPI_KEY_PREFIX", prefix.into()),
        ],
        other => panic!("unknown backend {other}"),
    }
}

/// A prefix no other test run uses.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// Builds once into an empty remote (local tier off), then again with a
/// fresh target directory: every cacheable unit must come from the remote.
fn round_trip(kind: &str) {
    let mut env = Env::new();
    env.extra = backend(kind, &unique(kind));
    env.extra.push(("CACHEPOT_LOCAL".into(), "off".into()));
    let co = env.checkout(kind);
    env.build(&co, &[]);
    let s = env.stats();
    assert_eq!(count(&s, "cache_misses"), UNITS, "{s}");
    assert_eq!(count(&s, "cache_errors"), 0, "{s}");
    let cold = lib_outputs(&co.target);
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s), (UNITS, 0), "{s}");
    assert_eq!(
        s["cache_location"].as_str().map(|l| l.is_empty()),
        Some(false)
    );
    assert_eq!(lib_outputs(&co.target), cold);
    assert_eq!(run_app(&co), "hello 42");
    // The backend's own counters: the entries, and their manifests (of
    // compiles and of build-script runs).
    let b = &s["backends"][0];
    let expected_kind = if kind == "garage" {
        "s3"
    } else {
        kind.split('-').next().unwrap()
    };
    assert_eq!(b["kind"].as_str(), Some(expected_kind), "{s}");
    assert_eq!(b["hits"].as_u64(), Some(2 * (UNITS + SCRIPT_RUNS)), "{s}");
    assert!(b["bytes_read"].as_u64().unwrap() > 0, "{s}");
    // And the probe works.
    let (code, text) = env.check_storage();
    assert!(
        code == Some(0) && text.contains("All storage works"),
        "{text}"
    );
}

#[test]
fn s3_round_trip() {
    round_trip("s3");
}

#[test]
fn garage_round_trip() {
    round_trip("garage");
}

#[test]
fn redis_round_trip() {
    round_trip("redis");
}

#[test]
fn redis_tls_round_trip() {
    round_trip("redis-tls");
}

#[test]
fn redis_cluster_round_trip() {
    round_trip("redis-cluster");
}

#[test]
fn memcached_round_trip() {
    round_trip("memcached");
}

#[test]
fn gcs_round_trip() {
    round_trip("gcs");
}

#[test]
fn azure_round_trip() {
    round_trip("azure");
}

#[test]
fn azure_with_account_name_and_key_round_trip() {
    round_trip("azure-account");
}

#[test]
fn webdav_round_trip() {
    round_trip("webdav");
}

#[test]
fn reapi_round_trip() {
    round_trip("reapi");
}

/// Builds on one machine (its own local cache directory) into an empty
/// remote, then on a second machine (another local cache directory, the
/// same remote): every cacheable unit comes from the remote. Returns the
/// first machine (stopped, its writes done; its local cache directory
/// holds every entry sent) and its statistics after the build.
fn two_machines(kind: &str) -> (Env, serde_json::Value) {
    let prefix = unique(&format!("machines-{kind}"));
    let first = {
        let mut env = Env::new();
        env.extra = backend(kind, &prefix);
        env
    };
    let co = first.checkout("m1");
    first.build(&co, &[]);
    let s = first.stats();
    assert_eq!(hits_misses(&s), (0, UNITS), "{s}");
    first.stop();
    // Another machine: its own local cache directory, the same remote.
    let mut second = Env::new();
    second.extra = backend(kind, &prefix);
    let co2 = second.checkout("m2");
    second.build(&co2, &[]);
    let s2 = second.stats();
    assert_eq!(hits_misses(&s2), (UNITS, 0), "{s2}");
    assert_eq!(run_app(&co2), "hello 42");
    second.stop();
    // The hits were written back to its local tier.
    assert!(std::fs::read_dir(second.cache.join("v1")).unwrap().count() > 0);
    (first, s)
}

#[test]
fn a_second_machine_fills_its_local_tier_from_the_remote() {
    two_machines("s3");
}

/// The largest file under `dir`, in bytes.
fn largest_file(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                largest_file(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .max()
        .unwrap_or(0)
}

/// The fixture's binary with debug info makes an entry over Memcached's
/// default 1 MiB item limit; the test server runs with `-I 64m`, which
/// cachepot asks for, so the binary goes to the second machine too.
#[test]
fn memcached_carries_entries_over_one_mib_to_a_second_machine() {
    let (first, s) = two_machines("memcached");
    assert_eq!(s["backends"][1]["kind"].as_str(), Some("memcached"), "{s}");
    // The test means something only if an entry is over 1 MiB.
    let largest = largest_file(&first.cache.join("v1"));
    assert!(largest > 1 << 20, "largest entry {largest} bytes");
    // The limit came from the server (logged at the first write, which the
    // stopped daemon finished).
    let log = std::fs::read_to_string(s["log_file"].as_str().unwrap()).unwrap();
    assert!(log.contains("item_size_max=67108864"), "{log}");
}

/// A Redis URL with a password (or a user and a password) and a database,
/// under each variable that takes one (sccache's `SCCACHE_REDIS` included):
/// the first fills that database, the others hit there. Entries land in
/// that database, and the passwords are shown nowhere.
#[test]
fn redis_urls_carry_credentials_and_database() {
    let server_url = server("CACHEPOT_TEST_REDIS");
    let addr = server_url.strip_prefix("redis://").unwrap().to_string();
    let password = server("CACHEPOT_TEST_REDIS_PASSWORD");
    let user = server("CACHEPOT_TEST_REDIS_USER");
    let user_password = server("CACHEPOT_TEST_REDIS_USER_PASSWORD");
    let encoded = user_password
        .replace('%', "%25")
        .replace('@', "%40")
        .replace(':', "%3A")
        .replace('/', "%2F");
    assert_ne!(encoded, user_password, "the ACL password needs encoding");
    let db = 7;
    let prefix = unique("redis-url");
    let cases = [
        (
            "CACHEPOT_REDIS_ENDPOINT",
            format!("redis://:{password}@{addr}/{db}"),
        ),
        (
            "SCCACHE_REDIS_ENDPOINT",
            format!("redis://{user}:{encoded}@{addr}/{db}"),
        ),
        (
            "SCCACHE_REDIS",
            format!("redis://:{password}@{addr}/?db={db}"),
        ),
    ];
    for (i, (var, url)) in cases.iter().enumerate() {
        let mut env = Env::new();
        env.extra = vec![
            (var.to_string(), url.clone()),
            ("CACHEPOT_REDIS_KEY_PREFIX".into(), prefix.clone()),
            ("CACHEPOT_LOCAL".into(), "off".into()),
        ];
        let co = env.checkout("url");
        env.build(&co, &[]);
        let mut s = env.stats();
        if i == 0 {
            assert_eq!(hits_misses(&s), (0, UNITS), "{var}: {s}");
            s = env.rebuild_fresh(&co, &[]);
        }
        assert_eq!(hits_misses(&s), (UNITS, 0), "{var}: {s}");
        assert_eq!(count(&s, "cache_errors"), 0, "{var}: {s}");
        let location = s["backends"][0]["location"].as_str().unwrap();
        assert_eq!(
            location,
            format!("{server_url} db {db}/{prefix}"),
            "{var}: {s}"
        );
        env.stop();
        let log = std::fs::read_to_string(s["log_file"].as_str().unwrap()).unwrap();
        for secret in [&password, &user_password, &encoded] {
            assert!(!s.to_string().contains(secret.as_str()), "{var}: {s}");
            assert!(!log.contains(secret.as_str()), "{var}: {log}");
        }
    }
    // The entries are in database 7, none in database 0.
    let keys = |db: u32| {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let out = std::process::Command::new("redis-cli")
            .args(["-h", host, "-p", port, "--no-auth-warning", "-a", &password])
            .args(["-n", &db.to_string(), "--scan", "--pattern"])
            .arg(format!("*{prefix}*"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().lines().count()
    };
    assert!(keys(db) >= 2 * UNITS as usize, "{}", keys(db));
    assert_eq!(keys(0), 0);
}

/// The variable that makes `kind` read-only.
fn rw_mode_var(kind: &str) -> &'static str {
    match kind {
        "s3" => "CACHEPOT_S3_RW_MODE",
        "redis" => "CACHEPOT_REDIS_RW_MODE",
        "memcached" => "CACHEPOT_MEMCACHED_RW_MODE",
        "gcs" => "CACHEPOT_GCS_RW_MODE",
        "azure" => "CACHEPOT_AZURE_RW_MODE",
        "webdav" => "CACHEPOT_WEBDAV_RW_MODE",
        "reapi" => "CACHEPOT_REAPI_RW_MODE",
        other => panic!("unknown backend {other}"),
    }
}

/// A read-only reader misses and writes nothing; once a writer filled the
/// same prefix, the reader hits.
fn read_only(kind: &str) {
    let prefix = unique(&format!("ro-{kind}"));
    let mut env = Env::new();
    env.extra = backend(kind, &prefix);
    env.extra.push(("CACHEPOT_LOCAL".into(), "off".into()));
    env.extra
        .push((rw_mode_var(kind).into(), "READ_ONLY".into()));
    let co = env.checkout("ro");
    env.build(&co, &[]);
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s), (0, UNITS), "{s}");
    assert_eq!(s["backends"][0]["writes"].as_u64(), Some(0), "{s}");
    env.stop();

    let mut writer = Env::new();
    writer.extra = backend(kind, &prefix);
    writer.extra.push(("CACHEPOT_LOCAL".into(), "off".into()));
    let wco = writer.checkout("w");
    writer.build(&wco, &[]);
    writer.stop();
    std::fs::remove_dir_all(&co.target).unwrap();
    env.zero();
    env.build(&co, &[]);
    assert_eq!(count(&env.stats(), "cache_hits"), UNITS);
}

#[test]
fn read_only_s3() {
    read_only("s3");
}

#[test]
fn read_only_redis() {
    read_only("redis");
}

#[test]
fn read_only_memcached() {
    read_only("memcached");
}

#[test]
fn read_only_gcs() {
    read_only("gcs");
}

#[test]
fn read_only_azure() {
    read_only("azure");
}

#[test]
fn read_only_webdav() {
    read_only("webdav");
}

#[test]
fn a_backend_can_be_set_in_the_config_file() {
    let mut env = Env::new();
    let conf = env.root.path().join("config.toml");
    std::fs::write(
        &conf,
        format!(
            "local = \"off\"\n[s3]\nbucket = \"cachepot-test\"\nendpoint = \"{}\"\nkey_prefix = \"{}\"\n",
            server("CACHEPOT_TEST_S3"),
            unique("conf")
        ),
    )
    .unwrap();
    env.extra = vec![
        ("CACHEPOT_CONF".into(), conf.to_string_lossy().into_owned()),
        ("AWS_ACCESS_KEY_ID".into(), server("CACHEPOT_TEST_S3_KEY")),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            server("CACHEPOT_TEST_S3_SECRET"),
        ),
    ];
    let co = env.checkout("conf");
    env.build(&co, &[]);
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(count(&s, "cache_hits"), UNITS, "{s}");
    assert_eq!(s["backends"][0]["kind"].as_str(), Some("s3"), "{s}");
    // Nothing went to a local disk tier.
    assert!(!env.cache.join("v1").exists());
}

/// A token server for `CACHEPOT_GCS_CREDENTIALS_URL`: answers every request
/// with a token and counts the requests.
fn token_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = r#"{"accessToken":"test-token","expires_in":3600}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, served)
}

#[test]
fn gcs_takes_its_token_from_a_credentials_url() {
    let (url, served) = token_server();
    let mut env = Env::new();
    env.extra = backend("gcs", &unique("gcs-token"));
    env.extra.push(("CACHEPOT_GCS_CREDENTIALS_URL".into(), url));
    env.extra.push(("CACHEPOT_LOCAL".into(), "off".into()));
    let co = env.checkout("token");
    env.build(&co, &[]);
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s), (UNITS, 0), "{s}");
    // One token per daemon: the first build's and the second's.
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn read_only_reapi() {
    read_only("reapi");
}
