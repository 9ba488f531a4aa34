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
}

/// The config file's contents.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    dir: Option<PathBuf>,
    cache_size: Option<toml::Value>,
    idle_timeout: Option<u64>,
    basedirs: Option<Vec<PathBuf>>,
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
            None => match file.dir {
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
            None => match file.cache_size {
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
            None => file.basedirs.unwrap_or_default(),
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
        Ok(Config {
            dir,
            cache_size,
            idle_timeout: (idle_secs > 0).then(|| Duration::from_secs(idle_secs)),
            basedirs,
        })
    }

    /// A short digest of the settings that shape the daemon, so that
    /// wrappers with different settings reach different daemons.
    pub fn fingerprint(&self) -> String {
        let text = format!("{:?}|{}|{:?}", self.dir, self.cache_size, self.basedirs);
        cachepot_compiler::Digest::of(text.as_bytes()).to_hex()[..16].to_string()
    }
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
    toml::from_str(&text).with_context(|| {
        format!(
            "config file {}: expected the keys dir, cache_size, idle_timeout, basedirs",
            path.display()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("20G"), Some(20 << 30));
        assert_eq!(parse_size("10GiB"), Some(10 << 30));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("123"), Some(123));
        for bad in ["", "G", "12X", "-1G", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn config_file_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "dir = \"/x\"\ncache_sise = \"1G\"\n").unwrap();
        let err = format!("{:#}", read_file(&p).unwrap_err());
        assert!(err.contains("cache_sise"), "{err}");
        std::fs::write(
            &p,
            "dir = \"/x\"\ncache_size = \"1G\"\nbasedirs = [\"/w\"]\n",
        )
        .unwrap();
        let f = read_file(&p).unwrap();
        assert_eq!(f.dir, Some(PathBuf::from("/x")));
        assert_eq!(f.basedirs, Some(vec![PathBuf::from("/w")]));
        assert!(read_file(&dir.path().join("missing.toml"))
            .unwrap()
            .dir
            .is_none());
    }

    #[test]
    fn every_variable_is_documented_in_the_readme() {
        let readme = include_str!("../../../README.md");
        for v in ALL.iter().filter(|v| v.name != INTERNAL_DAEMON.name) {
            assert!(
                readme.contains(&format!("`{}`", v.name)),
                "README lacks {}",
                v.name
            );
            if let Some(k) = v.key {
                assert!(
                    readme.contains(&format!("`{k}`")),
                    "README lacks config key {k}"
                );
            }
        }
    }
}
