//! Remote storage through Apache OpenDAL: S3 (and S3-compatible servers),
//! Google Cloud Storage, Azure Blob, Redis, Memcached and WebDAV.
//!
//! The [`Storage`] trait is blocking; each remote backend owns a small tokio
//! runtime and waits on it. Every call has a timeout, so a slow or dead
//! server makes a lookup miss instead of hanging a build.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use opendal::layers::TimeoutLayer;
use opendal::{ErrorKind, Operator};

mod backend;
mod memcached;

pub use crate::hints::hint;
use crate::{Storage, StorageError, StorageInfo, StorageKey};
use backend::build;
pub use backend::Backend;
pub use memcached::{
    DEFAULT_ITEM_SIZE_MAX as MEMCACHED_DEFAULT_ITEM_SIZE, ITEM_OVERHEAD as MEMCACHED_ITEM_OVERHEAD,
};

/// How long a token from a credentials URL is used when the answer does
/// not say (`expires_in`); GCS tokens last an hour.
const TOKEN_REFRESH: Duration = Duration::from_secs(600);

/// A remote backend behind the [`Storage`] trait.
pub struct Remote {
    backend: Backend,
    /// The operator, and when its token (from a credentials URL) must be
    /// fetched again.
    op: std::sync::Mutex<(Operator, Option<Instant>)>,
    rt: tokio::runtime::Runtime,
    timeout: Duration,
    /// Memcached: the largest value sent, from the server's item size
    /// limit, asked at the first write.
    memcached_limit: std::sync::OnceLock<u64>,
}

/// Fetches an OAuth token from a credentials URL, as sccache's
/// `SCCACHE_GCS_CREDENTIALS_URL` does: a JSON object with `accessToken`
/// (or `access_token`) and optionally `expires_in` seconds.
async fn fetch_token(url: &str) -> Result<(String, Duration), String> {
    let resp = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .map_err(|e| format!("fetching a token from the credentials URL: {e}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the credentials URL's answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("the credentials URL answered {status}"));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the credentials URL's answer is not JSON: {e}"))?;
    let token = v["accessToken"]
        .as_str()
        .or_else(|| v["access_token"].as_str())
        .ok_or("the credentials URL's answer has no accessToken")?;
    let life = v["expires_in"]
        .as_u64()
        .map(|s| Duration::from_secs(s.saturating_sub(60)))
        .unwrap_or(TOKEN_REFRESH);
    Ok((token.to_string(), life))
}

impl Remote {
    /// Connects (lazily: no request is sent until the first use).
    pub fn new(backend: Backend, timeout: Duration) -> Result<Remote, StorageError> {
        let op =
            Self::operator_with(&backend, timeout, None).map_err(|e| StorageError::Remote {
                backend: backend.kind(),
                op: "configure",
                message: e.to_string(),
            })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("remote-storage")
            .enable_all()
            .build()
            .map_err(|source| StorageError::Io {
                op: "starting the remote storage runtime",
                path: PathBuf::new(),
                source,
            })?;
        let needs_token = matches!(
            &backend,
            Backend::Gcs {
                credentials_url: Some(_),
                ..
            }
        );
        // With a credentials URL, the first call fetches a token at once.
        let expires = needs_token.then(Instant::now);
        Ok(Remote {
            backend,
            op: std::sync::Mutex::new((op, expires)),
            rt,
            timeout,
            memcached_limit: std::sync::OnceLock::new(),
        })
    }

    /// The largest value [`Storage::put`] sends, if the backend has a
    /// limit: Memcached's item size limit (asked of the server with
    /// `stats settings` at the first call; 1 MiB when it cannot be asked)
    /// less the item's own overhead.
    pub fn value_limit(&self) -> Option<u64> {
        let Backend::Memcached { endpoint, .. } = &self.backend else {
            return None;
        };
        Some(*self.memcached_limit.get_or_init(|| {
            let asked = self
                .rt
                .block_on(async {
                    tokio::time::timeout(self.timeout, memcached::item_size_max(endpoint)).await
                })
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r);
            let size = match asked {
                Ok(size) => {
                    tracing::info!(location = %self.backend.location(), item_size_max = size, "memcached item size limit");
                    size
                }
                Err(error) => {
                    tracing::warn!(
                        location = %self.backend.location(),
                        %error,
                        "could not ask memcached for its item size limit (stats settings); assuming its default of 1 MiB"
                    );
                    memcached::DEFAULT_ITEM_SIZE_MAX
                }
            };
            size.saturating_sub(memcached::ITEM_OVERHEAD)
        }))
    }

    fn operator_with(
        backend: &Backend,
        timeout: Duration,
        token: Option<&str>,
    ) -> opendal::Result<Operator> {
        Ok(build(backend, token)?.layer(
            TimeoutLayer::new()
                .with_timeout(timeout)
                .with_io_timeout(timeout),
        ))
    }

    /// The operator, with a fresh token first when one from a credentials
    /// URL is about to expire.
    fn operator(&self) -> opendal::Result<Operator> {
        let mut g = match self.op.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let due = g.1.is_some_and(|at| Instant::now() >= at);
        if let (
            true,
            Backend::Gcs {
                credentials_url: Some(url),
                ..
            },
        ) = (due, &self.backend)
        {
            let (token, life) = self
                .rt
                .block_on(async { tokio::time::timeout(self.timeout, fetch_token(url)).await })
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r)
                .map_err(|m| opendal::Error::new(ErrorKind::PermissionDenied, m))?;
            g.0 = Self::operator_with(&self.backend, self.timeout, Some(&token))?;
            g.1 = Some(Instant::now() + life);
        }
        Ok(g.0.clone())
    }

    fn error(&self, op: &'static str, e: opendal::Error) -> StorageError {
        StorageError::Remote {
            backend: self.backend.kind(),
            op,
            message: e.to_string(),
        }
    }

    /// Runs one call with the timeout as an outer bound too (a stuck
    /// connection pool is not covered by OpenDAL's own timeout layer).
    fn run<T>(
        &self,
        fut: impl std::future::Future<Output = opendal::Result<T>>,
    ) -> opendal::Result<T> {
        let outer = self.timeout + Duration::from_secs(1);
        self.rt.block_on(async {
            match tokio::time::timeout(outer, fut).await {
                Ok(r) => r,
                Err(_) => Err(opendal::Error::new(ErrorKind::Unexpected, "timed out")),
            }
        })
    }
}

/// Part size of a streamed upload: S3 takes parts of 5 MiB and more.
const UPLOAD_CHUNK: usize = 8 << 20;

impl Storage for Remote {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        let start = Instant::now();
        let r = match self
            .operator()
            .and_then(|op| self.run(op.read(key.as_str())))
        {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("read", e)),
        };
        tracing::trace!(backend = self.backend.kind(), key = key.as_str(), elapsed = ?start.elapsed(), "remote read");
        r
    }

    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        // Memcached refuses items over its limit; such an entry is not
        // sent, nor split into several items (see `memcached.rs`).
        if let Some(limit) = self.value_limit() {
            if value.len() as u64 > limit {
                return Err(StorageError::TooLarge {
                    size: value.len() as u64,
                    limit,
                });
            }
        }
        self.operator()
            .and_then(|op| self.run(op.write(key.as_str(), value.to_vec())))
            .map(|_| ())
            .map_err(|e| self.error("write", e))
    }

    /// Streams the file in chunks where the service takes a value in
    /// parts (S3 multipart, GCS resumable, Azure blocks, WebDAV); Redis and
    /// Memcached take one value, read whole (Memcached's is bounded by its
    /// item size, checked first).
    fn put_file(&self, key: &StorageKey, path: &std::path::Path) -> Result<(), StorageError> {
        let size = std::fs::metadata(path)
            .map_err(|e| StorageError::io("stat", path, e))?
            .len();
        if let Some(limit) = self.value_limit() {
            if size > limit {
                return Err(StorageError::TooLarge { size, limit });
            }
        }
        if matches!(
            self.backend,
            Backend::Redis { .. } | Backend::Memcached { .. }
        ) || size <= UPLOAD_CHUNK as u64
        {
            let value = std::fs::read(path).map_err(|e| StorageError::io("read", path, e))?;
            return self.put(key, &value);
        }
        let mut file = std::fs::File::open(path).map_err(|e| StorageError::io("open", path, e))?;
        self.operator()
            .and_then(|op| {
                self.run(async move {
                    let mut w = op.writer_with(key.as_str()).chunk(UPLOAD_CHUNK).await?;
                    loop {
                        let mut chunk = Vec::with_capacity(UPLOAD_CHUNK);
                        let n = std::io::Read::read_to_end(
                            &mut std::io::Read::take(&mut file, UPLOAD_CHUNK as u64),
                            &mut chunk,
                        )
                        .map_err(|e| opendal::Error::new(ErrorKind::Unexpected, e.to_string()))?;
                        if n == 0 {
                            break;
                        }
                        w.write(chunk).await?;
                    }
                    w.close().await.map(|_| ())
                })
            })
            .map_err(|e| self.error("write", e))
    }

    fn remove(&self, key: &StorageKey) -> Result<(), StorageError> {
        self.operator()
            .and_then(|op| self.run(op.delete(key.as_str())))
            .map_err(|e| self.error("delete", e))
    }

    fn describe(&self) -> StorageInfo {
        StorageInfo {
            kind: self.backend.kind().to_string(),
            location: self.backend.location(),
            size_bytes: 0,
            max_size_bytes: 0,
            entries: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_never_show_credentials() {
        let b = Backend::Webdav {
            endpoint: "https://user:secret@dav.example/cache".into(),
            prefix: "ci/".into(),
            username: Some("user".into()),
            password: Some("secret".into()),
            token: None,
        };
        assert_eq!(b.location(), "https://dav.example/cache/ci");
        let r = Backend::Redis {
            endpoint: Some("rediss://:pw@redis.example:6380".into()),
            cluster_endpoints: None,
            username: None,
            password: Some("pw".into()),
            db: 2,
            prefix: String::new(),
            ttl: None,
        };
        assert!(!r.location().contains("pw"), "{}", r.location());
    }

    #[test]
    fn memcached_falls_back_to_its_default_limit_when_it_cannot_be_asked() {
        // Nothing listens on port 1: `stats settings` fails at once.
        let m = Remote::new(
            Backend::Memcached {
                endpoint: "tcp://127.0.0.1:1".into(),
                prefix: String::new(),
                ttl: None,
            },
            Duration::from_secs(1),
        )
        .expect("configuring needs no server");
        let limit = MEMCACHED_DEFAULT_ITEM_SIZE - MEMCACHED_ITEM_OVERHEAD;
        assert_eq!(m.value_limit(), Some(limit));
        let big = vec![0u8; limit as usize + 1];
        match m.put(&StorageKey::new("e-1").expect("valid"), &big) {
            Err(StorageError::TooLarge { size, limit: l }) => {
                assert_eq!((size, l), (limit + 1, limit))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn only_memcached_has_a_value_limit() {
        let r = Remote::new(
            Backend::Webdav {
                endpoint: "http://127.0.0.1:1".into(),
                prefix: String::new(),
                username: None,
                password: None,
                token: None,
            },
            Duration::from_secs(1),
        )
        .expect("configuring needs no server");
        assert_eq!(r.value_limit(), None);
    }
}
