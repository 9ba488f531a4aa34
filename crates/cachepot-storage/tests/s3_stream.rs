//! Streamed uploads (`put_file`, in parts of 8 MiB) against the real S3
//! servers started by `scripts/services.sh start`: s3s-fs and Garage.
//! Without them the test fails: it never skips.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{value, var};

use cachepot_storage::remote::{Backend, Remote};
use cachepot_storage::{Storage, StorageKey};

#[test]
fn a_file_larger_than_one_part_streams_to_each_s3_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("entry");
    let data = value(20 << 20);
    std::fs::write(&path, &data).unwrap();
    let servers = [
        (
            "CACHEPOT_TEST_S3",
            "CACHEPOT_TEST_S3_KEY",
            "CACHEPOT_TEST_S3_SECRET",
            None,
        ),
        (
            "CACHEPOT_TEST_GARAGE",
            "CACHEPOT_TEST_GARAGE_KEY",
            "CACHEPOT_TEST_GARAGE_SECRET",
            Some(var("CACHEPOT_TEST_GARAGE_REGION")),
        ),
    ];
    for (endpoint, key, secret, region) in servers {
        // The credentials come from the standard AWS variables, read when
        // the backend is built (one server at a time: this is the only test
        // of this binary).
        std::env::set_var("AWS_ACCESS_KEY_ID", var(key));
        std::env::set_var("AWS_SECRET_ACCESS_KEY", var(secret));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let remote = Remote::new(
            Backend::S3 {
                bucket: "cachepot-test".into(),
                region,
                endpoint: Some(var(endpoint)),
                prefix: format!("stream-{}-{nanos}", std::process::id()),
                virtual_host: false,
                no_credentials: false,
            },
            Duration::from_secs(60),
        )
        .unwrap();
        let k = StorageKey::new("e2-streamed").unwrap();
        remote.put_file(&k, &path).unwrap();
        let back = remote.get(&k).unwrap().unwrap();
        assert!(back == data, "{endpoint}: {} bytes came back", back.len());
    }
}
