//! The REAPI store against a CAS that offers zstd compressed blobs and
//! refuses uncompressed transfers (`scripts/reapi_zstd_cas.py`, started by
//! `scripts/services.sh start`; `CACHEPOT_TEST_REAPI_ZSTD`): no engine
//! installable here offers a compressor.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cachepot_dist::{Reapi, ReapiSettings};
use cachepot_storage::{Storage, StorageKey};

#[test]
fn values_move_compressed_both_ways_where_the_server_offers_it() {
    let endpoint = std::env::var("CACHEPOT_TEST_REAPI_ZSTD").unwrap_or_else(|_| {
        panic!("CACHEPOT_TEST_REAPI_ZSTD is not set: run `scripts/services.sh start` and export `scripts/services.sh env`")
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let store = Reapi::new(
        ReapiSettings {
            endpoint,
            key_prefix: format!("z{nanos}-"),
            ..ReapiSettings::default()
        },
        Duration::from_secs(30),
    )
    .unwrap();
    let small = StorageKey::new("z-small").unwrap();
    assert_eq!(store.get(&small).unwrap(), None);
    store.put(&small, b"hello, compressed").unwrap();
    assert_eq!(
        store.get(&small).unwrap().as_deref(),
        Some(&b"hello, compressed"[..])
    );
    // Over the batch limit (4 MiB): ByteStream's compressed-blobs.
    let big: Vec<u8> = (0..9_000_000u32).map(|i| (i / 5) as u8).collect();
    let key = StorageKey::new("z-big").unwrap();
    store.put(&key, &big).unwrap();
    assert_eq!(store.get(&key).unwrap(), Some(big));
}
