//! Per-backend statistics and a circuit breaker, as a wrapper around any
//! [`Storage`]: after repeated errors a backend is skipped for a while, so a
//! dead server costs one timeout now and then instead of one per compile.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Storage, StorageError, StorageInfo, StorageKey};

/// Consecutive errors after which a backend is skipped.
const BREAKER_THRESHOLD: u32 = 5;
/// How long it is skipped before one call tries it again.
const BREAKER_PAUSE: Duration = Duration::from_secs(30);

/// What one backend did, for `--show-stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendStats {
    /// `disk`, `s3`, `redis`, …
    pub kind: String,
    /// Where (never with credentials).
    pub location: String,
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Values written.
    pub writes: u64,
    /// Failed calls.
    pub errors: u64,
    /// Calls not made because the backend was paused after repeated errors.
    pub skipped: u64,
    /// Values not written because they exceed the backend's item limit.
    pub too_large: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Mean time of a read, in milliseconds.
    pub read_ms_mean: f64,
    /// Mean time of a write, in milliseconds.
    pub write_ms_mean: f64,
    /// The most recent error, as the backend put it.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    stats: BackendStats,
    read_time: Duration,
    reads: u64,
    write_time: Duration,
    consecutive_errors: u32,
    paused_until: Option<Instant>,
}

/// Counts what the inner storage does and pauses it after repeated errors.
pub struct Metered<S> {
    inner: S,
    state: Mutex<State>,
}

impl<S: Storage> Metered<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Metered<S> {
        let info = inner.describe();
        let state = State {
            stats: BackendStats {
                kind: info.kind,
                location: info.location,
                ..Default::default()
            },
            ..Default::default()
        };
        Metered {
            inner,
            state: Mutex::new(state),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g)
    }

    /// Whether calls should be skipped now; a pause that has run out lets
    /// one call through (and pauses again if it fails).
    fn paused(&self) -> Option<StorageError> {
        self.with(|s| match s.paused_until {
            Some(until) if Instant::now() < until => {
                s.stats.skipped += 1;
                Some(StorageError::Paused {
                    backend: s.stats.kind.clone(),
                    seconds: until.saturating_duration_since(Instant::now()).as_secs(),
                })
            }
            _ => None,
        })
    }

    fn record<T>(&self, result: &Result<T, StorageError>) {
        self.with(|s| match result {
            Ok(_) => {
                s.consecutive_errors = 0;
                s.paused_until = None;
            }
            Err(StorageError::TooLarge { .. }) => s.stats.too_large += 1,
            Err(e) => {
                s.stats.errors += 1;
                s.stats.last_error = Some(e.to_string());
                s.consecutive_errors += 1;
                if s.consecutive_errors >= BREAKER_THRESHOLD {
                    tracing::warn!(backend = %s.stats.kind, errors = s.consecutive_errors, pause = ?BREAKER_PAUSE, "pausing a failing backend");
                    s.paused_until = Some(Instant::now() + BREAKER_PAUSE);
                }
            }
        });
    }
}

impl<S: Storage> Storage for Metered<S> {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(e) = self.paused() {
            return Err(e);
        }
        let start = Instant::now();
        let r = self.inner.get(key);
        self.record(&r);
        self.with(|s| {
            s.reads += 1;
            s.read_time += start.elapsed();
            match &r {
                Ok(Some(v)) => {
                    s.stats.hits += 1;
                    s.stats.bytes_read += v.len() as u64;
                }
                Ok(None) => s.stats.misses += 1,
                Err(_) => {}
            }
        });
        r
    }

    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        if let Some(e) = self.paused() {
            return Err(e);
        }
        let start = Instant::now();
        let r = self.inner.put(key, value);
        self.record(&r);
        if r.is_ok() {
            self.with(|s| {
                s.stats.writes += 1;
                s.stats.bytes_written += value.len() as u64;
                s.write_time += start.elapsed();
            });
        }
        r
    }

    fn put_file(&self, key: &StorageKey, path: &std::path::Path) -> Result<(), StorageError> {
        if let Some(e) = self.paused() {
            return Err(e);
        }
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let start = Instant::now();
        let r = self.inner.put_file(key, path);
        self.record(&r);
        if r.is_ok() {
            self.with(|s| {
                s.stats.writes += 1;
                s.stats.bytes_written += size;
                s.write_time += start.elapsed();
            });
        }
        r
    }

    fn remove(&self, key: &StorageKey) -> Result<(), StorageError> {
        self.inner.remove(key)
    }

    fn contains(&self, key: &StorageKey) -> Result<bool, StorageError> {
        self.inner.contains(key)
    }

    fn describe(&self) -> StorageInfo {
        self.inner.describe()
    }

    fn stats(&self) -> Vec<BackendStats> {
        self.with(|s| {
            let mut out = s.stats.clone();
            let ms = |d: Duration, n: u64| {
                if n == 0 {
                    0.0
                } else {
                    d.as_secs_f64() * 1000.0 / n as f64
                }
            };
            out.read_ms_mean = ms(s.read_time, s.reads);
            out.write_ms_mean = ms(s.write_time, s.stats.writes);
            vec![out]
        })
    }

    fn zero_stats(&self) {
        self.with(|s| {
            let (kind, location) = (s.stats.kind.clone(), s.stats.location.clone());
            s.stats = BackendStats {
                kind,
                location,
                ..Default::default()
            };
            s.read_time = Duration::ZERO;
            s.write_time = Duration::ZERO;
            s.reads = 0;
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A backend whose every call fails, counting the calls it got.
    struct Broken(std::sync::atomic::AtomicU32);

    impl Storage for Broken {
        fn get(&self, _: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(StorageError::Remote {
                backend: "test",
                op: "read",
                message: "connection refused".into(),
            })
        }
        fn put(&self, _: &StorageKey, _: &[u8]) -> Result<(), StorageError> {
            Ok(())
        }
        fn remove(&self, _: &StorageKey) -> Result<(), StorageError> {
            Ok(())
        }
        fn describe(&self) -> StorageInfo {
            StorageInfo {
                kind: "test".into(),
                location: "nowhere".into(),
                size_bytes: 0,
                max_size_bytes: 0,
                entries: 0,
            }
        }
    }

    #[test]
    fn repeated_errors_pause_the_backend_and_are_counted() {
        let m = Metered::new(Broken(Default::default()));
        let k = StorageKey::new("e-1").unwrap();
        for _ in 0..20 {
            assert!(m.get(&k).is_err());
        }
        assert_eq!(
            m.inner.0.load(std::sync::atomic::Ordering::SeqCst),
            BREAKER_THRESHOLD
        );
        let s = &m.stats()[0];
        assert_eq!((s.errors, s.skipped), (u64::from(BREAKER_THRESHOLD), 15));
        assert!(s
            .last_error
            .as_deref()
            .unwrap()
            .contains("connection refused"));
    }

    #[test]
    fn hits_misses_and_bytes_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metered::new(crate::DiskCache::open(dir.path(), 1 << 30).unwrap());
        let k = StorageKey::new("e-1").unwrap();
        assert_eq!(m.get(&k).unwrap(), None);
        m.put(&k, b"12345").unwrap();
        assert!(m.get(&k).unwrap().is_some());
        let s = &m.stats()[0];
        assert_eq!(
            (s.hits, s.misses, s.writes, s.bytes_read, s.bytes_written),
            (1, 1, 1, 5, 5)
        );
        m.zero_stats();
        assert_eq!(m.stats()[0].hits, 0);
    }
}
