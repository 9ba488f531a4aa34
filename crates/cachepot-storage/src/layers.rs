//! Wrappers around [`Storage`]: tiers and read-only mode. Backends stay
//! plain; these add behaviour around any of them.

use std::sync::Arc;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::{Prefetched, Storage, StorageError, StorageInfo, StorageKey, Verdict};

/// A fast local tier in front of a shared remote one. A remote hit is
/// written back to the local tier; a write goes to both. A reader that
/// judges values ([`Storage::get_each`]) sees the remote's value when the
/// local one does not suit it, and a corrupt value is removed only from
/// the tier it came from: a bad local copy never costs the team its good
/// shared one.
pub struct Tiered {
    local: Arc<dyn Storage>,
    remote: Arc<dyn Storage>,
    /// The local tier is a scratch one (no local cache is configured): it
    /// holds what prefetch and remote hits brought for the daemon's
    /// lifetime, and stores go to the remote only.
    scratch: bool,
}

impl Tiered {
    /// `local` is read first and back-filled from `remote`.
    pub fn new(local: Arc<dyn Storage>, remote: Arc<dyn Storage>) -> Tiered {
        Tiered {
            local,
            remote,
            scratch: false,
        }
    }

    /// Runs a write on the local tier (not a scratch one), then on the
    /// remote: see [`Tiered::put`].
    fn write_both(
        &self,
        key: &StorageKey,
        write: impl Fn(&dyn Storage) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        if self.scratch {
            return write(self.remote.as_ref());
        }
        write(self.local.as_ref())?;
        match write(self.remote.as_ref()) {
            Ok(()) => {}
            // Over the backend's item limit: counted by its `Metered`
            // (`too_large`), not a failure to warn of.
            Err(StorageError::TooLarge { size, limit }) => {
                tracing::debug!(
                    key = key.as_str(),
                    size,
                    limit,
                    "entry too large for the remote tier"
                );
            }
            Err(e) => tracing::warn!(key = key.as_str(), error = %e, "remote tier write failed"),
        }
        Ok(())
    }

    /// A scratch tier in front of `remote`: read first and back-filled
    /// (prefetch fills it), never written by stores, left out of the
    /// description and statistics.
    pub fn scratch(scratch: Arc<dyn Storage>, remote: Arc<dyn Storage>) -> Tiered {
        Tiered {
            local: scratch,
            remote,
            scratch: true,
        }
    }
}

impl Storage for Tiered {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        match self.local.get(key) {
            Ok(Some(v)) => return Ok(Some(v)),
            Ok(None) => {}
            Err(e) => tracing::warn!(key = key.as_str(), error = %e, "local tier read failed"),
        }
        let value = self.remote.get(key)?;
        if let Some(v) = &value {
            if let Err(e) = self.local.put(key, v) {
                tracing::warn!(key = key.as_str(), error = %e, "back-filling the local tier failed");
            }
        }
        Ok(value)
    }

    /// Writes both tiers, as [`Tiered::put`] does.
    fn put_file(&self, key: &StorageKey, path: &std::path::Path) -> Result<(), StorageError> {
        self.write_both(key, |tier| tier.put_file(key, path))
    }

    /// Writes both tiers. Once the local write succeeded, a remote failure
    /// is logged (and counted by the remote's statistics) but not returned:
    /// the entry is usable here, so its manifest must be written too.
    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        self.write_both(key, |tier| tier.put(key, value))
    }

    fn remove(&self, key: &StorageKey) -> Result<(), StorageError> {
        let local = self.local.remove(key);
        let remote = self.remote.remove(key);
        local.and(remote)
    }

    fn get_each(
        &self,
        key: &StorageKey,
        visit: &mut dyn FnMut(&[u8]) -> Verdict,
    ) -> Result<Verdict, StorageError> {
        match self.local.get_each(key, visit) {
            Ok(v @ (Verdict::Take | Verdict::Stop)) => return Ok(v),
            Ok(Verdict::Pass | Verdict::Corrupt) => {}
            Err(e) => tracing::warn!(key = key.as_str(), error = %e, "local tier read failed"),
        }
        let local = &self.local;
        self.remote.get_each(key, &mut |value| {
            let verdict = visit(value);
            if verdict == Verdict::Take {
                if let Err(e) = local.put(key, value) {
                    tracing::warn!(key = key.as_str(), error = %e, "back-filling the local tier failed");
                }
            }
            verdict
        })
    }

    fn put_nearest(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        self.local.put_nearest(key, value)
    }

    fn can_prefetch(&self) -> bool {
        true
    }

    fn prefetch(&self, keys: &[StorageKey], parallel: usize) -> Prefetched {
        let next = AtomicUsize::new(0);
        let (entries, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|s| {
            for _ in 0..parallel.clamp(1, keys.len().max(1)) {
                s.spawn(|| {
                    while let Some(key) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if self.local.contains(key).unwrap_or(false) {
                            continue;
                        }
                        let value = match self.remote.get(key) {
                            Ok(Some(v)) => v,
                            Ok(None) => continue,
                            Err(e) => {
                                tracing::debug!(key = key.as_str(), error = %e, "prefetch read failed");
                                continue;
                            }
                        };
                        match self.local.put(key, &value) {
                            Ok(()) => {
                                entries.fetch_add(1, Ordering::Relaxed);
                                bytes.fetch_add(value.len() as u64, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::debug!(key = key.as_str(), error = %e, "prefetch write failed");
                            }
                        }
                    }
                });
            }
        });
        Prefetched {
            entries: entries.into_inner(),
            bytes: bytes.into_inner(),
        }
    }

    fn describe(&self) -> StorageInfo {
        if self.scratch {
            return self.remote.describe();
        }
        let local = self.local.describe();
        let remote = self.remote.describe();
        StorageInfo {
            kind: format!("{} + {}", local.kind, remote.kind),
            location: format!("{} + {}", local.location, remote.location),
            ..local
        }
    }

    fn stats(&self) -> Vec<crate::metered::BackendStats> {
        let mut all = self.local.stats();
        all.extend(self.remote.stats());
        all
    }

    fn zero_stats(&self) {
        self.local.zero_stats();
        self.remote.zero_stats();
    }
}

/// Reads only: writes and removals are dropped (for untrusted builds, such
/// as pull requests, that may use a shared cache but must not fill it).
pub struct ReadOnly<S: ?Sized>(pub Arc<S>);

impl<S: Storage + ?Sized> Storage for ReadOnly<S> {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.get(key)
    }

    fn put(&self, _: &StorageKey, _: &[u8]) -> Result<(), StorageError> {
        Ok(())
    }

    fn put_file(&self, _: &StorageKey, _: &std::path::Path) -> Result<(), StorageError> {
        Ok(())
    }

    fn remove(&self, _: &StorageKey) -> Result<(), StorageError> {
        Ok(())
    }

    fn contains(&self, key: &StorageKey) -> Result<bool, StorageError> {
        self.0.contains(key)
    }

    fn describe(&self) -> StorageInfo {
        let mut info = self.0.describe();
        info.kind.push_str(" (read-only)");
        info
    }

    fn stats(&self) -> Vec<crate::metered::BackendStats> {
        self.0.stats()
    }

    fn zero_stats(&self) {
        self.0.zero_stats()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::DiskCache;

    fn disk(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Storage> {
        Arc::new(DiskCache::open(&dir.path().join(name), 1 << 30).unwrap())
    }

    #[test]
    fn a_remote_hit_is_written_back_and_writes_reach_both_tiers() {
        let dir = tempfile::tempdir().unwrap();
        let (local, remote) = (disk(&dir, "local"), disk(&dir, "remote"));
        let tiered = Tiered::new(local.clone(), remote.clone());
        let k = StorageKey::new("e-1").unwrap();
        remote.put(&k, b"shared").unwrap();
        assert_eq!(local.get(&k).unwrap(), None);
        assert_eq!(tiered.get(&k).unwrap().as_deref(), Some(&b"shared"[..]));
        assert_eq!(local.get(&k).unwrap().as_deref(), Some(&b"shared"[..]));
        let k2 = StorageKey::new("e-2").unwrap();
        tiered.put(&k2, b"new").unwrap();
        assert!(local.get(&k2).unwrap().is_some() && remote.get(&k2).unwrap().is_some());
    }

    /// Collects every value `get_each` hands out, answering with `verdicts`
    /// in turn.
    fn visit_all(s: &dyn Storage, k: &StorageKey, verdicts: &[Verdict]) -> (Verdict, Vec<Vec<u8>>) {
        let mut seen = Vec::new();
        let mut answers = verdicts.iter();
        let last = s
            .get_each(k, &mut |v| {
                seen.push(v.to_vec());
                *answers.next().unwrap()
            })
            .unwrap();
        (last, seen)
    }

    #[test]
    fn a_passed_local_value_is_followed_by_the_remote_one() {
        let dir = tempfile::tempdir().unwrap();
        let (local, remote) = (disk(&dir, "local"), disk(&dir, "remote"));
        let tiered = Tiered::new(local.clone(), remote.clone());
        let k = StorageKey::new("m-1").unwrap();
        local.put(&k, b"old").unwrap();
        remote.put(&k, b"new").unwrap();
        let (last, seen) = visit_all(&tiered, &k, &[Verdict::Pass, Verdict::Stop]);
        assert_eq!(last, Verdict::Stop);
        assert_eq!(seen, vec![b"old".to_vec(), b"new".to_vec()]);
        // Stop neither back-fills nor removes.
        assert_eq!(local.get(&k).unwrap().as_deref(), Some(&b"old"[..]));
        // A taken local value ends the search there.
        let (last, seen) = visit_all(&tiered, &k, &[Verdict::Take]);
        assert_eq!((last, seen.len()), (Verdict::Take, 1));
        // A taken remote value is back-filled.
        let (last, _) = visit_all(&tiered, &k, &[Verdict::Pass, Verdict::Take]);
        assert_eq!(last, Verdict::Take);
        assert_eq!(local.get(&k).unwrap().as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn corruption_is_removed_only_from_the_tier_it_was_read_from() {
        let dir = tempfile::tempdir().unwrap();
        let (local, remote) = (disk(&dir, "local"), disk(&dir, "remote"));
        let tiered = Tiered::new(local.clone(), remote.clone());
        let k = StorageKey::new("e-1").unwrap();
        local.put(&k, b"bad").unwrap();
        remote.put(&k, b"good").unwrap();
        let (last, seen) = visit_all(&tiered, &k, &[Verdict::Corrupt, Verdict::Take]);
        assert_eq!(last, Verdict::Take);
        assert_eq!(seen, vec![b"bad".to_vec(), b"good".to_vec()]);
        assert_eq!(remote.get(&k).unwrap().as_deref(), Some(&b"good"[..]));
        // The local tier lost its bad copy and was back-filled with the good one.
        assert_eq!(local.get(&k).unwrap().as_deref(), Some(&b"good"[..]));
        // A value of another version is passed over and stays everywhere.
        let (last, _) = visit_all(&tiered, &k, &[Verdict::Pass, Verdict::Pass]);
        assert_eq!(last, Verdict::Pass);
        assert!(local.get(&k).unwrap().is_some() && remote.get(&k).unwrap().is_some());
        // put_nearest writes the local tier only.
        let k2 = StorageKey::new("m-2").unwrap();
        tiered.put_nearest(&k2, b"merged").unwrap();
        assert!(local.get(&k2).unwrap().is_some() && remote.get(&k2).unwrap().is_none());
    }

    #[test]
    fn prefetch_copies_what_the_local_tier_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let (local, remote) = (disk(&dir, "local"), disk(&dir, "remote"));
        let tiered = Tiered::new(local.clone(), remote.clone());
        let keys: Vec<StorageKey> = (0..20)
            .map(|n| StorageKey::new(format!("e2-{n}")).unwrap())
            .collect();
        for k in &keys[..15] {
            remote.put(k, k.as_str().as_bytes()).unwrap();
        }
        local.put(&keys[0], b"local").unwrap();
        let got = tiered.prefetch(&keys, 4);
        // 14 copied (one was local already, 5 exist nowhere).
        assert_eq!(got.entries, 14);
        assert_eq!(local.get(&keys[0]).unwrap().as_deref(), Some(&b"local"[..]));
        for k in &keys[1..15] {
            assert_eq!(
                local.get(k).unwrap().as_deref(),
                Some(k.as_str().as_bytes())
            );
        }
        assert!(!local.contains(&keys[19]).unwrap());
        assert_eq!(tiered.prefetch(&keys, 4).entries, 0, "nothing left to copy");
        // A single backend has no tier to copy into.
        assert_eq!(remote.prefetch(&keys, 4), Prefetched::default());
        assert!(tiered.can_prefetch() && !remote.can_prefetch());
    }

    #[test]
    fn read_only_never_removes_what_it_judged_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let inner = disk(&dir, "d");
        let k = StorageKey::new("e-1").unwrap();
        inner.put(&k, b"v").unwrap();
        let ro = ReadOnly(inner.clone());
        let (last, _) = visit_all(&ro, &k, &[Verdict::Corrupt]);
        assert_eq!(last, Verdict::Corrupt);
        assert!(inner.get(&k).unwrap().is_some());
    }

    #[test]
    fn read_only_reads_but_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let inner = disk(&dir, "d");
        let k = StorageKey::new("e-1").unwrap();
        inner.put(&k, b"v").unwrap();
        let ro = ReadOnly(inner.clone());
        assert!(ro.get(&k).unwrap().is_some());
        ro.put(&StorageKey::new("e-2").unwrap(), b"x").unwrap();
        ro.remove(&k).unwrap();
        assert!(inner
            .get(&StorageKey::new("e-2").unwrap())
            .unwrap()
            .is_none());
        assert!(inner.get(&k).unwrap().is_some());
        assert!(ro.describe().kind.ends_with("(read-only)"));
    }
}
