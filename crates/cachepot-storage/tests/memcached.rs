//! The Memcached backend against the real server started by
//! `scripts/services.sh start` (with `-I 64m`); `scripts/services.sh env`
//! prints `CACHEPOT_TEST_MEMCACHED`. Without it the tests fail: they never
//! skip.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::value;

use cachepot_storage::remote::{Backend, Remote, MEMCACHED_ITEM_OVERHEAD};
use cachepot_storage::{Storage, StorageError, StorageKey};

fn memcached(prefix: &str) -> Remote {
    let endpoint = common::var("CACHEPOT_TEST_MEMCACHED");
    Remote::new(
        Backend::Memcached {
            endpoint,
            prefix: prefix.into(),
            ttl: None,
        },
        Duration::from_secs(30),
    )
    .unwrap()
}

/// A prefix no other test run uses.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

#[test]
fn a_two_mib_value_round_trips() {
    let m = memcached(&unique("mc-2mib"));
    // The server's own limit, not the 1 MiB default.
    assert_eq!(m.value_limit(), Some((64 << 20) - MEMCACHED_ITEM_OVERHEAD));
    let key = StorageKey::new("e-two-mib").unwrap();
    let v = value(2 << 20);
    m.put(&key, &v).unwrap();
    assert_eq!(m.get(&key).unwrap().as_deref(), Some(&v[..]));
    m.remove(&key).unwrap();
    assert_eq!(m.get(&key).unwrap(), None);
}

/// The margin left below `item_size_max` is enough for the longest key
/// memcached takes (250 bytes): a value of exactly the limit is stored,
/// one byte more is refused before it is sent.
#[test]
fn the_largest_value_allowed_fits_with_the_longest_key() {
    // OpenDAL's memcached key is the prefix, a slash and the key: make it
    // 250 bytes with the longest key cachepot writes.
    let name = format!("e-{}", "k".repeat(cachepot_storage::MAX_KEY_LEN - 2));
    let key = StorageKey::new(&name).unwrap();
    let base = unique("mc-limit");
    let prefix = format!(
        "{base}-{}",
        "p".repeat(250 - 1 - name.len() - base.len() - 1)
    );
    let m = memcached(&prefix);
    let limit = m.value_limit().unwrap();
    let v = value(limit as usize);
    m.put(&key, &v).unwrap();
    assert_eq!(m.get(&key).unwrap().map(|g| g.len()), Some(v.len()));
    m.remove(&key).unwrap();
    let over = value(limit as usize + 1);
    match m.put(&key, &over) {
        Err(StorageError::TooLarge { size, limit: l }) => assert_eq!((size, l), (limit + 1, limit)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The key was the longest memcached takes: one byte more is refused.
    let longer = memcached(&format!("{prefix}p"));
    assert!(longer.put(&key, b"x").is_err());
}
