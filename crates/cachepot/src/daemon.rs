//! Running as the daemon: in the foreground, or detached as started by a
//! wrapper or `--start-server`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use cachepot_daemon::DaemonConfig;
use cachepot_dist::Reapi;
use cachepot_storage::layers::{ReadOnly, Tiered};
use cachepot_storage::metered::Metered;
use cachepot_storage::remote::Remote;
use cachepot_storage::{DiskCache, Storage};

use crate::config::Config;
use crate::logging;
use crate::runtime::{build_id, Paths};

fn daemon_config(
    config: &Config,
    paths: &Paths,
    log_file: bool,
    scratch: Option<std::path::PathBuf>,
) -> DaemonConfig {
    DaemonConfig {
        scratch,
        socket: paths.socket.clone(),
        lock: paths.lock.clone(),
        idle_timeout: config.idle_timeout,
        basedirs: config.basedirs.clone(),
        build_id: build_id(),
        log_file: log_file.then(|| paths.log.clone()),
        compile_wait: config.compile_wait,
        path_policy: config.path_policy,
        prefetch: config.prefetch,
        verify: f64::from(config.verify_ppm) / 1e6,
        spool: config.dir.join("spool"),
        key_env: config.key_env.clone(),
        build_scripts: cachepot_daemon::BuildScripts {
            enabled: config.build_scripts,
            skip: config.build_scripts_skip.clone(),
        },
    }
}

/// Largest scratch tier (see [`Tiers::scratch`]).
const SCRATCH_MAX: u64 = 4 << 30;

/// The storage tiers the settings describe, each counted (see `Metered`).
pub struct Tiers {
    /// The local disk cache, unless `CACHEPOT_LOCAL=off`.
    pub local: Option<Arc<dyn Storage>>,
    /// The remote backend, if one is configured (read-only when so set).
    pub remote: Option<Arc<dyn Storage>>,
}

/// With `CACHEPOT_LOCAL=off` and prefetch on, the daemon's scratch tier:
/// a directory of its own (emptied when it starts and when it stops) that
/// holds what prefetch and remote hits brought, so that a runner without
/// a local cache still finds its lookups answered without a round trip.
/// One that cannot be opened only costs prefetch: the daemon runs without.
fn open_scratch(config: &Config) -> Option<(std::path::PathBuf, Arc<dyn Storage>)> {
    if config.local || !config.has_remote() || config.prefetch == 0 {
        return None;
    }
    let dir = config.dir.join(format!("scratch-{}", config.fingerprint()));
    let _ = std::fs::remove_dir_all(&dir);
    match DiskCache::open(&dir, SCRATCH_MAX.min(config.cache_size)) {
        Ok(disk) => {
            tracing::info!(dir = %dir.display(), "scratch tier for prefetch (no local cache)");
            Some((dir, Arc::new(disk)))
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no scratch tier, so no prefetch");
            None
        }
    }
}

impl Tiers {
    /// Opens the configured tiers.
    pub fn open(config: &Config) -> Result<Tiers> {
        let remote: Option<Arc<dyn Storage>> = match (&config.remote, &config.reapi) {
            (None, None) => None,
            (None, Some(r)) => {
                let reapi = Reapi::new(r.clone(), config.remote_timeout)
                    .context("configuring the REAPI backend")?;
                tracing::info!(endpoint = %r.endpoint, instance = %r.instance, read_only = r.read_only, "remote storage: REAPI");
                let metered = Arc::new(Metered::new(reapi));
                Some(if r.read_only {
                    Arc::new(ReadOnly(metered))
                } else {
                    metered
                })
            }
            (Some(r), reapi) => {
                if reapi.is_some() && !config.reapi_execute {
                    tracing::warn!(
                        using = r.backend.kind(),
                        "a REAPI endpoint is configured too; ignored"
                    );
                }
                if !r.ignored.is_empty() {
                    tracing::warn!(using = r.backend.kind(), ignored = ?r.ignored, "several remote backends configured; using the first");
                }
                let remote = Remote::new(r.backend.clone(), config.remote_timeout)
                    .with_context(|| format!("configuring the {} backend", r.backend.kind()))?;
                tracing::info!(kind = r.backend.kind(), location = %r.backend.location(), read_only = r.read_only, "remote storage");
                let metered = Arc::new(Metered::new(remote));
                Some(if r.read_only {
                    Arc::new(ReadOnly(metered))
                } else {
                    metered
                })
            }
        };
        let local: Option<Arc<dyn Storage>> = if config.local {
            let disk = DiskCache::open(&config.dir, config.cache_size)
                .with_context(|| format!("opening the cache at {}", config.dir.display()))?;
            tracing::info!(dir = %config.dir.display(), max = config.cache_size, "local disk cache");
            Some(Arc::new(Metered::new(disk)))
        } else {
            None
        };
        Ok(Tiers { local, remote })
    }

    /// One storage: the local disk in front of the remote backend, or
    /// whichever of them there is; a scratch tier, when given, in front of
    /// a remote one that has no local tier.
    fn compose(self, scratch: Option<Arc<dyn Storage>>) -> Result<Arc<dyn Storage>> {
        match (self.local, self.remote, scratch) {
            (Some(local), Some(remote), _) => Ok(Arc::new(Tiered::new(local, remote))),
            (None, Some(remote), Some(s)) => Ok(Arc::new(Tiered::scratch(s, remote))),
            (Some(one), None, _) | (None, Some(one), None) => Ok(one),
            (None, None, _) => anyhow::bail!("no storage configured"),
        }
    }
}

fn serve(config: &Config, paths: &Paths, log_file: bool, on_ready: impl FnOnce()) -> Result<()> {
    let tiers = Tiers::open(config)?;
    let (scratch_dir, scratch) = open_scratch(config).unzip();
    let storage = tiers.compose(scratch)?;
    let executor = match (&config.reapi, config.reapi_execute) {
        (Some(r), true) => {
            let e = cachepot_dist::Executor::new(r.clone(), config.remote_timeout)
                .context("configuring remote execution")?;
            tracing::info!(endpoint = %r.endpoint, instance = %r.instance, "remote execution of misses");
            Some(Arc::new(e))
        }
        _ => None,
    };
    cachepot_daemon::run(
        daemon_config(config, paths, log_file, scratch_dir),
        storage,
        executor,
        on_ready,
    )?;
    Ok(())
}

/// `CACHEPOT_START_SERVER=1 CACHEPOT_NO_DAEMON=1 cachepot`: logs on the terminal.
pub fn run_foreground() -> i32 {
    logging::to_stderr("info");
    let result = Config::load().and_then(|config| {
        let paths = Paths::new(&config)?;
        eprintln!("cachepot daemon listening on {}", paths.socket.display());
        serve(&config, &paths, false, || {})
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cachepot: {e:#}");
            1
        }
    }
}

/// The detached daemon: logs to its file and tells the starter on stdout.
pub fn run_child() -> i32 {
    close_inherited_fds();
    let result = Config::load().and_then(|config| {
        let paths = Paths::new(&config)?;
        logging::to_file(&paths.log, "info");
        serve(&config, &paths, true, || {
            let mut out = std::io::stdout();
            let _ = out.write_all(b"ready\n").and_then(|()| out.flush());
        })
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "daemon failed");
            let mut out = std::io::stdout();
            let _ = writeln!(out, "error: {e:#}");
            1
        }
    }
}

/// Closes descriptors above stderr that the starting wrapper inherited from
/// its parent (such as cargo's jobserver pipe), so the daemon never keeps a
/// build's pipes open after the build ends.
#[allow(unsafe_code)]
fn close_inherited_fds() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: called first thing in the daemon, before this process opens
        // any descriptor of its own (the read_dir handle above is closed), so
        // no Rust object owns these descriptors.
        unsafe {
            libc::close(fd);
        }
    }
}
