//! The daemon's private runtime directory and the files in it.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::config::{self, Config};

/// Where one daemon's files live.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The socket.
    pub socket: PathBuf,
    /// Held by the running daemon.
    pub lock: PathBuf,
    /// Held by a wrapper while it starts a daemon.
    pub start_lock: PathBuf,
    /// The daemon's log.
    pub log: PathBuf,
}

/// The current user's id, read from the owner of `/proc/self`.
fn uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The runtime directory, created private if missing and checked if present.
pub fn dir() -> Result<PathBuf> {
    let dir = match config::env(&config::RUNTIME_DIR) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            Some(r) => PathBuf::from(r).join("cachepot"),
            None => std::env::temp_dir().join(format!("cachepot-{}", uid().unwrap_or(0))),
        },
    };
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir)
    {
        Ok(()) => {}
        Err(e) => {
            return Err(e).with_context(|| format!("creating runtime directory {}", dir.display()))
        }
    }
    let meta =
        std::fs::symlink_metadata(&dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (set {})",
            dir.display(),
            config::RUNTIME_DIR.name
        );
    }
    if let Some(me) = uid() {
        if meta.uid() != me {
            bail!(
                "runtime directory {} belongs to another user; set {} to a private directory",
                dir.display(),
                config::RUNTIME_DIR.name
            );
        }
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (mode 0700)", dir.display()))?;
    }
    Ok(dir)
}

impl Paths {
    /// The files of the daemon for these settings.
    pub fn new(config: &Config) -> Result<Paths> {
        let dir = dir()?;
        let id = config.fingerprint();
        Ok(Paths {
            socket: dir.join(format!("daemon-{id}.sock")),
            lock: dir.join(format!("daemon-{id}.lock")),
            start_lock: dir.join(format!("start-{id}.lock")),
            log: dir.join(format!("daemon-{id}.log")),
        })
    }
}

/// This build's identity: version plus the executable's size and mtime, so
/// that a rebuilt cachepot replaces a daemon started from the old binary.
pub fn build_id() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::metadata(p).ok());
    match exe {
        Some(m) => format!(
            "{}-{}-{}.{}",
            env!("CARGO_PKG_VERSION"),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        ),
        None => env!("CARGO_PKG_VERSION").to_string(),
    }
}
