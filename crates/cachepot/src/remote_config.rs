//! Choosing a remote backend from the environment (the variables are
//! declared in `config.rs`). When several are configured, the first in
//! this order wins: S3, Redis, Memcached, GCS, Azure Blob, WebDAV (as in
//! sccache); the daemon logs the ones it ignores.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cachepot_storage::remote::Backend;

use crate::config::{self, setting, FileConfig, Var};

/// The remote backend and its mode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteSettings {
    /// Which service.
    pub backend: Backend,
    /// Read but never write.
    pub read_only: bool,
    /// Other configured backends, ignored because this one comes first.
    pub ignored: Vec<&'static str>,
}

/// The setting's value from the environment or the config file.
fn opt(f: &FileConfig, var: &Var) -> Result<Option<String>> {
    Ok(setting(var, f)?.filter(|v| !v.trim().is_empty()))
}

fn prefix(f: &FileConfig, var: &Var) -> Result<String> {
    Ok(opt(f, var)?.unwrap_or_default())
}

fn flag(f: &FileConfig, var: &Var) -> Result<bool> {
    match opt(f, var)?.map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => bail!("{}: expected true or false, got {v:?}", var.name),
    }
}

fn read_only(f: &FileConfig, var: &Var) -> Result<bool> {
    match opt(f, var)?.map(|v| v.to_ascii_uppercase()) {
        None => Ok(false),
        Some(v) if v == "READ_ONLY" => Ok(true),
        Some(v) if v == "READ_WRITE" => Ok(false),
        Some(v) => bail!("{}: expected READ_ONLY or READ_WRITE, got {v:?}", var.name),
    }
}

fn seconds(f: &FileConfig, var: &Var) -> Result<Option<Duration>> {
    match opt(f, var)? {
        None => Ok(None),
        Some(v) => {
            let n: u64 = v.trim().parse().with_context(|| {
                format!(
                    "{}: expected a whole number of seconds, got {v:?}",
                    var.name
                )
            })?;
            Ok((n > 0).then(|| Duration::from_secs(n)))
        }
    }
}

/// The remote backends configured, in precedence order.
fn candidates(f: &FileConfig) -> Result<Vec<(Backend, bool)>> {
    let mut out = Vec::new();
    if let Some(bucket) = opt(f, &config::BUCKET)? {
        let endpoint = opt(f, &config::ENDPOINT)?.map(|e| {
            if e.contains("://") {
                e
            } else {
                let ssl = !matches!(
                    opt(f, &config::S3_USE_SSL).ok().flatten().as_deref(),
                    Some("false" | "0" | "off" | "no")
                );
                format!("{}://{e}", if ssl { "https" } else { "http" })
            }
        });
        let no_credentials = flag(f, &config::S3_NO_CREDENTIALS)?;
        out.push((
            Backend::S3 {
                bucket,
                region: opt(f, &config::REGION)?,
                endpoint,
                prefix: prefix(f, &config::S3_KEY_PREFIX)?,
                virtual_host: flag(f, &config::S3_ENABLE_VIRTUAL_HOST_STYLE)?,
                no_credentials,
            },
            read_only(f, &config::S3_RW_MODE)? || no_credentials,
        ));
    }
    let redis = opt(f, &config::REDIS_ENDPOINT)?;
    let cluster = opt(f, &config::REDIS_CLUSTER_ENDPOINTS)?;
    if redis.is_some() || cluster.is_some() {
        let db = match opt(f, &config::REDIS_DB)? {
            None => 0,
            Some(v) => v.trim().parse().with_context(|| {
                format!(
                    "{}: expected a database number, got {v:?}",
                    config::REDIS_DB.name
                )
            })?,
        };
        out.push((
            Backend::Redis {
                endpoint: redis,
                cluster_endpoints: cluster,
                username: opt(f, &config::REDIS_USERNAME)?,
                password: opt(f, &config::REDIS_PASSWORD)?,
                db,
                prefix: prefix(f, &config::REDIS_KEY_PREFIX)?,
                ttl: seconds(f, &config::REDIS_EXPIRATION)?,
            },
            read_only(f, &config::REDIS_RW_MODE)?,
        ));
    }
    if let Some(endpoint) = opt(f, &config::MEMCACHED_ENDPOINT)? {
        let ttl = seconds(f, &config::MEMCACHED_EXPIRATION)?;
        if ttl.is_some_and(|t| t > Duration::from_secs(30 * 86400)) {
            bail!(
                "{}: Memcached expiries are at most 30 days (2592000 seconds)",
                config::MEMCACHED_EXPIRATION.name
            );
        }
        out.push((
            Backend::Memcached {
                endpoint,
                prefix: prefix(f, &config::MEMCACHED_KEY_PREFIX)?,
                ttl,
            },
            read_only(f, &config::MEMCACHED_RW_MODE)?,
        ));
    }
    if let Some(bucket) = opt(f, &config::GCS_BUCKET)? {
        out.push((
            Backend::Gcs {
                bucket,
                prefix: prefix(f, &config::GCS_KEY_PREFIX)?,
                key_path: opt(f, &config::GCS_KEY_PATH)?.map(PathBuf::from),
                credentials_url: opt(f, &config::GCS_CREDENTIALS_URL)?,
                endpoint: opt(f, &config::GCS_ENDPOINT)?,
            },
            read_only(f, &config::GCS_RW_MODE)?,
        ));
    }
    let azure = opt(f, &config::AZURE_CONNECTION_STRING)?;
    let account_name = opt(f, &config::AZURE_ACCOUNT_NAME)?;
    let account_key = opt(f, &config::AZURE_ACCOUNT_KEY)?;
    let container = opt(f, &config::AZURE_BLOB_CONTAINER)?;
    let credentials = azure.is_some() || account_name.is_some();
    match (credentials, container) {
        (true, Some(container)) => {
            if azure.is_none() && account_key.is_none() {
                bail!(
                    "{} is set but {} is not: give the account's key (or a connection string in {})",
                    config::AZURE_ACCOUNT_NAME.name,
                    config::AZURE_ACCOUNT_KEY.name,
                    config::AZURE_CONNECTION_STRING.name
                );
            }
            out.push((
                Backend::Azure {
                    connection_string: azure,
                    account_name,
                    account_key,
                    container,
                    prefix: prefix(f, &config::AZURE_KEY_PREFIX)?,
                    endpoint: opt(f, &config::AZURE_ENDPOINT)?,
                },
                read_only(f, &config::AZURE_RW_MODE)?,
            ))
        }
        (true, None) => bail!(
            "{} or {} is set but {} is not: name the container",
            config::AZURE_CONNECTION_STRING.name,
            config::AZURE_ACCOUNT_NAME.name,
            config::AZURE_BLOB_CONTAINER.name
        ),
        (false, Some(_)) => bail!(
            "{} is set but neither {} nor {} is: give the account's connection string, or its name and key",
            config::AZURE_BLOB_CONTAINER.name,
            config::AZURE_CONNECTION_STRING.name,
            config::AZURE_ACCOUNT_NAME.name
        ),
        (false, None) => {}
    }
    if let Some(endpoint) = opt(f, &config::WEBDAV_ENDPOINT)? {
        out.push((
            Backend::Webdav {
                endpoint,
                prefix: prefix(f, &config::WEBDAV_KEY_PREFIX)?,
                username: opt(f, &config::WEBDAV_USERNAME)?,
                password: opt(f, &config::WEBDAV_PASSWORD)?,
                token: opt(f, &config::WEBDAV_TOKEN)?,
            },
            read_only(f, &config::WEBDAV_RW_MODE)?,
        ));
    }
    Ok(out)
}

/// The remote backend to use, if any.
pub fn load(f: &FileConfig) -> Result<Option<RemoteSettings>> {
    let mut all = candidates(f)?.into_iter();
    let Some((backend, read_only)) = all.next() else {
        return Ok(None);
    };
    Ok(Some(RemoteSettings {
        backend,
        read_only,
        ignored: all.map(|(b, _)| b.kind()).collect(),
    }))
}
