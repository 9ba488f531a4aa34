//! Log setup for the wrapper and the daemon (`CACHEPOT_LOG`, tracing syntax).

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

use tracing_subscriber::EnvFilter;

use crate::config;

fn filter(default: &str) -> EnvFilter {
    let spec = config::env(&config::LOG)
        .and_then(|v| v.into_string().ok())
        .unwrap_or_else(|| default.to_string());
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(default))
}

/// Logs to stderr (the foreground daemon).
pub fn to_stderr(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_writer(io::stderr)
        .try_init();
}

/// Logs to a file opened for each event, so that a wrapper that logs
/// nothing never opens it.
pub fn to_file(path: &Path, default: &str) {
    let path: PathBuf = path.to_path_buf();
    let make = move || -> Box<dyn io::Write> {
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => Box::new(f),
            Err(_) => Box::new(io::sink()),
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_ansi(false)
        .with_writer(make)
        .try_init();
}

/// Starts a fresh daemon log, keeping the previous one as `.1`.
pub fn rotate(path: &Path) {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    let _ = std::fs::rename(path, PathBuf::from(old));
}
