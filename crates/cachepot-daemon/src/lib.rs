//! The per-user cachepot daemon.
//!
//! It listens on a Unix socket in a private directory, looks compiles up,
//! restores hits, stores misses in the background, memoises toolchain
//! identities and file digests, and keeps the statistics. Compilers never
//! run here on a miss: the wrapper runs them, so cargo's jobserver, file
//! descriptors and environment reach the compiler untouched; or, with
//! remote execution on, the engine runs them and the daemon writes their
//! outputs.

mod cache;
mod digests;
pub mod explain;
mod inflight;
pub mod memo;
mod once;
mod prefetch;
pub mod protocol;
mod server;
mod slots;
pub mod stats;
mod warnings;
mod work;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cachepot_storage::Storage;

pub use cache::ACTION_TIMEOUT;
pub use server::{run, DaemonError};

/// How the daemon is set up.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// The socket to listen on; its directory must be private (0700).
    pub socket: PathBuf,
    /// The lock file held while the daemon lives.
    pub lock: PathBuf,
    /// Exit after this long without a request; `None` never.
    pub idle_timeout: Option<Duration>,
    /// Extra base directories for path-independent keys.
    pub basedirs: Vec<PathBuf>,
    /// This build's identity; a wrapper of another build replaces the daemon.
    pub build_id: String,
    /// Where the daemon logs, shown by `--show-stats`.
    pub log_file: Option<PathBuf>,
    /// How long a compile waits for another compile of the same key (in
    /// another build) before it compiles itself.
    pub compile_wait: Duration,
    /// Where a store keeps its copies of a compile's outputs and the
    /// encoded entry until they are written (the cache directory's
    /// `spool`; private files, removed after the store).
    pub spool: PathBuf,
    /// The share of hits compiled again and compared with the entry
    /// (`CACHEPOT_VERIFY`): 0 none, 1 every one.
    pub verify: f64,
    /// How many values build-level prefetch fetches at once; 0: no prefetch.
    pub prefetch: usize,
    /// What restored outputs' embedded paths may name (keys follow it).
    pub path_policy: cachepot_compiler::PathPolicy,
    /// Variables whose values go into every Rust key (`CACHEPOT_KEY_ENV`):
    /// proc-macros read them without rustc knowing. Their values come from
    /// each compile's environment.
    pub key_env: Vec<String>,
    /// Whether build scripts run through the cache, and for which packages
    /// not (`CACHEPOT_BUILD_SCRIPTS`, `build_scripts`).
    pub build_scripts: BuildScripts,
    /// The scratch tier's directory, if there is one: removed when the
    /// daemon stops, before it releases its lock (`--stop-server` waits
    /// for the lock).
    pub scratch: Option<PathBuf>,
}

/// Build-script caching settings.
#[derive(Clone, Debug, Default)]
pub struct BuildScripts {
    /// Cache build-script runs.
    pub enabled: bool,
    /// Packages whose build scripts always run.
    pub skip: Vec<String>,
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) config: DaemonConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) stats: stats::Stats,
    pub(crate) digests: Arc<memo::DigestMemo>,
    pub(crate) toolchains: memo::ToolchainMemo,
    pub(crate) c_compilers: memo::CCompilerMemo,
    pub(crate) linkers: memo::LinkerMemo,
    pub(crate) inflight: Arc<inflight::InFlight>,
    pub(crate) explanations: explain::Explanations,
    pub(crate) warnings: warnings::Warnings,
    pub(crate) builds: prefetch::Builds,
    /// Remote execution of misses, when on.
    pub(crate) remote: Option<cache::RemoteExec>,
    /// With remote execution on: one slot per core for the compiles that
    /// run here.
    pub(crate) local_slots: Option<slots::Slots>,
}
