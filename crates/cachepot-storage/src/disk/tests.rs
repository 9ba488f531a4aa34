#![allow(clippy::unwrap_used)]

use super::*;
use std::sync::Arc;

fn key(n: u32) -> StorageKey {
    // Spread keys over several shard directories.
    StorageKey::new(format!("m-{:02x}{n:062x}", n.wrapping_mul(37) % 256)).unwrap()
}

fn set_mtime(path: &Path, t: SystemTime) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

fn temp_files(cache: &DiskCache) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in fs::read_dir(&cache.data_dir).unwrap() {
        for f in fs::read_dir(shard.unwrap().path()).unwrap() {
            let f = f.unwrap();
            if f.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                out.push(f.path());
            }
        }
    }
    out
}

#[test]
fn put_get_round_trip_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    let k = StorageKey::new(format!("e-ab{}", "0".repeat(62))).unwrap();
    cache.put(&k, b"value bytes").unwrap();
    assert_eq!(cache.get(&k).unwrap().as_deref(), Some(&b"value bytes"[..]));
    let expected = dir.path().join("v1").join("ab").join(k.as_str());
    assert_eq!(cache.path_for(&k), expected);
    assert_eq!(fs::read(&expected).unwrap(), b"value bytes");
    assert!(temp_files(&cache).is_empty());

    let info = cache.describe();
    assert_eq!(info.kind, "disk");
    assert_eq!(info.location, dir.path().display().to_string());
    assert_eq!(info.size_bytes, 11);
    assert_eq!(info.max_size_bytes, 1 << 20);
    assert_eq!(info.entries, 1);
}

#[test]
fn short_keys_get_a_shard_too() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    for k in ["a", "m-", "-", "x-y"] {
        let k = StorageKey::new(k).unwrap();
        cache.put(&k, k.as_str().as_bytes()).unwrap();
        assert_eq!(
            cache.get(&k).unwrap().as_deref(),
            Some(k.as_str().as_bytes())
        );
    }
    assert_eq!(cache.describe().entries, 4);
}

#[test]
fn missing_key_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(cache.get(&key(1)).unwrap(), None);
}

#[test]
fn open_creates_missing_dir() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let cache = DiskCache::open(&nested, 100).unwrap();
    assert!(nested.join("v1").is_dir());
    assert_eq!(cache.describe().entries, 0);
}

#[test]
fn overwrite_replaces_value_and_accounting() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    cache.put(&key(1), &[1; 100]).unwrap();
    cache.put(&key(1), &[2; 40]).unwrap();
    assert_eq!(cache.get(&key(1)).unwrap(), Some(vec![2; 40]));
    let info = cache.describe();
    assert_eq!((info.size_bytes, info.entries), (40, 1));
}

#[test]
fn remove_deletes_and_adjusts_totals() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    cache.put(&key(1), &[1; 100]).unwrap();
    cache.put(&key(2), &[2; 50]).unwrap();
    cache.remove(&key(1)).unwrap();
    assert_eq!(cache.get(&key(1)).unwrap(), None);
    assert!(!cache.path_for(&key(1)).exists());
    let info = cache.describe();
    assert_eq!((info.size_bytes, info.entries), (50, 1));
    // Removing a missing key is fine and changes nothing.
    cache.remove(&key(1)).unwrap();
    cache.remove(&key(3)).unwrap();
    assert_eq!(cache.describe().size_bytes, 50);
}

#[test]
fn get_bumps_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    cache.put(&key(1), b"x").unwrap();
    let path = cache.path_for(&key(1));
    let old = ago(10_000);
    set_mtime(&path, old);
    assert_eq!(mtime(&path), old);
    cache.get(&key(1)).unwrap();
    assert!(
        mtime(&path) > ago(1_000),
        "get should refresh the LRU clock"
    );
}

#[test]
fn eviction_removes_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    // Ten 100-byte values fill the cache exactly.
    let cache = DiskCache::open(dir.path(), 1000).unwrap();
    for i in 0..10 {
        cache.put(&key(i), &[i as u8; 100]).unwrap();
        // key(0) oldest ... key(9) newest.
        set_mtime(&cache.path_for(&key(i)), ago(10_000 - u64::from(i) * 100));
    }
    assert_eq!(cache.describe().size_bytes, 1000);
    // Reading key(0) makes it the most recently used.
    assert!(cache.get(&key(0)).unwrap().is_some());

    // One more value pushes the total to 1100 > 1000; eviction goes down
    // to at most 900, so the two least recently used (1 and 2) go.
    cache.put(&key(10), &[10; 100]).unwrap();
    let info = cache.describe();
    assert!(
        info.size_bytes <= 900,
        "size {} over target",
        info.size_bytes
    );
    assert_eq!((info.size_bytes, info.entries), (900, 9));
    for i in 1..=2 {
        assert_eq!(
            cache.get(&key(i)).unwrap(),
            None,
            "key {i} should be evicted"
        );
    }
    for i in [0, 3, 4, 5, 6, 7, 8, 9, 10] {
        assert!(
            cache.get(&key(i)).unwrap().is_some(),
            "key {i} should remain"
        );
    }
}

#[test]
fn eviction_copes_with_files_removed_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1000).unwrap();
    for i in 0..10 {
        cache.put(&key(i), &[0; 100]).unwrap();
        set_mtime(&cache.path_for(&key(i)), ago(10_000 - u64::from(i) * 100));
    }
    // "Another process" deletes two entries; our totals still count them.
    fs::remove_file(cache.path_for(&key(0))).unwrap();
    fs::remove_file(cache.path_for(&key(5))).unwrap();
    assert_eq!(cache.describe().size_bytes, 1000);
    cache.put(&key(10), &[0; 100]).unwrap();
    // The rescan finds 900 bytes: within the limit, so nothing else goes.
    let info = cache.describe();
    assert_eq!((info.size_bytes, info.entries), (900, 9));
    assert!(cache.get(&key(1)).unwrap().is_some());
}

#[test]
fn too_large_value_is_rejected_without_flushing_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1000).unwrap();
    cache.put(&key(1), &[0; 100]).unwrap();
    match cache.put(&key(2), &[0; 901]) {
        Err(StorageError::TooLarge { size, limit }) => assert_eq!((size, limit), (901, 900)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(cache.get(&key(1)).unwrap().is_some());
    assert_eq!(cache.get(&key(2)).unwrap(), None);
    assert!(temp_files(&cache).is_empty());
}

#[test]
fn reopen_sees_existing_size() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(&key(1), &[0; 123]).unwrap();
        cache.put(&key(2), &[0; 77]).unwrap();
    }
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    let info = cache.describe();
    assert_eq!((info.size_bytes, info.entries), (200, 2));
    assert_eq!(cache.get(&key(2)).unwrap(), Some(vec![0; 77]));
}

#[test]
fn open_removes_only_stale_temp_files_and_ignores_them_in_totals() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    cache.put(&key(1), &[0; 10]).unwrap();
    let shard = cache.path_for(&key(1)).parent().unwrap().to_path_buf();
    let stale = shard.join(format!("{TEMP_PREFIX}1.2.3"));
    let fresh = shard.join(format!("{TEMP_PREFIX}4.5.6"));
    fs::write(&stale, [0; 1000]).unwrap();
    fs::write(&fresh, [0; 1000]).unwrap();
    set_mtime(&stale, ago(2 * 60 * 60));
    drop(cache);

    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    assert!(!stale.exists(), "stale temp file should be removed");
    assert!(
        fresh.exists(),
        "a young temp file may belong to a live writer"
    );
    let info = cache.describe();
    assert_eq!((info.size_bytes, info.entries), (10, 1));
}

#[test]
fn concurrent_puts_of_same_key_leave_a_complete_value() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(DiskCache::open(dir.path(), 64 << 20).unwrap());
    let k = key(42);
    const LEN: usize = 256 * 1024;
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let cache = Arc::clone(&cache);
            let k = k.clone();
            std::thread::spawn(move || {
                for _ in 0..4 {
                    cache.put(&k, &vec![t; LEN]).unwrap();
                    // Every read sees some writer's whole value.
                    let v = cache.get(&k).unwrap().unwrap();
                    assert_eq!(v.len(), LEN);
                    assert!(v.iter().all(|&b| b == v[0]));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let v = cache.get(&k).unwrap().unwrap();
    assert_eq!(v.len(), LEN);
    assert!(v[0] < 8 && v.iter().all(|&b| b == v[0]));
    let info = cache.describe();
    assert_eq!((info.size_bytes, info.entries), (LEN as u64, 1));
    assert!(temp_files(&cache).is_empty());
}

#[test]
fn invalid_keys_are_rejected() {
    for bad in ["", "a/b", "..", "../etc", "ABCDEF", "m-ABC"] {
        assert!(
            matches!(StorageKey::new(bad), Err(StorageError::InvalidKey(_))),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn works_through_trait_objects() {
    let dir = tempfile::tempdir().unwrap();
    let cache: Arc<dyn Storage> = Arc::new(DiskCache::open(dir.path(), 1 << 20).unwrap());
    let shared = Arc::clone(&cache);
    shared.put(&key(7), b"abc").unwrap();
    assert_eq!(cache.get(&key(7)).unwrap().as_deref(), Some(&b"abc"[..]));
    assert_eq!(shared.describe().entries, 1);
}

#[test]
fn put_file_copies_a_file_in() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(&dir.path().join("c"), 1 << 30).unwrap();
    let src = dir.path().join("entry");
    std::fs::write(&src, vec![7u8; 300_000]).unwrap();
    let k = key(1);
    cache.put_file(&k, &src).unwrap();
    assert_eq!(cache.get(&k).unwrap(), Some(vec![7u8; 300_000]));
    assert_eq!(cache.describe().size_bytes, 300_000);
    assert!(src.exists(), "the source stays");
}
