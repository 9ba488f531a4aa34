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

/// What a Redis URL holds: the server's address, and the user, password
/// and database it may carry.
#[derive(PartialEq, Eq)]
struct RedisUrl {
    /// The URL without user, password, database or options: what OpenDAL
    /// is given (it would ignore the rest), and what may be shown.
    server: String,
    username: Option<String>,
    password: Option<String>,
    db: Option<i64>,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUrl")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("db", &self.db)
            .finish()
    }
}

/// A database number from a URL's path or `db=` option.
fn redis_db(text: &str) -> Result<i64, String> {
    text.parse::<u32>()
        .map(i64::from)
        .map_err(|_| format!("the database {text:?} is not a number"))
}

/// Takes a Redis URL apart: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`,
/// `rediss://…` (TLS), `tcp://…`, `unix:///path` and `redis+unix:///path`;
/// the database may also be given as `?db=DB` (sccache's form). User and
/// password are percent-decoded. An address without a scheme
/// (`host:port`) is passed on as it is. Errors never quote the URL, which
/// may hold a password.
fn parse_redis_url(text: &str) -> Result<RedisUrl, String> {
    let text = text.trim();
    if !text.contains("://") {
        if text.contains('@') {
            return Err(
                "credentials need a URL with its scheme: redis://USER:PASSWORD@HOST:PORT".into(),
            );
        }
        return Ok(RedisUrl {
            server: text.to_string(),
            username: None,
            password: None,
            db: None,
        });
    }
    let url = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    let scheme = url.scheme();
    let unix = matches!(scheme, "unix" | "redis+unix");
    if !unix && !matches!(scheme, "redis" | "rediss" | "tcp") {
        return Err(format!(
            "unsupported scheme {scheme:?}: expected redis://, rediss:// (TLS), tcp://, unix:// or redis+unix://"
        ));
    }
    let decode = |part: &str, what: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))
    };
    let username = match url.username() {
        "" => None,
        u => Some(decode(u, "user name")?),
    };
    let password = match url.password() {
        None | Some("") => None,
        Some(p) => Some(decode(p, "password")?),
    };
    let mut db = None;
    let server = if unix {
        // The path names the socket.
        format!("{scheme}://{}", url.path())
    } else {
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host")?;
        let path = url.path();
        let path = path.strip_prefix('/').unwrap_or(path);
        if !path.is_empty() {
            db = Some(redis_db(path)?);
        }
        match url.port() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }
    };
    for (key, value) in url.query_pairs() {
        match &*key {
            "db" => {
                let n = redis_db(&value)?;
                if db.is_some_and(|d| d != n) {
                    return Err("the URL gives two different databases (path and db=)".into());
                }
                db = Some(n);
            }
            other => {
                return Err(format!(
                    "unknown URL option {other:?}: only db=N is understood"
                ))
            }
        }
    }
    match url.fragment() {
        None => {}
        Some("insecure") => {
            return Err("#insecure (no certificate verification) is not supported: name the server's CA in SSL_CERT_FILE instead".into())
        }
        Some(_) => return Err("unexpected #fragment in the URL".into()),
    }
    Ok(RedisUrl {
        server,
        username,
        password,
        db,
    })
}

/// Redis, from its endpoint (or sccache's older single URL) or cluster
/// nodes. The URLs' user, password and database are used unless the
/// separate settings give them.
fn redis(f: &FileConfig) -> Result<Option<Backend>> {
    let endpoint = match opt(f, &config::REDIS_ENDPOINT)? {
        Some(e) => Some((&config::REDIS_ENDPOINT, e)),
        None => opt(f, &config::REDIS)?.map(|e| (&config::REDIS, e)),
    };
    let cluster = opt(f, &config::REDIS_CLUSTER_ENDPOINTS)?;
    if endpoint.is_none() && cluster.is_none() {
        return Ok(None);
    }
    let parse = |var: &Var, text: &str| {
        parse_redis_url(text).map_err(|m| anyhow::anyhow!("{}: {m}", config::source(var)))
    };
    let endpoint = endpoint.map(|(var, text)| parse(var, &text)).transpose()?;
    let nodes = match &cluster {
        None => Vec::new(),
        Some(c) => c
            .split(',')
            .filter(|node| !node.trim().is_empty())
            .map(|node| parse(&config::REDIS_CLUSTER_ENDPOINTS, node))
            .collect::<Result<Vec<_>>>()?,
    };
    // The credentials in the URLs: the endpoint's, else the cluster
    // nodes', which must agree.
    let mut from_urls: Option<&RedisUrl> = None;
    for u in endpoint.iter().chain(&nodes) {
        if u.username.is_none() && u.password.is_none() && u.db.is_none() {
            continue;
        }
        match from_urls {
            None => from_urls = Some(u),
            Some(first)
                if first.username != u.username
                    || first.password != u.password
                    || first.db != u.db =>
            {
                bail!(
                    "{}: the URLs give different users, passwords or databases; give them once in {}, {} and {}",
                    config::source(&config::REDIS_CLUSTER_ENDPOINTS),
                    config::REDIS_USERNAME.name,
                    config::REDIS_PASSWORD.name,
                    config::REDIS_DB.name
                )
            }
            Some(_) => {}
        }
    }
    let db = match opt(f, &config::REDIS_DB)? {
        Some(v) => v.trim().parse().with_context(|| {
            format!(
                "{}: expected a database number, got {v:?}",
                config::source(&config::REDIS_DB)
            )
        })?,
        None => from_urls.and_then(|u| u.db).unwrap_or(0),
    };
    let username = match opt(f, &config::REDIS_USERNAME)? {
        Some(u) => Some(u),
        None => from_urls.and_then(|u| u.username.clone()),
    };
    let password = match opt(f, &config::REDIS_PASSWORD)? {
        Some(p) => Some(p),
        None => from_urls.and_then(|u| u.password.clone()),
    };
    let cluster_endpoints = (!nodes.is_empty()).then(|| {
        nodes
            .iter()
            .map(|n| n.server.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    Ok(Some(Backend::Redis {
        endpoint: endpoint.map(|u| u.server),
        cluster_endpoints,
        username,
        password,
        db,
        prefix: prefix(f, &config::REDIS_KEY_PREFIX)?,
        ttl: seconds(f, &config::REDIS_EXPIRATION)?,
    }))
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
    if let Some(redis) = redis(f)? {
        out.push((redis, read_only(f, &config::REDIS_RW_MODE)?));
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

/// A REAPI engine as the remote store, if one is configured (it is used
/// when no other backend is).
pub fn load_reapi(f: &FileConfig) -> Result<Option<cachepot_dist::ReapiSettings>> {
    let Some(endpoint) = opt(f, &config::REAPI_ENDPOINT)? else {
        return Ok(None);
    };
    let pairs = |var: &Var| -> Result<Vec<(String, String)>> {
        match opt(f, var)? {
            None => Ok(Vec::new()),
            Some(text) => cachepot_dist::parse_headers(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config::source(var))),
        }
    };
    let headers = pairs(&config::REAPI_HEADERS)?;
    let platform = pairs(&config::REAPI_PLATFORM)?;
    Ok(Some(cachepot_dist::ReapiSettings {
        endpoint,
        instance: prefix(f, &config::REAPI_INSTANCE)?,
        key_prefix: prefix(f, &config::REAPI_KEY_PREFIX)?,
        headers,
        platform,
        ca_file: opt(f, &config::REAPI_CA_FILE)?.map(PathBuf::from),
        read_only: read_only(f, &config::REAPI_RW_MODE)?,
    }))
}

/// Whether misses run on the REAPI engine.
pub fn load_execute(f: &FileConfig) -> Result<bool> {
    flag(f, &config::REAPI_EXECUTE)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn url(text: &str) -> RedisUrl {
        parse_redis_url(text).unwrap()
    }

    #[test]
    fn redis_urls_give_their_password_user_and_database() {
        let u = url("redis://:s3cret@127.0.0.1:16379/3");
        assert_eq!(u.server, "redis://127.0.0.1:16379");
        assert_eq!(u.username, None);
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert_eq!(u.db, Some(3));

        let u = url("rediss://ci:pw@cache.example/12");
        assert_eq!(u.server, "rediss://cache.example");
        assert_eq!(u.username.as_deref(), Some("ci"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.db, Some(12));

        // sccache's `?db=` form, and a user without a password.
        let u = url("redis://ci@cache.example:6379/?db=4");
        assert_eq!(u.server, "redis://cache.example:6379");
        assert_eq!((u.username.as_deref(), u.password), (Some("ci"), None));
        assert_eq!(u.db, Some(4));
    }

    #[test]
    fn redis_url_passwords_are_percent_decoded() {
        let u = url("redis://us%65r:p%40ss%3Aw%2Frd%25@h:1/0");
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("p@ss:w/rd%"));
        assert_eq!(u.db, Some(0));
        // An unencoded `@` or `:` in the password still splits at the
        // last `@` and the first `:`.
        let u = url("redis://:p@ss:word@h:1");
        assert_eq!(u.password.as_deref(), Some("p@ss:word"));
        assert_eq!(u.server, "redis://h:1");
        // Not UTF-8 once decoded.
        let err = parse_redis_url("redis://:%ff@h:1").unwrap_err();
        assert!(err.contains("password"), "{err}");
    }

    #[test]
    fn redis_urls_without_credentials_pass_through() {
        for (text, server) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379"),
            ("tcp://h:6379", "tcp://h:6379"),
            ("127.0.0.1:6379", "127.0.0.1:6379"),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
            (
                "redis+unix:///run/redis.sock?db=2",
                "redis+unix:///run/redis.sock",
            ),
        ] {
            let u = url(text);
            assert_eq!(u.server, server, "{text}");
            assert_eq!((u.username, u.password), (None, None), "{text}");
        }
        assert_eq!(url("redis+unix:///run/redis.sock?db=2").db, Some(2));
        assert_eq!(url("redis://h").db, None);
    }

    #[test]
    fn bad_redis_urls_are_named_without_the_password() {
        for (text, says) in [
            ("http://:pw@h:1", "unsupported scheme"),
            ("redis://:pw@h:1/x", "database"),
            ("redis://:pw@h:1/1/2", "database"),
            ("redis://:pw@h:1/-1", "database"),
            ("redis://:pw@h:1/1?db=2", "two different databases"),
            ("redis://:pw@h:1?timeout=3", "unknown URL option"),
            ("rediss://:pw@h:1#insecure", "SSL_CERT_FILE"),
            ("redis://:pw@h:99999", "not a valid URL"),
            ("redis://:pw@/0", "host"),
            (":pw@h:1", "scheme"),
        ] {
            let err = parse_redis_url(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
            assert!(!err.contains("pw"), "{text}: {err}");
        }
        let dbg = format!("{:?}", url("redis://:s3cret@h:1"));
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }

    fn redis_from(file: &str) -> Result<Backend> {
        let f: FileConfig = toml::from_str(file).unwrap();
        Ok(redis(&f)?.unwrap())
    }

    #[test]
    fn separate_settings_win_over_the_urls_credentials() {
        let b = redis_from("[redis]\nurl = \"redis://u:p%40ss@127.0.0.1:1/3\"\n").unwrap();
        assert_eq!(
            redis_parts(&b),
            (Some("redis://127.0.0.1:1"), Some("u"), Some("p@ss"), 3)
        );
        assert!(!b.location().contains("p@ss"), "{}", b.location());

        let b = redis_from(
            "[redis]\nendpoint = \"redis://u:url-pw@127.0.0.1:1/3\"\nurl = \"redis://ignored:1\"\npassword = \"own\"\nusername = \"me\"\ndb = 5\n",
        )
        .unwrap();
        assert_eq!(
            redis_parts(&b),
            (Some("redis://127.0.0.1:1"), Some("me"), Some("own"), 5)
        );
    }

    /// A Redis backend's endpoint, user, password and database.
    fn redis_parts(b: &Backend) -> (Option<&str>, Option<&str>, Option<&str>, i64) {
        let Backend::Redis {
            endpoint,
            username,
            password,
            db,
            ..
        } = b
        else {
            panic!("{b:?}")
        };
        (
            endpoint.as_deref(),
            username.as_deref(),
            password.as_deref(),
            *db,
        )
    }

    #[test]
    fn cluster_nodes_give_up_their_credentials_once() {
        let b = redis_from("[redis]\ncluster_endpoints = \"redis://:pw@h:1,redis://:pw@h:2,\"\n")
            .unwrap();
        let Backend::Redis {
            cluster_endpoints,
            password,
            ..
        } = &b
        else {
            panic!("{b:?}")
        };
        assert_eq!(
            cluster_endpoints.as_deref(),
            Some("redis://h:1,redis://h:2")
        );
        assert_eq!(password.as_deref(), Some("pw"));
        let err =
            redis_from("[redis]\ncluster_endpoints = \"redis://:pw@h:1,redis://:other@h:2\"\n")
                .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("different"), "{err}");
        assert!(!err.contains("other"), "{err}");
    }

    #[test]
    fn a_bad_redis_url_names_its_setting() {
        let err = format!(
            "{:#}",
            redis_from("[redis]\nurl = \"redis://:pw@h:1/nope\"\n").unwrap_err()
        );
        assert!(err.starts_with("config key redis.url:"), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }
}
