//! Looking up, restoring and storing compiles: the storage side shared by
//! every compiler, with rustc's and the C compilers' lookups in their own
//! modules.

mod c;
mod outputs;
mod pipeline;
mod remote;
mod restore;
mod rust;
mod script;
mod storage;
mod verify;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cachepot_compiler::digest::Digest;
use cachepot_compiler::manifest::Manifest;
use cachepot_compiler::rust::{Output, OutputFamily, Role};
use cachepot_compiler::BaseDirs;
use cachepot_storage::Entry;

use crate::explain::UnitInputs;
use crate::inflight::Claim;
use crate::prefetch;
use crate::protocol::CompileRequest;
use crate::Shared;

use outputs::{changed_during, private_temp, read_family, read_outputs, ReadOutputs};
pub use remote::{Ran, RemoteExec, ACTION_TIMEOUT};
pub use storage::store_and_remember;
pub use verify::{verify, verify_second, Verified};

/// What a hit replays: the compiler's output and exit code (1 for a
/// compile error that was cached, 0 otherwise).
pub struct Replay {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// How many manifests one part-A key keeps (most recent first).
const MANIFESTS_KEPT: usize = 8;

/// A compile decoded from the wire.
pub struct Compile {
    recache: bool,
    compiler: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    /// The process that ran the wrapper (cargo): one build.
    ppid: u32,
}

impl Compile {
    /// Decodes a request.
    pub fn from_request(r: CompileRequest) -> Compile {
        let os = |b: Vec<u8>| OsStr::from_bytes(&b).to_os_string();
        Compile {
            recache: r.recache,
            compiler: PathBuf::from(os(r.compiler)),
            args: r.args.into_iter().map(os).collect(),
            cwd: PathBuf::from(os(r.cwd)),
            env: r.env.into_iter().map(|(k, v)| (os(k), os(v))).collect(),
            stdin: r.stdin,
            ppid: r.ppid,
        }
    }

    fn env(&self, name: &str) -> Option<&OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The result of a lookup.
pub enum Lookup {
    /// Not a compile at all (a query).
    NotACompile,
    /// A compile that is not cached; the reason was counted.
    Uncacheable,
    /// A hit; outputs are written.
    Hit(Replay),
    /// A miss: what is needed to store the result.
    Miss(Box<Pending>),
}

/// What explaining a miss needs: the unit's inputs, the working directory,
/// the base directories and the environment.
pub type ExplainParts = (UnitInputs, PathBuf, BaseDirs, Vec<(OsString, OsString)>);

/// A miss waiting for the compile to finish.
pub struct Pending {
    kind: PendingKind,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    bases: BaseDirs,
    started: SystemTime,
    /// Arguments the wrapper adds to the compile (a dependency file the
    /// cache needs and the user did not ask for).
    pub extra_args: Vec<OsString>,
    /// This compile's turn on its key: other builds that miss the same key
    /// wait until it is dropped (after the store).
    pub claim: Option<Claim>,
    /// What explains the miss, and what the store remembers.
    pub unit: UnitInputs,
    /// A hit compiled again under `CACHEPOT_VERIFY`: compared, not stored.
    pub verify: Option<Verify>,
}

/// A hit whose fresh compile (or run) is compared with its entry.
pub struct Verify {
    /// The entry's key.
    key: Digest,
    /// Where this compile writes each output.
    dest: Dest,
}

/// Where the files of an entry go, by role: a compile's outputs, the
/// files of its output families, and a build script's `OUT_DIR`.
#[derive(Clone, Default)]
pub struct Dest {
    outputs: Vec<Output>,
    families: Vec<OutputFamily>,
    out_dir: Option<PathBuf>,
}

impl Dest {
    /// Where a file of `role` goes, or `None` when this work writes none.
    fn path_of(&self, role: &Role) -> Option<PathBuf> {
        if let Some(o) = self.outputs.iter().find(|o| o.role == *role) {
            return Some(o.path.clone());
        }
        if let Some(p) = self.families.iter().find_map(|f| f.path_of(role)) {
            return Some(p);
        }
        Some(self.out_dir.as_ref()?.join(role.out_dir_path()?))
    }
}

enum PendingKind {
    Rust(Box<rust::RustPending>),
    C(Box<c::CPending>),
    Script(Box<script::ScriptPending>),
}

impl Pending {
    /// What explaining this miss needs, for a background job (it reads
    /// storage).
    pub fn explain_parts(&self) -> ExplainParts {
        (
            self.unit.clone(),
            self.cwd.clone(),
            self.bases.clone(),
            self.env.clone(),
        )
    }

    /// The workspace whose build record the store goes into.
    pub fn workspace(&self) -> Option<String> {
        prefetch::workspace(&self.bases)
    }

    /// Removes files the compile wrote for the cache only.
    pub fn cleanup(&self) {
        match &self.kind {
            PendingKind::C(p) => p.cleanup(),
            PendingKind::Rust(r) => r.cleanup(),
            PendingKind::Script(_) => {}
        }
    }

    /// Counts a failed compile, or a failed build-script run apart.
    pub fn count_failure(&self, shared: &Shared) {
        match &self.kind {
            PendingKind::Script(_) => shared.stats.count_work(
                crate::stats::Work::BuildScript,
                crate::stats::Event::CompileFailure,
            ),
            _ => shared.stats.count(crate::stats::Event::CompileFailure),
        }
    }

    /// After the work succeeded: a build script's compile gets its
    /// launcher (see `script::launcher`).
    pub fn after_success(&self, shared: &Shared) {
        if let PendingKind::Rust(r) = &self.kind {
            rust::install_launcher(shared, r, &self.cwd, &self.env);
        }
    }
}

/// With remote execution on: runs a miss on the engine and writes its
/// outputs (while `alive`: the wrapper waits), or answers `None` when it
/// runs here (a verified hit, a kind kept local, any failure: the reason
/// is counted).
pub fn run_remote(shared: &Shared, p: &Pending, alive: &dyn Fn() -> bool) -> Option<Ran> {
    shared.remote.as_ref()?;
    let may = match &p.kind {
        PendingKind::Rust(r) => r.remote.as_ref().map(|k| k.as_ref().map(|_| ())),
        PendingKind::C(cp) => cp.remote.as_ref().map(|k| k.as_ref().map(|_| ())),
        PendingKind::Script(_) => return None,
    };
    match (may, &p.verify) {
        (Some(Ok(())), None) => {}
        (Some(Ok(())), Some(_)) => {
            shared.stats.kept_local(remote::KeptLocal::Verify.as_str());
            return None;
        }
        (Some(Err(why)), _) => {
            shared.stats.kept_local(why.as_str());
            return None;
        }
        (None, _) => return None,
    }
    match &p.kind {
        PendingKind::Rust(r) => {
            let target = r.remote.as_ref()?.as_ref().ok()?;
            remote::run_rust(shared, p, r, target, alive)
        }
        PendingKind::C(cp) => remote::run_c(shared, p, cp, alive),
        PendingKind::Script(_) => None,
    }
}

/// What to write once a compile succeeded.
pub enum StoreJob {
    /// An entry named by a manifest, added to part A's manifest list.
    Manifest {
        key_a: Digest,
        manifest: Manifest,
        entry: Entry,
    },
    /// An entry under a key of its own (C preprocessor mode).
    Plain { key: Digest, entry: Entry },
    /// A marker under part A for C compiles: `off` (a file uses time
    /// macros: later lookups go through the preprocessor) or `never` (the
    /// assembler reads files no one names: not cached).
    Marker { key_a: Digest, marker: &'static str },
}

/// rustc and clippy-driver (which takes rustc's arguments), by file name.
fn is_rustc(compiler: &Path) -> bool {
    compiler
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("rustc"))
        || is_clippy(compiler)
}

fn is_clippy(compiler: &Path) -> bool {
    compiler
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("clippy-driver"))
}

/// Looks a compile up and, on a hit, writes its outputs.
pub fn lookup(shared: &Arc<Shared>, c: &Compile) -> Lookup {
    if is_rustc(&c.compiler) {
        rust::lookup(shared, c)
    } else {
        c::lookup(shared, c)
    }
}

/// Looks a build script's run up and, on a hit, restores its `OUT_DIR`.
pub fn lookup_script(shared: &Arc<Shared>, c: &Compile) -> Lookup {
    script::lookup(shared, c)
}

/// Reads a finished compile's outputs and dependency file now (before the
/// build can touch them), and returns what to write in the background, or
/// `None` when the result must not be stored.
pub fn prepare_store(
    shared: &Arc<Shared>,
    p: &Pending,
    stdout: &[u8],
    stderr: &[u8],
) -> io::Result<Option<StoreJob>> {
    match &p.kind {
        PendingKind::Rust(r) => rust::prepare_store(shared, p, r, stdout, stderr),
        PendingKind::C(cp) => c::prepare_store(shared, p, cp, stdout, stderr),
        PendingKind::Script(sp) => script::prepare_store(shared, p, sp, stdout, stderr),
    }
}

/// After a compile error: what to store so that the same error is replayed
/// (rustc compiles only; see `rust::prepare_failure`), or `None`.
pub fn prepare_failure(
    shared: &Arc<Shared>,
    p: &Pending,
    stdout: &[u8],
    stderr: &[u8],
) -> io::Result<Option<StoreJob>> {
    match &p.kind {
        PendingKind::Rust(r) => rust::prepare_failure(shared, p, r, stdout, stderr),
        PendingKind::C(_) | PendingKind::Script(_) => Ok(None),
    }
}

/// The metadata every entry starts with: the replayed stdout and stderr,
/// base directories as tokens.
fn output_meta(bases: &BaseDirs, stdout: &[u8], stderr: &[u8]) -> Vec<(String, Vec<u8>)> {
    vec![
        ("stdout".into(), bases.normalize(stdout)),
        ("stderr".into(), bases.normalize(stderr)),
    ]
}

/// The entry metadata that records the base directories of the compile
/// that stored it (`name=path` lines): verify mode compares outputs up
/// to those paths, which the path policy lets differ.
fn bases_meta(bases: &BaseDirs) -> (String, Vec<u8>) {
    let text: String = bases
        .iter()
        .map(|(name, path)| format!("{name}={path}\n"))
        .collect();
    (BASES_META.into(), text.into_bytes())
}

/// The name of [`bases_meta`]'s entry metadata.
const BASES_META: &str = "bases";

/// The base directories an entry's [`bases_meta`] records.
fn stored_bases(entry: &Entry) -> Option<BaseDirs> {
    let text = std::str::from_utf8(entry.meta(BASES_META)?).ok()?;
    let pairs: Vec<(&str, &Path)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, p)| (n, Path::new(p)))
        .collect();
    Some(BaseDirs::new(pairs))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}
