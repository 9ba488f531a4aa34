//! The remote services and how an OpenDAL operator is built for each.

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use opendal::{services, Operator};

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
        /// URL that hands out OAuth tokens (`{"accessToken": …, "expireTime": …}`).
        credentials_url: Option<String>,
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
        /// `redis://` or `rediss://` URL of one server, without user,
        /// password or database (the fields below hold those; OpenDAL
        /// would ignore them in the URL).
        endpoint: Option<String>,
        /// Comma-separated URLs of cluster nodes, without credentials.
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

pub(super) fn build(backend: &Backend, token: Option<&str>) -> opendal::Result<Operator> {
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
            credentials_url,
            endpoint,
        } => {
            let mut b = services::Gcs::default()
                .bucket(&bucket)
                .root(&root(&prefix));
            if let Some(e) = &endpoint {
                b = b.endpoint(e);
            }
            let from_env = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some();
            match (token, &key_path) {
                // A token from the credentials URL.
                (Some(t), _) => {
                    b = b
                        .token(t.to_string())
                        .disable_vm_metadata()
                        .disable_config_load()
                }
                (None, Some(p)) => b = b.credential_path(&p.to_string_lossy()),
                // No credentials configured: unauthenticated requests (a
                // public bucket, an emulator) rather than a failure.
                (None, None) if credentials_url.is_none() && !from_env => {
                    b = b
                        .skip_signature()
                        .disable_vm_metadata()
                        .disable_config_load();
                }
                (None, None) => {}
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
