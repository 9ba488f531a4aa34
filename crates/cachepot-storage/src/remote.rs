//! Remote storage through Apache OpenDAL: S3 (and S3-compatible servers),
//! Google Cloud Storage, Azure Blob, Redis, Memcached and WebDAV.
//!
//! The [`Storage`] trait is blocking; each remote backend owns a small tokio
//! runtime and waits on it. Every call has a timeout, so a slow or dead
//! server makes a lookup miss instead of hanging a build.

use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use opendal::layers::TimeoutLayer;
use opendal::{services, ErrorKind, Operator};

pub use crate::hints::hint;
use crate::{Storage, StorageError, StorageInfo, StorageKey};

/// Largest value written to Memcached: its default item limit is 1 MiB,
/// key and item overhead included. Larger entries are refused before they
/// reach the server.
pub const MEMCACHED_MAX_VALUE: usize = 1024 * 1024 - 4096;

/// Which remote service, and how to reach it. Secrets are held here but
/// never shown by [`Backend::location`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// S3 or an S3-compatible server.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Region; `us-east-1` is used for custom endpoints when unset.
        region: Option<String>,
        /// Endpoint URL for S3-compatible servers.
        endpoint: Option<String>,
        /// Key prefix.
        prefix: String,
        /// Virtual-host style addressing (path style is the default).
        virtual_host: bool,
        /// Unsigned requests (anonymous, read-only use of a public bucket).
        no_credentials: bool,
    },
    /// Google Cloud Storage.
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
        /// Service-account key file.
        key_path: Option<PathBuf>,
        /// Endpoint override (emulators, private endpoints).
        endpoint: Option<String>,
    },
    /// Azure Blob storage.
    Azure {
        /// A connection string (account, key, endpoint).
        connection_string: Option<String>,
        /// Account name, instead of a connection string.
        account_name: Option<String>,
        /// Account key (base64), with the account name.
        account_key: Option<String>,
        /// Container name.
        container: String,
        /// Key prefix.
        prefix: String,
        /// Endpoint override.
        endpoint: Option<String>,
    },
    /// Redis (or a Redis cluster).
    Redis {
        /// `redis://` or `rediss://` URL of one server.
        endpoint: Option<String>,
        /// Comma-separated URLs of cluster nodes.
        cluster_endpoints: Option<String>,
        /// User name (ACL).
        username: Option<String>,
        /// Password.
        password: Option<String>,
        /// Database number.
        db: i64,
        /// Key prefix.
        prefix: String,
        /// Expiry of written entries.
        ttl: Option<Duration>,
    },
    /// Memcached.
    Memcached {
        /// `tcp://host:port`.
        endpoint: String,
        /// Key prefix.
        prefix: String,
        /// Expiry of written entries.
        ttl: Option<Duration>,
    },
    /// WebDAV, or a plain HTTP cache that speaks GET and PUT.
    Webdav {
        /// Server URL.
        endpoint: String,
        /// Key prefix.
        prefix: String,
        /// Basic auth user.
        username: Option<String>,
        /// Basic auth password.
        password: Option<String>,
        /// Bearer token (instead of basic auth).
        token: Option<String>,
    },
}

impl Backend {
    /// The service's short name.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::S3 { .. } => "s3",
            Backend::Gcs { .. } => "gcs",
            Backend::Azure { .. } => "azure",
            Backend::Redis { .. } => "redis",
            Backend::Memcached { .. } => "memcached",
            Backend::Webdav { .. } => "webdav",
        }
    }

    /// Where entries go, without credentials.
    pub fn location(&self) -> String {
        let with_prefix = |base: String, prefix: &str| {
            if prefix.is_empty() {
                base
            } else {
                format!("{base}/{}", prefix.trim_matches('/'))
            }
        };
        match self {
            Backend::S3 {
                bucket,
                endpoint,
                prefix,
                ..
            } => {
                let base = with_prefix(format!("s3://{bucket}"), prefix);
                match endpoint {
                    Some(e) => format!("{base} at {}", strip_userinfo(e)),
                    None => base,
                }
            }
            Backend::Gcs { bucket, prefix, .. } => with_prefix(format!("gs://{bucket}"), prefix),
            Backend::Azure {
                container, prefix, ..
            } => with_prefix(format!("azure container {container}"), prefix),
            Backend::Redis {
                endpoint,
                cluster_endpoints,
                prefix,
                db,
                ..
            } => {
                let ep = endpoint
                    .as_deref()
                    .or(cluster_endpoints.as_deref())
                    .unwrap_or_default();
                with_prefix(format!("{} db {db}", strip_userinfo(ep)), prefix)
            }
            Backend::Memcached {
                endpoint, prefix, ..
            } => with_prefix(strip_userinfo(endpoint), prefix),
            Backend::Webdav {
                endpoint, prefix, ..
            } => with_prefix(strip_userinfo(endpoint), prefix),
        }
    }
}

/// Removes `user:password@` from a URL.
fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            format!("{scheme}://{host}")
        }
        None => url
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(url)
            .to_string(),
    }
}

fn root(prefix: &str) -> String {
    format!("/{}", prefix.trim_matches('/'))
}

/// OpenDAL needs a TLS crypto provider and its HTTP transport installed
/// once per process.
fn install_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal::install_default();
        opendal_http_transport_reqwest::install_default();
    });
}

fn build(backend: &Backend) -> opendal::Result<Operator> {
    install_once();
    match backend.clone() {
        Backend::S3 {
            bucket,
            region,
            endpoint,
            prefix,
            virtual_host,
            no_credentials,
        } => {
            let mut b = services::S3::default().bucket(&bucket).root(&root(&prefix));
            let region = region.or_else(|| {
                std::env::var("AWS_REGION")
                    .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                    .ok()
            });
            let region = match (&region, &endpoint) {
                (Some(r), _) => r.clone(),
                // S3-compatible servers accept any region in the signature.
                (None, Some(_)) => "us-east-1".to_string(),
                (None, None) => String::new(),
            };
            if !region.is_empty() {
                b = b.region(&region);
            }
            if let Some(e) = &endpoint {
                b = b.endpoint(e);
            }
            if virtual_host {
                b = b.enable_virtual_host_style();
            }
            if no_credentials {
                b = b
                    .skip_signature()
                    .disable_config_load()
                    .disable_ec2_metadata();
            }
            Operator::new(b)
        }
        Backend::Gcs {
            bucket,
            prefix,
            key_path,
            endpoint,
        } => {
            let mut b = services::Gcs::default()
                .bucket(&bucket)
                .root(&root(&prefix));
            if let Some(e) = &endpoint {
                b = b.endpoint(e);
            }
            match &key_path {
                Some(p) => b = b.credential_path(&p.to_string_lossy()),
                // No credentials configured: unauthenticated requests (a
                // public bucket, an emulator) rather than a failure.
                None if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_none() => {
                    b = b
                        .skip_signature()
                        .disable_vm_metadata()
                        .disable_config_load();
                }
                None => {}
            }
            Operator::new(b)
        }
        Backend::Azure {
            connection_string,
            account_name,
            account_key,
            container,
            prefix,
            endpoint,
        } => {
            let mut b = match &connection_string {
                Some(c) => services::Azblob::from_connection_string(c)?,
                None => services::Azblob::default(),
            };
            b = b.container(&container).root(&root(&prefix));
            if let Some(name) = &account_name {
                b = b.account_name(name);
                if endpoint.is_none() && connection_string.is_none() {
                    b = b.endpoint(&format!("https://{name}.blob.core.windows.net"));
                }
            }
            if let Some(key) = &account_key {
                b = b.account_key(key);
            }
            if let Some(e) = &endpoint {
                b = b.endpoint(e);
            }
            Operator::new(b)
        }
        Backend::Redis {
            endpoint,
            cluster_endpoints,
            username,
            password,
            db,
            prefix,
            ttl,
        } => {
            let mut b = services::Redis::default().root(&root(&prefix)).db(db);
            if let Some(e) = &endpoint {
                b = b.endpoint(e);
            }
            if let Some(c) = &cluster_endpoints {
                b = b.cluster_endpoints(c);
            }
            if let Some(u) = &username {
                b = b.username(u);
            }
            if let Some(p) = &password {
                b = b.password(p);
            }
            if let Some(t) = ttl {
                b = b.default_ttl(t);
            }
            Operator::new(b)
        }
        Backend::Memcached {
            endpoint,
            prefix,
            ttl,
        } => {
            let mut b = services::Memcached::default()
                .endpoint(&endpoint)
                .root(&root(&prefix));
            if let Some(t) = ttl {
                b = b.default_ttl(t);
            }
            Operator::new(b)
        }
        Backend::Webdav {
            endpoint,
            prefix,
            username,
            password,
            token,
        } => {
            let mut b = services::Webdav::default()
                .endpoint(&endpoint)
                .root(&root(&prefix));
            if let Some(u) = &username {
                b = b.username(u);
            }
            if let Some(p) = &password {
                b = b.password(p);
            }
            if let Some(t) = &token {
                b = b.token(t);
            }
            Operator::new(b)
        }
    }
}

/// A remote backend behind the [`Storage`] trait.
pub struct Remote {
    backend: Backend,
    op: Operator,
    rt: tokio::runtime::Runtime,
    timeout: Duration,
}

impl Remote {
    /// Connects (lazily: no request is sent until the first use).
    pub fn new(backend: Backend, timeout: Duration) -> Result<Remote, StorageError> {
        let op = build(&backend).map_err(|e| StorageError::Remote {
            backend: backend.kind(),
            op: "configure",
            message: e.to_string(),
        })?;
        let op = op.layer(
            TimeoutLayer::new()
                .with_timeout(timeout)
                .with_io_timeout(timeout),
        );
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
        Ok(Remote {
            backend,
            op,
            rt,
            timeout,
        })
    }

    /// The backend this talks to.
    pub fn backend(&self) -> &Backend {
        &self.backend
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

impl Storage for Remote {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        let start = Instant::now();
        let r = match self.run(self.op.read(key.as_str())) {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("read", e)),
        };
        tracing::trace!(backend = self.backend.kind(), key = key.as_str(), elapsed = ?start.elapsed(), "remote read");
        r
    }

    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        if matches!(self.backend, Backend::Memcached { .. }) && value.len() > MEMCACHED_MAX_VALUE {
            return Err(StorageError::TooLarge {
                size: value.len() as u64,
                limit: MEMCACHED_MAX_VALUE as u64,
            });
        }
        self.run(self.op.write(key.as_str(), value.to_vec()))
            .map(|_| ())
            .map_err(|e| self.error("write", e))
    }

    fn remove(&self, key: &StorageKey) -> Result<(), StorageError> {
        self.run(self.op.delete(key.as_str()))
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
    fn memcached_refuses_values_over_its_item_limit_without_a_request() {
        let m = Remote::new(
            Backend::Memcached {
                endpoint: "tcp://127.0.0.1:1".into(),
                prefix: String::new(),
                ttl: None,
            },
            Duration::from_secs(1),
        )
        .expect("configuring needs no server");
        let big = vec![0u8; MEMCACHED_MAX_VALUE + 1];
        match m.put(&StorageKey::new("e-1").expect("valid"), &big) {
            Err(StorageError::TooLarge { .. }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
