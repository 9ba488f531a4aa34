//! Tests of the configuration (`config.rs`).

#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn the_c_cache_buster_is_the_variable_the_key_reads() {
    let v = &C_CUSTOM_CACHE_BUSTER;
    assert_eq!(
        [v.name, v.sccache.unwrap_or_default()],
        cachepot_compiler::c::key::CACHE_BUSTER
    );
}

#[test]
fn keyed_variables_are_split_sorted_and_checked() {
    assert_eq!(
        check_key_env(parse_key_env(" FLAVOR,DATABASE_URL\tB  FLAVOR,")).unwrap(),
        ["B", "DATABASE_URL", "FLAVOR"]
    );
    assert!(parse_key_env(" , ").is_empty());
    let err = check_key_env(vec!["A=B".into()]).unwrap_err().to_string();
    assert!(
        err.contains("CACHEPOT_KEY_ENV") && err.contains("A=B"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "key_env = [\"SQLX_OFFLINE\", \"FLAVOR\"]\n").unwrap();
    let f = read_file(&p).unwrap();
    assert_eq!(
        f.key_env,
        Some(vec!["SQLX_OFFLINE".to_string(), "FLAVOR".to_string()])
    );
}

#[test]
fn the_keyed_variables_choose_the_daemon() {
    let a = Config {
        dir: PathBuf::from("/c"),
        cache_size: 1 << 30,
        idle_timeout: None,
        basedirs: Vec::new(),
        local: true,
        remote: None,
        remote_timeout: Duration::from_secs(30),
        compile_wait: Duration::from_secs(300),
        path_policy: cachepot_compiler::PathPolicy::Share,
        prefetch: 16,
        verify_ppm: 0,
        key_env: Vec::new(),
        build_scripts: true,
        build_scripts_skip: Vec::new(),
        reapi: None,
        reapi_execute: false,
    };
    let mut b = a.clone();
    b.key_env = vec!["FLAVOR".into()];
    // A daemon started without FLAVOR must never serve a build that
    // keys it.
    assert_ne!(a.fingerprint(), b.fingerprint());
    let mut exact = a.clone();
    exact.path_policy = cachepot_compiler::PathPolicy::Exact;
    assert_ne!(a.fingerprint(), exact.fingerprint());
    let mut executing = a.clone();
    executing.reapi_execute = true;
    assert_ne!(a.fingerprint(), executing.fingerprint());
    assert_eq!(a.fingerprint(), a.clone().fingerprint());
}

#[test]
fn sizes() {
    assert_eq!(parse_size("500M"), Some(500 << 20));
    assert_eq!(parse_size("20G"), Some(20 << 30));
    assert_eq!(parse_size("10GiB"), Some(10 << 30));
    assert_eq!(parse_size("1.5K"), Some(1536));
    assert_eq!(parse_size("123"), Some(123));
    for bad in ["", "G", "12X", "-1G", "0"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn config_file_unknown_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "dir = \"/x\"\ncache_sise = \"1G\"\n").unwrap();
    let err = format!("{:#}", read_file(&p).unwrap_err());
    assert!(err.contains("cache_sise"), "{err}");
    std::fs::write(
        &p,
        "dir = \"/x\"\ncache_size = \"1G\"\nbasedirs = [\"/w\"]\n",
    )
    .unwrap();
    let f = read_file(&p).unwrap();
    assert_eq!(f.dir, Some(PathBuf::from("/x")));
    assert_eq!(f.basedirs, Some(vec![PathBuf::from("/w")]));
    assert!(read_file(&dir.path().join("missing.toml"))
        .unwrap()
        .dir
        .is_none());
}

#[test]
fn backend_sections_fill_in_unset_variables_and_unknown_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[s3]\nbucket = \"b\"\nuse_ssl = false\n[redis]\ndb = 3\n",
    )
    .unwrap();
    let f = read_file(&p).unwrap();
    assert_eq!(f.value("s3.bucket").as_deref(), Some("b"));
    assert_eq!(f.value("s3.use_ssl").as_deref(), Some("false"));
    assert_eq!(f.value("redis.db").as_deref(), Some("3"));
    assert_eq!(f.value("gcs.bucket"), None);
    std::fs::write(&p, "[s3]\nbuckett = \"b\"\n").unwrap();
    let err = format!("{:#}", read_file(&p).unwrap_err());
    assert!(
        err.contains("s3.buckett") && err.contains("s3.bucket"),
        "{err}"
    );
}

#[test]
fn every_variable_is_documented_in_the_readme() {
    let readme = include_str!("../../../README.md");
    for v in ALL.iter().filter(|v| v.name != INTERNAL_DAEMON.name) {
        assert!(
            readme.contains(&format!("`{}`", v.name)),
            "README lacks {}",
            v.name
        );
        if let Some(k) = v.key {
            assert!(
                readme.contains(&format!("`{k}`")),
                "README lacks config key {k}"
            );
        }
    }
}
