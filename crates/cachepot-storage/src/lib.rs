//! Cache storage for cachepot.
//!
//! This crate stores and retrieves opaque byte blobs under validated keys. It
//! never knows about compilers, command lines or hashing policy: the daemon
//! decides *what* a key means and *what* goes into an entry; this crate only
//! decides *how* bytes are kept.
//!
//! It provides three things:
//!
//! - [`Storage`], a deliberately small, blocking trait (`get`, `put`,
//!   `remove`, `describe`, and `get_each` for readers that judge what they
//!   read). Keeping it small makes backends easy to write and makes
//!   behaviour such as read-only access, tiered caches (local disk in front
//!   of a remote store, [`layers`]) and statistics with a circuit breaker
//!   ([`metered`]) wrappers that implement [`Storage`] around another
//!   [`Storage`], not options inside every backend.
//! - [`Entry`], the on-disk/on-wire format of one cached compilation (output
//!   files plus small named metadata blobs), compressed with zstd and guarded
//!   by a BLAKE3 checksum. It is shared by all backends.
//! - [`DiskCache`], a local-disk LRU backend with atomic writes and a size
//!   limit.

pub mod disk;
pub mod entry;
pub mod hints;
pub mod layers;
pub mod metered;
pub mod remote;

pub use disk::DiskCache;
pub use entry::{decode_streaming, Entry, EntryError, EntryFile, FileData, StreamError};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Maximum length of a [`StorageKey`] in bytes.
pub const MAX_KEY_LEN: usize = 100;

/// A storage key.
///
/// Normally a lowercase hex string of 64 characters (a BLAKE3 digest),
/// possibly with a short namespace prefix such as `"m-"` or `"e-"`.
/// Validation is deliberately strict so that a key is always safe to use as a
/// single file name or object name: only `[0-9a-z-]` is allowed, and the
/// length must be `1..=100`. This rules out `/`, `..`, uppercase letters and
/// the empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey(String);

impl StorageKey {
    /// Validates `s` and wraps it as a key.
    ///
    /// Returns [`StorageError::InvalidKey`] if `s` is empty, longer than
    /// [`MAX_KEY_LEN`], or contains anything other than `[0-9a-z-]`.
    pub fn new(s: impl Into<String>) -> Result<Self, StorageError> {
        let s = s.into();
        if is_valid_key(&s) {
            Ok(StorageKey(s))
        } else {
            Err(StorageError::InvalidKey(s))
        }
    }

    /// The key of an encoded [`Entry`] in `namespace` (`e`, `m`, `x`):
    /// `<namespace><format version>-<name>`. Entries of two format versions
    /// never share a key, so during a rollout old and new clients read and
    /// write apart instead of taking each other's entries for corrupt.
    pub fn for_entry(namespace: &str, name: &str) -> Result<Self, StorageError> {
        Self::new(format!("{namespace}{}-{name}", entry::FORMAT_VERSION))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StorageKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is acceptable as a [`StorageKey`].
pub(crate) fn is_valid_key(s: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

/// Errors returned by storage backends.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("storage I/O error: {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"read"` or `"rename"`.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key failed validation (see [`StorageKey::new`]).
    #[error("invalid storage key {0:?}: expected 1..=100 characters of [0-9a-z-]")]
    InvalidKey(String),
    /// A value is too large to be stored by this backend.
    #[error("value of {size} bytes is too large for this cache (limit {limit} bytes)")]
    TooLarge {
        /// Size of the rejected value in bytes.
        size: u64,
        /// Largest value the backend accepts, in bytes.
        limit: u64,
    },
    /// An entry could not be encoded.
    #[error("encoding an entry: {0}")]
    Encode(String),
    /// A backend is skipped for a while after repeated errors.
    #[error("{backend} is paused for {seconds} s after repeated errors")]
    Paused {
        /// The backend kind.
        backend: String,
        /// Seconds left.
        seconds: u64,
    },
    /// A remote backend failed (its own message, which names the cause).
    #[error("{backend} {op} failed: {message}")]
    Remote {
        /// The backend kind, such as `s3`.
        backend: &'static str,
        /// What was being done.
        op: &'static str,
        /// The backend's error.
        message: String,
    },
}

impl StorageError {
    /// Builds a [`StorageError::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A summary of a storage backend, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageInfo {
    /// Backend kind, e.g. `"disk"`.
    pub kind: String,
    /// Where the data lives (a directory, a URL...).
    pub location: String,
    /// Bytes currently used, as far as the backend knows.
    pub size_bytes: u64,
    /// Configured size limit in bytes.
    pub max_size_bytes: u64,
    /// Number of stored entries, as far as the backend knows.
    pub entries: u64,
}

/// What a reader made of a value [`Storage::get_each`] handed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Used: stop looking. A nearer tier is back-filled with the value.
    Take,
    /// Readable but not what the reader wants (no manifest matches, or an
    /// entry of another format version): the next tier is asked and
    /// nothing is removed. Also the answer when no tier has the key.
    Pass,
    /// Corrupt: removed from the tier it was read from only, and the next
    /// tier is asked.
    Corrupt,
    /// Stop looking, remove nothing, back-fill nothing (the reader used the
    /// value in its own way, or failed for reasons of its own).
    Stop,
}

/// What [`Storage::prefetch`] brought into the nearest tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefetched {
    /// Values fetched.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The small storage trait.
///
/// Blocking; implementations are `Send + Sync` and are used from many
/// threads at once. Values are opaque bytes (normally an encoded [`Entry`]).
pub trait Storage: Send + Sync {
    /// Fetches the value stored under `key`, or `None` if there is none.
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores `value` under `key`, replacing any previous value atomically.
    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError>;
    /// Removes the value stored under `key`. Removing a missing key is `Ok`.
    fn remove(&self, key: &StorageKey) -> Result<(), StorageError>;
    /// Hands the value of `key` in each tier, nearest first, to `visit`
    /// until it takes one or stops (see [`Verdict`]); returns the last
    /// verdict, or [`Verdict::Pass`] when no tier had the key. A value
    /// judged corrupt is removed from its own tier only. A tier that fails
    /// is skipped when another can answer; the error of the last one is
    /// returned.
    fn get_each(
        &self,
        key: &StorageKey,
        visit: &mut dyn FnMut(&[u8]) -> Verdict,
    ) -> Result<Verdict, StorageError> {
        let Some(value) = self.get(key)? else {
            return Ok(Verdict::Pass);
        };
        let verdict = visit(&value);
        if verdict == Verdict::Corrupt {
            if let Err(e) = self.remove(key) {
                tracing::warn!(key = key.as_str(), error = %e, "removing a corrupt value failed");
            }
        }
        Ok(verdict)
    }
    /// Stores the contents of the file at `path` under `key`, as
    /// [`Storage::put`] stores bytes. Backends that can stream do so, so a
    /// large entry is never held in memory whole; the default reads the
    /// file and puts its bytes.
    fn put_file(&self, key: &StorageKey, path: &Path) -> Result<(), StorageError> {
        let value = std::fs::read(path).map_err(|e| StorageError::io("read", path, e))?;
        self.put(key, &value)
    }
    /// Stores `value` in the nearest tier only (a merged manifest list
    /// that a lookup put together from the tiers). A single backend stores
    /// it as [`Storage::put`] does.
    fn put_nearest(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        self.put(key, value)
    }
    /// Whether `key` has a value, without reading it where the backend can
    /// tell (the disk cache looks at the file).
    fn contains(&self, key: &StorageKey) -> Result<bool, StorageError> {
        Ok(self.get(key)?.is_some())
    }
    /// Copies the values of `keys` that the nearest tier lacks from the
    /// farther one, `parallel` at a time, in order. A single backend has
    /// nothing to copy. Failures are skipped: a key not fetched is looked
    /// up as usual.
    fn prefetch(&self, keys: &[StorageKey], parallel: usize) -> Prefetched {
        let _ = (keys, parallel);
        Prefetched::default()
    }
    /// Whether [`Storage::prefetch`] has a nearer tier to copy into.
    fn can_prefetch(&self) -> bool {
        false
    }
    /// Describes the backend and its current usage.
    fn describe(&self) -> StorageInfo;
    /// Per-backend statistics, for the backends that keep them (see
    /// [`metered::Metered`]).
    fn stats(&self) -> Vec<metered::BackendStats> {
        Vec::new()
    }
    /// Resets the per-backend statistics.
    fn zero_stats(&self) {}
}

impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).get(key)
    }
    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        (**self).put(key, value)
    }
    fn remove(&self, key: &StorageKey) -> Result<(), StorageError> {
        (**self).remove(key)
    }
    fn get_each(
        &self,
        key: &StorageKey,
        visit: &mut dyn FnMut(&[u8]) -> Verdict,
    ) -> Result<Verdict, StorageError> {
        (**self).get_each(key, visit)
    }
    fn put_nearest(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        (**self).put_nearest(key, value)
    }
    fn put_file(&self, key: &StorageKey, path: &Path) -> Result<(), StorageError> {
        (**self).put_file(key, path)
    }
    fn contains(&self, key: &StorageKey) -> Result<bool, StorageError> {
        (**self).contains(key)
    }
    fn prefetch(&self, keys: &[StorageKey], parallel: usize) -> Prefetched {
        (**self).prefetch(keys, parallel)
    }
    fn can_prefetch(&self) -> bool {
        (**self).can_prefetch()
    }
    fn describe(&self) -> StorageInfo {
        (**self).describe()
    }
    fn stats(&self) -> Vec<metered::BackendStats> {
        (**self).stats()
    }
    fn zero_stats(&self) {
        (**self).zero_stats()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_digest_keys_with_and_without_prefix() {
        let digest = "0123456789abcdef".repeat(4);
        for k in [digest.clone(), format!("m-{digest}"), format!("e-{digest}")] {
            let key = StorageKey::new(k.clone());
            assert!(key.is_ok(), "{k} should be valid");
            assert_eq!(key.map(|k| k.as_str().to_owned()).ok(), Some(k));
        }
    }

    #[test]
    fn rejects_bad_keys() {
        let too_long = "a".repeat(MAX_KEY_LEN + 1);
        for bad in [
            "", "a/b", "..", "../x", "ABC", "abC", "a b", "a.b", "a_b", "é", &too_long,
        ] {
            match StorageKey::new(bad) {
                Err(StorageError::InvalidKey(k)) => assert_eq!(k, bad),
                other => panic!("{bad:?} should be rejected, got {other:?}"),
            }
        }
        assert!(StorageKey::new("a".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn entry_keys_name_the_format_version() {
        let digest = "ab".repeat(32);
        let k = StorageKey::for_entry("e", &digest).unwrap();
        assert_eq!(k.as_str(), format!("e{}-{digest}", entry::FORMAT_VERSION));
        assert_ne!(k.as_str(), format!("e-{digest}"));
    }
}
