//! Configuration: every environment variable cachepot reads is declared
//! here once, with its documentation (the README's reference section
//! mirrors this table, and a test keeps them in step).
//!
//! Precedence: the `CACHEPOT_*` variable, then its `SCCACHE_*` name, then
//! the config file (`CACHEPOT_CONF`, default `~/.config/cachepot/config.toml`),
//! then the default.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// One environment variable.
pub struct Var {
    /// The variable.
    pub name: &'static str,
    /// The sccache name accepted when `name` is unset.
    pub sccache: Option<&'static str>,
    /// The config file key, if the file can set it.
    pub key: Option<&'static str>,
    /// What it does, and its default.
    pub doc: &'static str,
}

macro_rules! vars {
    ($($id:ident = $name:literal, $sccache:expr, $key:expr, $doc:literal;)*) => {
        $(#[doc = $doc] pub const $id: Var = Var { name: $name, sccache: $sccache, key: $key, doc: $doc };)*
        /// Every variable, in documentation order.
        pub const ALL: &[Var] = &[$($id),*];
    };
}

vars! {
    DIR = "CACHEPOT_DIR", Some("SCCACHE_DIR"), Some("dir"),
        "Local cache directory. Default: `$XDG_CACHE_HOME/cachepot`, or `~/.cache/cachepot`.";
    CACHE_SIZE = "CACHEPOT_CACHE_SIZE", Some("SCCACHE_CACHE_SIZE"), Some("cache_size"),
        "Size limit of the local cache, in bytes or with a unit: `500M`, `20G`, `1T` (powers of 1024). Least recently used entries are evicted. Default: `10G`.";
    IDLE_TIMEOUT = "CACHEPOT_IDLE_TIMEOUT", Some("SCCACHE_IDLE_TIMEOUT"), Some("idle_timeout"),
        "Seconds the daemon waits without a request before it exits; `0` means never. Default: `600`.";
    BASEDIRS = "CACHEPOT_BASEDIRS", Some("SCCACHE_BASEDIRS"), Some("basedirs"),
        "Extra base directories, separated by `:` (in the file: a list). Absolute paths under them are hashed relative to them, like the working directory, `CARGO_HOME` and the target directory, which are always base directories.";
    KEY_ENV = "CACHEPOT_KEY_ENV", None, Some("key_env"),
        "Names of environment variables, separated by commas or whitespace (in the file: a list of strings), whose values go into the key of every Rust compile: variables a proc-macro reads at compile time, which rustc never hears of (a value set to empty and an unset variable are told apart). The values are read per compile, from the compiler's environment. Without it, `DATABASE_URL`, `SQLX_OFFLINE` and `SQLX_OFFLINE_DIR` are keyed for crates that use `sqlx`.";
    CONF = "CACHEPOT_CONF", Some("SCCACHE_CONF"), None,
        "Path of the config file. Default: `$XDG_CONFIG_HOME/cachepot/config.toml`, or `~/.config/cachepot/config.toml`. A missing file is fine; a malformed one is an error.";
    LOG = "CACHEPOT_LOG", Some("SCCACHE_LOG"), None,
        "Log filter in tracing syntax (`debug`, `cachepot_daemon=trace`, …) for the wrapper and the daemon. Default: `info` for the daemon, `warn` for the wrapper.";
    RUNTIME_DIR = "CACHEPOT_RUNTIME_DIR", None, None,
        "Private directory (mode 0700) for the daemon's socket, lock and log files. Default: `$XDG_RUNTIME_DIR/cachepot`, or `/tmp/cachepot-<uid>`.";
    START_SERVER = "CACHEPOT_START_SERVER", Some("SCCACHE_START_SERVER"), None,
        "`1`: run as the daemon instead of wrapping a compiler (detached, unless `CACHEPOT_NO_DAEMON=1`).";
    NO_DAEMON = "CACHEPOT_NO_DAEMON", Some("SCCACHE_NO_DAEMON"), None,
        "`1` with `CACHEPOT_START_SERVER=1`: run the daemon in the foreground, logging to the terminal.";
    RECACHE = "CACHEPOT_RECACHE", Some("SCCACHE_RECACHE"), None,
        "`1`: compile every cacheable unit and overwrite its entry, without looking the cache up (read per build, by the wrapper).";
    NO_CACHE = "CACHEPOT_NO_CACHE", Some("SCCACHE_NO_CACHE"), None,
        "`1`: run the compiler without the cache at all: no lookup, no store, no daemon (read per build, by the wrapper).";
    C_CUSTOM_CACHE_BUSTER = "CACHEPOT_C_CUSTOM_CACHE_BUSTER", Some("SCCACHE_C_CUSTOM_CACHE_BUSTER"), None,
        "Any text: goes into the key of every C and C++ compile, so a new value forces distinct entries (read per compile, from the compiler's environment).";
    LOCAL = "CACHEPOT_LOCAL", None, Some("local"),
        "`off`: no local cache in front of a remote backend: entries are not kept on this machine. With prefetch on (`CACHEPOT_PREFETCH`), the daemon still keeps a scratch directory of its own (`scratch-<id>` in the cache directory, emptied when it starts and stops, at most 4 GiB) for what prefetch and remote hits bring, so a build does not pay a remote round trip per lookup; stores go to the remote only. Default: `on`.";
    COMPILE_WAIT = "CACHEPOT_COMPILE_WAIT", None, Some("compile_wait"),
        "Seconds a compile waits when another build compiles the same unit at the same moment (two worktrees, two CI jobs on one runner), before it compiles too. Default: `300`.";
    PREFETCH = "CACHEPOT_PREFETCH", None, Some("prefetch"),
        "How many entries build-level prefetch fetches from the remote backend at once: when a build of a workspace starts, the manifest lists and entries its previous build (on any machine) looked up are copied into the local tier in the background, before cargo asks for them. `0` or `off`: no prefetch. Default: `16`.";
    VERIFY = "CACHEPOT_VERIFY", None, Some("verify"),
        "`1`: every cache hit is also compiled, the outputs are compared byte for byte with the entry, and a mismatch is counted (`verify_mismatches`), logged with the unit and the differing output, and its entry removed; the freshly compiled outputs are the ones left in place. A fraction such as `0.05` verifies that share of hits (chosen by key, so the same ones every build). Outputs that are not deterministic (incremental compiles, coverage and profiling objects) are counted as `verify_unverifiable` and served as hits. Build-script replays are verified by running the script (twice when the first run differs: what two real runs do not agree on is not verifiable). Default: `0`.";
    PATH_POLICY = "CACHEPOT_PATH_POLICY", None, Some("path_policy"),
        "`share` (default): entries are shared across checkouts, `CARGO_HOME`s and target directories, for Rust and C alike; the absolute paths a restored output embeds in debug info, `file!()` and panic messages are those of the machine that stored it (`--remap-path-prefix` / `-ffile-prefix-map` make them the same everywhere). `exact`: the absolute paths of the working directory, `CARGO_HOME`, the target directory and `CACHEPOT_BASEDIRS` are keyed too, so an output always names this checkout's own paths and only identical layouts share.";
    BUILD_SCRIPTS = "CACHEPOT_BUILD_SCRIPTS", None, Some("build_scripts"),
        "`off`: build scripts run as without cachepot. `on` (default): a build script compiled through cachepot runs through it too (its binary gives way to a small launcher that asks the daemon): a run whose inputs match a stored one gets its `OUT_DIR` files written back and its output replayed instead of running (configure, make and cmake included); a miss runs the real binary with cargo's environment and jobserver, and is stored when it can be replayed exactly. Counted apart in `--show-stats` (`build scripts`).";
    BUILD_SCRIPTS_SKIP = "CACHEPOT_BUILD_SCRIPTS_SKIP", None, Some("build_scripts_skip"),
        "Packages whose build scripts always run, by package name, separated by commas or whitespace (in the file: a list of strings), such as a build script that must see the machine it runs on.";
    REMOTE_TIMEOUT = "CACHEPOT_REMOTE_TIMEOUT", None, Some("remote_timeout"),
        "Seconds one remote storage call may take before it counts as failed and the compile goes on without it. Default: `30`.";
    BUCKET = "CACHEPOT_BUCKET", Some("SCCACHE_BUCKET"), Some("s3.bucket"),
        "S3: the bucket. Setting it selects S3. Credentials come from the standard AWS chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE`, web identity, container and instance metadata.";
    REGION = "CACHEPOT_REGION", Some("SCCACHE_REGION"), Some("s3.region"),
        "S3: the region. Default: `AWS_REGION`, then `AWS_DEFAULT_REGION`; `us-east-1` with a custom endpoint.";
    ENDPOINT = "CACHEPOT_ENDPOINT", Some("SCCACHE_ENDPOINT"), Some("s3.endpoint"),
        "S3: endpoint of an S3-compatible server (MinIO, R2, Ceph, …), such as `http://127.0.0.1:9000`. Path-style addressing.";
    S3_KEY_PREFIX = "CACHEPOT_S3_KEY_PREFIX", Some("SCCACHE_S3_KEY_PREFIX"), Some("s3.key_prefix"),
        "S3: prefix of every key.";
    S3_USE_SSL = "CACHEPOT_S3_USE_SSL", Some("SCCACHE_S3_USE_SSL"), Some("s3.use_ssl"),
        "S3: `false` to use `http://` for an endpoint given without a scheme. Default: `true`.";
    S3_ENABLE_VIRTUAL_HOST_STYLE = "CACHEPOT_S3_ENABLE_VIRTUAL_HOST_STYLE", Some("SCCACHE_S3_ENABLE_VIRTUAL_HOST_STYLE"), Some("s3.enable_virtual_host_style"),
        "S3: `true` for virtual-host-style addressing (`bucket.endpoint`) instead of path style.";
    S3_NO_CREDENTIALS = "CACHEPOT_S3_NO_CREDENTIALS", Some("SCCACHE_S3_NO_CREDENTIALS"), Some("s3.no_credentials"),
        "S3: `true` to send unsigned requests (a public bucket); implies read-only.";
    S3_RW_MODE = "CACHEPOT_S3_RW_MODE", Some("SCCACHE_S3_RW_MODE"), Some("s3.rw_mode"),
        "S3: `READ_ONLY` to read but never write (untrusted builds such as pull requests). Default: `READ_WRITE`.";
    REDIS_ENDPOINT = "CACHEPOT_REDIS_ENDPOINT", Some("SCCACHE_REDIS_ENDPOINT"), Some("redis.endpoint"),
        "Redis: `redis://host:port` or `rediss://host:port` (TLS), optionally with user, password and database: `redis://USER:PASSWORD@host:port/DB` (`redis://:PASSWORD@…` without a user; percent-encode `@`, `:`, `/` and `%` in them). The separate user, password and database settings win over the URL's. Setting it selects Redis.";
    REDIS = "CACHEPOT_REDIS", Some("SCCACHE_REDIS"), Some("redis.url"),
        "Redis, sccache's older setting: a URL of the same form as `CACHEPOT_REDIS_ENDPOINT`'s (`redis://[[USER]:PASSWORD@]host[:port][/DB]`, or `/?db=DB`), used when no endpoint is set. Setting it selects Redis.";
    REDIS_CLUSTER_ENDPOINTS = "CACHEPOT_REDIS_CLUSTER_ENDPOINTS", Some("SCCACHE_REDIS_CLUSTER_ENDPOINTS"), Some("redis.cluster_endpoints"),
        "Redis Cluster: comma-separated node URLs, instead of `CACHEPOT_REDIS_ENDPOINT`.";
    REDIS_USERNAME = "CACHEPOT_REDIS_USERNAME", Some("SCCACHE_REDIS_USERNAME"), Some("redis.username"),
        "Redis: ACL user name.";
    REDIS_PASSWORD = "CACHEPOT_REDIS_PASSWORD", Some("SCCACHE_REDIS_PASSWORD"), Some("redis.password"),
        "Redis: password.";
    REDIS_DB = "CACHEPOT_REDIS_DB", Some("SCCACHE_REDIS_DB"), Some("redis.db"),
        "Redis: database number. Default: `0`.";
    REDIS_KEY_PREFIX = "CACHEPOT_REDIS_KEY_PREFIX", Some("SCCACHE_REDIS_KEY_PREFIX"), Some("redis.key_prefix"),
        "Redis: prefix of every key.";
    REDIS_EXPIRATION = "CACHEPOT_REDIS_EXPIRATION", Some("SCCACHE_REDIS_EXPIRATION"), Some("redis.expiration"),
        "Redis: seconds after which written entries expire. Default: never.";
    REDIS_RW_MODE = "CACHEPOT_REDIS_RW_MODE", Some("SCCACHE_REDIS_RW_MODE"), Some("redis.rw_mode"),
        "Redis: `READ_ONLY` or `READ_WRITE` (default).";
    MEMCACHED_ENDPOINT = "CACHEPOT_MEMCACHED_ENDPOINT", Some("SCCACHE_MEMCACHED_ENDPOINT"), Some("memcached.endpoint"),
        "Memcached: `tcp://host:port`. Setting it selects Memcached. Entries over the server's item size limit (`-I`, asked with `stats settings` at the first write; 1 MiB when it cannot be asked) are not sent (counted in `cache_writes_too_large`).";
    MEMCACHED_KEY_PREFIX = "CACHEPOT_MEMCACHED_KEY_PREFIX", Some("SCCACHE_MEMCACHED_KEY_PREFIX"), Some("memcached.key_prefix"),
        "Memcached: prefix of every key.";
    MEMCACHED_EXPIRATION = "CACHEPOT_MEMCACHED_EXPIRATION", Some("SCCACHE_MEMCACHED_EXPIRATION"), Some("memcached.expiration"),
        "Memcached: seconds after which written entries expire (at most 30 days). Default: never.";
    MEMCACHED_RW_MODE = "CACHEPOT_MEMCACHED_RW_MODE", Some("SCCACHE_MEMCACHED_RW_MODE"), Some("memcached.rw_mode"),
        "Memcached: `READ_ONLY` or `READ_WRITE` (default).";
    GCS_BUCKET = "CACHEPOT_GCS_BUCKET", Some("SCCACHE_GCS_BUCKET"), Some("gcs.bucket"),
        "Google Cloud Storage: the bucket. Setting it selects GCS.";
    GCS_KEY_PREFIX = "CACHEPOT_GCS_KEY_PREFIX", Some("SCCACHE_GCS_KEY_PREFIX"), Some("gcs.key_prefix"),
        "GCS: prefix of every key.";
    GCS_KEY_PATH = "CACHEPOT_GCS_KEY_PATH", Some("SCCACHE_GCS_KEY_PATH"), Some("gcs.key_path"),
        "GCS: service-account key file. Without it (and without `GOOGLE_APPLICATION_CREDENTIALS`), requests go unauthenticated: a public bucket or an emulator.";
    GCS_CREDENTIALS_URL = "CACHEPOT_GCS_CREDENTIALS_URL", Some("SCCACHE_GCS_CREDENTIALS_URL"), Some("gcs.credentials_url"),
        "GCS: URL that hands out OAuth tokens (JSON with `accessToken`, and optionally `expires_in` seconds; otherwise fetched again every 10 minutes), instead of a key file.";
    GCS_ENDPOINT = "CACHEPOT_GCS_ENDPOINT", None, Some("gcs.endpoint"),
        "GCS: endpoint override, for emulators and private endpoints. Default: `https://storage.googleapis.com`.";
    GCS_RW_MODE = "CACHEPOT_GCS_RW_MODE", Some("SCCACHE_GCS_RW_MODE"), Some("gcs.rw_mode"),
        "GCS: `READ_ONLY` or `READ_WRITE` (default).";
    AZURE_CONNECTION_STRING = "CACHEPOT_AZURE_CONNECTION_STRING", Some("SCCACHE_AZURE_CONNECTION_STRING"), Some("azure.connection_string"),
        "Azure Blob: connection string (account name and key, endpoint). With `CACHEPOT_AZURE_BLOB_CONTAINER`, selects Azure.";
    AZURE_ACCOUNT_NAME = "CACHEPOT_AZURE_ACCOUNT_NAME", None, Some("azure.account_name"),
        "Azure Blob: storage account name, with `CACHEPOT_AZURE_ACCOUNT_KEY`, instead of a connection string. The endpoint defaults to `https://<account>.blob.core.windows.net`.";
    AZURE_ACCOUNT_KEY = "CACHEPOT_AZURE_ACCOUNT_KEY", None, Some("azure.account_key"),
        "Azure Blob: the account's access key (base64).";
    AZURE_BLOB_CONTAINER = "CACHEPOT_AZURE_BLOB_CONTAINER", Some("SCCACHE_AZURE_BLOB_CONTAINER"), Some("azure.container"),
        "Azure Blob: the container.";
    AZURE_KEY_PREFIX = "CACHEPOT_AZURE_KEY_PREFIX", Some("SCCACHE_AZURE_KEY_PREFIX"), Some("azure.key_prefix"),
        "Azure Blob: prefix of every key.";
    AZURE_ENDPOINT = "CACHEPOT_AZURE_ENDPOINT", None, Some("azure.endpoint"),
        "Azure Blob: endpoint override (Azurite, sovereign clouds). Default: the connection string's.";
    AZURE_RW_MODE = "CACHEPOT_AZURE_RW_MODE", Some("SCCACHE_AZURE_RW_MODE"), Some("azure.rw_mode"),
        "Azure Blob: `READ_ONLY` or `READ_WRITE` (default).";
    WEBDAV_ENDPOINT = "CACHEPOT_WEBDAV_ENDPOINT", Some("SCCACHE_WEBDAV_ENDPOINT"), Some("webdav.endpoint"),
        "WebDAV, or a plain HTTP cache speaking GET and PUT (bazel-remote): the URL. Setting it selects WebDAV.";
    WEBDAV_KEY_PREFIX = "CACHEPOT_WEBDAV_KEY_PREFIX", Some("SCCACHE_WEBDAV_KEY_PREFIX"), Some("webdav.key_prefix"),
        "WebDAV: prefix of every key.";
    WEBDAV_USERNAME = "CACHEPOT_WEBDAV_USERNAME", Some("SCCACHE_WEBDAV_USERNAME"), Some("webdav.username"),
        "WebDAV: basic-auth user.";
    WEBDAV_PASSWORD = "CACHEPOT_WEBDAV_PASSWORD", Some("SCCACHE_WEBDAV_PASSWORD"), Some("webdav.password"),
        "WebDAV: basic-auth password.";
    WEBDAV_TOKEN = "CACHEPOT_WEBDAV_TOKEN", Some("SCCACHE_WEBDAV_TOKEN"), Some("webdav.token"),
        "WebDAV: bearer token (instead of user and password).";
    WEBDAV_RW_MODE = "CACHEPOT_WEBDAV_RW_MODE", Some("SCCACHE_WEBDAV_RW_MODE"), Some("webdav.rw_mode"),
        "WebDAV: `READ_ONLY` or `READ_WRITE` (default).";
    REAPI_ENDPOINT = "CACHEPOT_REAPI_ENDPOINT", None, Some("reapi.endpoint"),
        "A Bazel Remote Execution API engine's Action Cache and CAS as the remote store (BuildGrid, Buildbarn, BuildBuddy, NativeLink, bazel-remote): `grpc://host:port`, or `grpcs://host:port` for TLS (the system's CAs, and `CACHEPOT_REAPI_CA_FILE`). Each value is one CAS blob, named by an Action Cache entry whose action digest is derived from cachepot's key. Setting it selects REAPI, after the other backends.";
    REAPI_INSTANCE = "CACHEPOT_REAPI_INSTANCE", None, Some("reapi.instance"),
        "REAPI: the instance name. Default: empty.";
    REAPI_HEADERS = "CACHEPOT_REAPI_HEADERS", None, Some("reapi.headers"),
        "REAPI: `name=value` pairs sent with every call, separated by commas (BuildBuddy's `x-buildbuddy-api-key=…`, `authorization=Bearer …`).";
    REAPI_CA_FILE = "CACHEPOT_REAPI_CA_FILE", None, Some("reapi.ca_file"),
        "REAPI: a CA certificate (PEM) trusted for a `grpcs://` endpoint, besides the system's (an engine with a private CA).";
    REAPI_PLATFORM = "CACHEPOT_REAPI_PLATFORM", None, Some("reapi.platform"),
        "REAPI: platform properties of executed actions, `name=value` pairs separated by commas (`container-image=docker://…`, `pool=large`): the compiles of `CACHEPOT_REAPI_EXECUTE` and the action of `--check-remote`.";
    REAPI_EXECUTE = "CACHEPOT_REAPI_EXECUTE", None, Some("reapi.execute"),
        "REAPI: `1` runs missed library compiles (rlibs) on the engine instead of here; linked crates, build scripts, C compiles and any compile the engine fails run here, on at most one compile per core. Needs `CACHEPOT_REAPI_ENDPOINT` (the store may still be another backend). Default: off.";
    REAPI_KEY_PREFIX = "CACHEPOT_REAPI_KEY_PREFIX", None, Some("reapi.key_prefix"),
        "REAPI: goes into every action digest, so that several setups sharing an engine and instance keep apart.";
    REAPI_RW_MODE = "CACHEPOT_REAPI_RW_MODE", None, Some("reapi.rw_mode"),
        "REAPI: `READ_ONLY` or `READ_WRITE` (default).";
    INTERNAL_DAEMON = "CACHEPOT_INTERNAL_DAEMON", None, None,
        "Internal: set by cachepot on the daemon it starts, which then logs to its file and reports readiness on stdout. Not for users.";
}

/// Reads a variable, falling back to its sccache name. Empty counts as unset.
pub fn env(var: &Var) -> Option<OsString> {
    std::iter::once(var.name)
        .chain(var.sccache)
        .find_map(|n| std::env::var_os(n).filter(|v| !v.is_empty()))
}

/// Reads a variable as UTF-8 text, naming it if it is not.
pub fn env_str(var: &Var) -> Result<Option<String>> {
    match env(var) {
        None => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{} is not valid UTF-8", var.name)),
    }
}

/// The name to give in an error about a setting's value: the variable
/// that is set (the `CACHEPOT_` one or sccache's), else the config key.
pub fn source(var: &Var) -> String {
    std::iter::once(var.name)
        .chain(var.sccache)
        .find(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
        .map(str::to_string)
        .or_else(|| var.key.map(|k| format!("config key {k}")))
        .unwrap_or_else(|| var.name.to_string())
}

/// Whether a flag variable is set to a true value (`1`, `true`, `yes`, `on`).
pub fn env_flag(var: &Var) -> bool {
    env(var)
        .and_then(|v| v.into_string().ok())
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The settings the daemon runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Local cache directory.
    pub dir: PathBuf,
    /// Size limit in bytes.
    pub cache_size: u64,
    /// Idle timeout; `None` for never.
    pub idle_timeout: Option<Duration>,
    /// Extra base directories.
    pub basedirs: Vec<PathBuf>,
    /// Keep the local disk tier (in front of a remote backend).
    pub local: bool,
    /// The remote backend, if any.
    pub remote: Option<crate::remote_config::RemoteSettings>,
    /// Time limit of one remote storage call.
    pub remote_timeout: Duration,
    /// How long a compile waits for another compile of the same key.
    pub compile_wait: Duration,
    /// What restored outputs' embedded paths may name.
    pub path_policy: cachepot_compiler::PathPolicy,
    /// Parallel fetches of build-level prefetch; 0: off.
    pub prefetch: usize,
    /// The share of hits verified, in millionths (0 to 1 000 000).
    pub verify_ppm: u32,
    /// Variables keyed in every Rust compile, sorted, each once.
    pub key_env: Vec<String>,
    /// Cache build-script runs.
    pub build_scripts: bool,
    /// Packages whose build scripts always run, sorted, each once.
    pub build_scripts_skip: Vec<String>,
    /// A REAPI engine as the remote store, when no other is configured.
    pub reapi: Option<cachepot_dist::ReapiSettings>,
    /// Misses run on the REAPI engine.
    pub reapi_execute: bool,
}

/// The config file's contents.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    dir: Option<PathBuf>,
    cache_size: Option<toml::Value>,
    idle_timeout: Option<u64>,
    basedirs: Option<Vec<PathBuf>>,
    key_env: Option<Vec<String>>,
    local: Option<toml::Value>,
    remote_timeout: Option<toml::Value>,
    compile_wait: Option<toml::Value>,
    path_policy: Option<toml::Value>,
    prefetch: Option<toml::Value>,
    verify: Option<toml::Value>,
    build_scripts: Option<toml::Value>,
    build_scripts_skip: Option<Vec<String>>,
    s3: Option<toml::Table>,
    redis: Option<toml::Table>,
    memcached: Option<toml::Table>,
    gcs: Option<toml::Table>,
    azure: Option<toml::Table>,
    webdav: Option<toml::Table>,
    reapi: Option<toml::Table>,
}

impl FileConfig {
    /// The file's value for a variable's key (`section.name` or `name`),
    /// as text.
    fn value(&self, key: &str) -> Option<String> {
        let v = match key.split_once('.') {
            None => match key {
                "local" => self.local.clone(),
                "remote_timeout" => self.remote_timeout.clone(),
                "compile_wait" => self.compile_wait.clone(),
                "path_policy" => self.path_policy.clone(),
                "prefetch" => self.prefetch.clone(),
                "verify" => self.verify.clone(),
                "build_scripts" => self.build_scripts.clone(),
                _ => None,
            },
            Some((section, name)) => {
                let table = match section {
                    "s3" => &self.s3,
                    "redis" => &self.redis,
                    "memcached" => &self.memcached,
                    "gcs" => &self.gcs,
                    "azure" => &self.azure,
                    "webdav" => &self.webdav,
                    "reapi" => &self.reapi,
                    _ => &None,
                };
                table.as_ref().and_then(|t| t.get(name)).cloned()
            }
        }?;
        Some(match v {
            toml::Value::String(s) => s,
            other => other.to_string(),
        })
    }

    /// Rejects keys in the backend sections that no variable has.
    fn check_sections(&self) -> Result<()> {
        let sections = [
            ("s3", &self.s3),
            ("redis", &self.redis),
            ("memcached", &self.memcached),
            ("gcs", &self.gcs),
            ("azure", &self.azure),
            ("webdav", &self.webdav),
            ("reapi", &self.reapi),
        ];
        for (section, table) in sections {
            for name in table.iter().flat_map(|t| t.keys()) {
                let key = format!("{section}.{name}");
                if !ALL.iter().any(|v| v.key == Some(key.as_str())) {
                    let known: Vec<&str> = ALL
                        .iter()
                        .filter_map(|v| v.key)
                        .filter(|k| k.starts_with(&format!("{section}.")))
                        .collect();
                    bail!(
                        "config key {key} is unknown; [{section}] takes {}",
                        known.join(", ")
                    );
                }
            }
        }
        Ok(())
    }
}

/// A setting: its environment variable (or sccache's name), else its
/// config file key.
pub fn setting(var: &Var, file: &FileConfig) -> Result<Option<String>> {
    if let Some(v) = env_str(var)? {
        return Ok(Some(v));
    }
    Ok(var.key.and_then(|k| file.value(k)))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(fallback)))
}

/// Parses `500M`, `20G`, `10GiB`, `123` (bytes).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return None,
    };
    let bytes = num * mult as f64;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

impl Config {
    /// Reads the environment and the config file.
    pub fn load() -> Result<Config> {
        let file = load_file()?;
        let dir = match env(&DIR) {
            Some(d) => PathBuf::from(d),
            None => match file.dir.clone() {
                Some(d) => d,
                None => xdg("XDG_CACHE_HOME", ".cache")
                    .map(|c| c.join("cachepot"))
                    .context("cannot find a cache directory: set CACHEPOT_DIR or HOME")?,
            },
        };
        let cache_size = match env_str(&CACHE_SIZE)? {
            Some(s) => parse_size(&s).with_context(|| {
                format!("{}: expected a size such as 500M or 20G, got {s:?}", CACHE_SIZE.name)
            })?,
            None => match file.cache_size.clone() {
                None => 10 << 30,
                Some(toml::Value::Integer(n)) if n > 0 => n as u64,
                Some(toml::Value::String(s)) => parse_size(&s).with_context(|| {
                    format!("config key cache_size: expected a size such as \"500M\" or \"20G\", got {s:?}")
                })?,
                Some(other) => bail!("config key cache_size: expected a size such as \"20G\", got {other}"),
            },
        };
        let idle_secs = match env_str(&IDLE_TIMEOUT)? {
            Some(s) => s.trim().parse::<u64>().with_context(|| {
                format!(
                    "{}: expected a whole number of seconds (0 = never), got {s:?}",
                    IDLE_TIMEOUT.name
                )
            })?,
            None => file.idle_timeout.unwrap_or(600),
        };
        let basedirs = match env(&BASEDIRS) {
            Some(v) => std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            None => file.basedirs.clone().unwrap_or_default(),
        };
        for b in &basedirs {
            if !b.is_absolute() {
                bail!(
                    "{}: base directories must be absolute, got {}",
                    BASEDIRS.name,
                    b.display()
                );
            }
        }
        let key_env = match env_str(&KEY_ENV)? {
            Some(v) => parse_key_env(&v),
            None => file.key_env.clone().unwrap_or_default(),
        };
        let key_env = check_key_env(key_env)?;
        let local = match setting(&LOCAL, &file)?.map(|v| v.to_ascii_lowercase()) {
            None => true,
            Some(v) if matches!(v.as_str(), "on" | "1" | "true" | "yes") => true,
            Some(v) if matches!(v.as_str(), "off" | "0" | "false" | "no") => false,
            Some(v) => bail!("{}: expected on or off, got {v:?}", LOCAL.name),
        };
        let remote_timeout = match setting(&REMOTE_TIMEOUT, &file)? {
            None => Duration::from_secs(30),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Duration::from_secs(n),
                _ => bail!(
                    "{}: expected a whole number of seconds above 0, got {v:?}",
                    REMOTE_TIMEOUT.name
                ),
            },
        };
        let compile_wait = match setting(&COMPILE_WAIT, &file)? {
            None => Duration::from_secs(300),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) => Duration::from_secs(n),
                _ => bail!(
                    "{}: expected a whole number of seconds, got {v:?}",
                    COMPILE_WAIT.name
                ),
            },
        };
        let path_policy = match setting(&PATH_POLICY, &file)? {
            None => cachepot_compiler::PathPolicy::Share,
            Some(v) => cachepot_compiler::PathPolicy::parse(&v).with_context(|| {
                format!("{}: expected share or exact, got {v:?}", PATH_POLICY.name)
            })?,
        };
        let prefetch = match setting(&PREFETCH, &file)? {
            None => 16,
            Some(v) if v.trim().eq_ignore_ascii_case("off") => 0,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n <= 256 => n,
                _ => bail!(
                    "{}: expected off or a number of parallel fetches from 0 to 256, got {v:?}",
                    PREFETCH.name
                ),
            },
        };
        let verify_ppm = match setting(&VERIFY, &file)? {
            None => 0,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(f) if (0.0..=1.0).contains(&f) => (f * 1e6).round() as u32,
                _ => bail!(
                    "{}: expected 0, 1 or a fraction of hits such as 0.05, got {v:?}",
                    VERIFY.name
                ),
            },
        };
        let build_scripts = match setting(&BUILD_SCRIPTS, &file)?.map(|v| v.to_ascii_lowercase()) {
            None => true,
            Some(v) if matches!(v.as_str(), "on" | "1" | "true" | "yes") => true,
            Some(v) if matches!(v.as_str(), "off" | "0" | "false" | "no") => false,
            Some(v) => bail!("{}: expected on or off, got {v:?}", source(&BUILD_SCRIPTS)),
        };
        let mut build_scripts_skip = match env_str(&BUILD_SCRIPTS_SKIP)? {
            Some(v) => parse_key_env(&v),
            None => file.build_scripts_skip.clone().unwrap_or_default(),
        };
        build_scripts_skip.sort();
        build_scripts_skip.dedup();
        let remote = crate::remote_config::load(&file)?;
        let reapi = crate::remote_config::load_reapi(&file)?;
        let reapi_execute = crate::remote_config::load_execute(&file)?;
        if reapi_execute && reapi.is_none() {
            bail!(
                "{} needs {} (grpc://HOST:PORT of the engine)",
                REAPI_EXECUTE.name,
                REAPI_ENDPOINT.name
            );
        }
        if !local && !has_remote(&remote, &reapi) {
            bail!(
                "{}=off needs a remote backend (such as {} or {})",
                LOCAL.name,
                BUCKET.name,
                REDIS_ENDPOINT.name
            );
        }
        Ok(Config {
            dir,
            cache_size,
            idle_timeout: (idle_secs > 0).then(|| Duration::from_secs(idle_secs)),
            basedirs,
            local,
            remote,
            remote_timeout,
            compile_wait,
            path_policy,
            prefetch,
            verify_ppm,
            key_env,
            build_scripts,
            build_scripts_skip,
            reapi,
            reapi_execute,
        })
    }

    /// A short digest of the settings that shape the daemon, so that
    /// wrappers with different settings reach different daemons.
    pub fn fingerprint(&self) -> String {
        // `key_env` too: a daemon keys the variables it was started with.
        let text = format!(
            "{:?}|{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{:?}|{:?}|{}",
            self.dir,
            self.cache_size,
            self.basedirs,
            self.local,
            self.remote,
            self.remote_timeout,
            self.compile_wait,
            self.path_policy,
            self.key_env,
            self.prefetch,
            self.verify_ppm,
            self.build_scripts,
            self.build_scripts_skip,
            self.reapi,
            self.reapi_execute
        );
        cachepot_compiler::Digest::of(text.as_bytes()).to_hex()[..16].to_string()
    }
}

/// Whether any remote store is configured (an OpenDAL backend or a REAPI
/// engine).
fn has_remote(
    remote: &Option<crate::remote_config::RemoteSettings>,
    reapi: &Option<cachepot_dist::ReapiSettings>,
) -> bool {
    remote.is_some() || reapi.is_some()
}

impl Config {
    /// Whether a remote store is configured.
    pub fn has_remote(&self) -> bool {
        has_remote(&self.remote, &self.reapi)
    }
}

/// Splits `CACHEPOT_KEY_ENV` (and `CACHEPOT_BUILD_SCRIPTS_SKIP`): names
/// separated by commas or whitespace.
fn parse_key_env(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Sorts the keyed variables and rejects names no environment can hold.
fn check_key_env(mut names: Vec<String>) -> Result<Vec<String>> {
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.contains(['=', '\0']))
    {
        bail!(
            "{} (or the config key key_env): {bad:?} is not a variable name",
            KEY_ENV.name
        );
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The config file's path.
pub fn config_path() -> Option<PathBuf> {
    env(&CONF).map(PathBuf::from).or_else(|| {
        xdg("XDG_CONFIG_HOME", ".config").map(|c| c.join("cachepot").join("config.toml"))
    })
}

fn load_file() -> Result<FileConfig> {
    let Some(path) = config_path() else {
        return Ok(FileConfig::default());
    };
    read_file(&path)
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(e).with_context(|| format!("reading config file {}", path.display())),
    };
    let file: FileConfig = toml::from_str(&text).with_context(|| {
        format!(
            "config file {}: expected the keys dir, cache_size, idle_timeout, basedirs, key_env, local, remote_timeout, compile_wait, path_policy, prefetch, verify, build_scripts, build_scripts_skip and the sections [s3], [redis], [memcached], [gcs], [azure], [webdav], [reapi]",
            path.display()
        )
    })?;
    file.check_sections()
        .with_context(|| format!("config file {}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
