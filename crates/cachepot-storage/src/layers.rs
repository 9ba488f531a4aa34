//! Wrappers around [`Storage`]: tiers and read-only mode. Backends stay
//! plain; these add behaviour around any of them.

use std::sync::Arc;

use crate::{Storage, StorageError, StorageInfo, StorageKey};

/// A fast local tier in front of a shared remote one. A remote hit is
/// written back to the local tier; a write goes to both.
pub struct Tiered {
    local: Arc<dyn Storage>,
    remote: Arc<dyn Storage>,
}

impl Tiered {
    /// `local` is read first and back-filled from `remote`.
    pub fn new(local: Arc<dyn Storage>, remote: Arc<dyn Storage>) -> Tiered {
        Tiered { local, remote }
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

    /// Writes both tiers. Once the local write succeeded, a remote failure
    /// is logged (and counted by the remote's statistics) but not returned:
    /// the entry is usable here, so its manifest must be written too.
    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        self.local.put(key, value)?;
        match self.remote.put(key, value) {
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

    fn remove(&self, key: &StorageKey) -> Result<(), StorageError> {
        let local = self.local.remove(key);
        let remote = self.remote.remove(key);
        local.and(remote)
    }

    fn describe(&self) -> StorageInfo {
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

    fn remove(&self, _: &StorageKey) -> Result<(), StorageError> {
        Ok(())
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
