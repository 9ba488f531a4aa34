//! Looking up, restoring and storing compiles: the storage side shared by
//! every compiler, with rustc's and the C compilers' lookups in their own
//! modules.

mod c;
mod restore;
mod rust;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cachepot_compiler::digest::Digest;
use cachepot_compiler::manifest::{self, Manifest, Stored};
use cachepot_compiler::rust::{Output, OutputFamily, Role};
use cachepot_compiler::BaseDirs;
use cachepot_storage::{
    Entry, EntryError, FileData, StorageError, StorageKey, StreamError, Verdict,
};

use crate::explain::UnitInputs;
use crate::inflight::{Claim, Turn};
use crate::prefetch;
use crate::protocol::CompileRequest;
use crate::stats::Event;
use crate::Shared;

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
}

enum PendingKind {
    Rust(Box<rust::RustPending>),
    C(Box<c::CPending>),
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
        }
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

fn manifest_key(a: &Digest) -> Result<StorageKey, StorageError> {
    StorageKey::for_entry("m", &a.to_hex())
}

fn entry_key(b: &Digest) -> Result<StorageKey, StorageError> {
    StorageKey::for_entry("e", &b.to_hex())
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

/// A storage key, or `None` counted as an error.
fn valid_key(shared: &Shared, key: Result<StorageKey, StorageError>) -> Option<StorageKey> {
    key.map_err(|e| {
        tracing::warn!(error = %e, "invalid storage key");
        shared.stats.count(Event::Error);
    })
    .ok()
}

/// Counts a failed storage read and tells the build once.
fn read_failed(shared: &Shared, key: &StorageKey, e: &StorageError) {
    tracing::warn!(key = key.as_str(), error = %e, "storage read failed");
    shared.stats.count(Event::Error);
    shared.warnings.storage_error(&e.to_string());
}

/// What a reader says of an entry that does not decode: another format
/// version is passed over (a miss; it stays where it is, for the clients
/// that wrote it), anything else is corrupt (counted, and removed from the
/// tier it was read from by [`cachepot_storage::Storage::get_each`]).
fn undecodable(shared: &Shared, key: &StorageKey, error: &EntryError) -> Verdict {
    if let EntryError::Version { found, .. } = error {
        tracing::debug!(
            key = key.as_str(),
            found,
            "entry of another format version passed over"
        );
        shared.stats.count(Event::OtherVersion);
        return Verdict::Pass;
    }
    tracing::warn!(key = key.as_str(), error = %error, "corrupt entry removed");
    shared.stats.count(Event::Corrupt);
    Verdict::Corrupt
}

/// A part-A value: a manifest list, or a marker (see [`StoreJob::Marker`]).
enum PartA {
    List(Vec<Stored>),
    Marker(String),
}

/// Decodes a part-A value, or says why it is unusable.
fn decode_part_a(shared: &Shared, key: &StorageKey, bytes: &[u8]) -> Result<PartA, Verdict> {
    let entry = Entry::decode(bytes).map_err(|e| undecodable(shared, key, &e))?;
    if let Some(m) = entry.meta("direct") {
        return Ok(PartA::Marker(String::from_utf8_lossy(m).into_owned()));
    }
    let text = entry
        .meta("manifests")
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    manifest::decode_list(&text).map(PartA::List).map_err(|e| {
        tracing::warn!(key = key.as_str(), error = %e, "unreadable manifest list removed");
        shared.stats.count(Event::Corrupt);
        Verdict::Corrupt
    })
}

/// What the manifest lists of a part A gave a lookup.
#[derive(Default)]
struct ManifestLookup {
    /// The restored hit and its entry's key.
    hit: Option<(Replay, Digest)>,
    /// The marker of a C part A that direct mode must not serve.
    marker: Option<String>,
}

/// Looks up part A's manifest lists, nearest tier first: the first
/// manifest whose files and `env-dep` values match this compile names the
/// entry, which is restored. A local list that has no match is followed by
/// the remote one (another machine may have stored this very compile); a
/// hit found there leaves the merged list in the local tier, so the next
/// lookup is local.
fn lookup_manifests(
    shared: &Arc<Shared>,
    c: &Compile,
    key_a: &Digest,
    outputs: &[Output],
    families: &[OutputFamily],
    bases: &BaseDirs,
) -> ManifestLookup {
    let mut found = ManifestLookup::default();
    let Some(key) = valid_key(shared, manifest_key(key_a)) else {
        return found;
    };
    // Build records and prefetch need a local tier in front of a remote.
    let ws = prefetch::workspace(bases).filter(|_| shared.storage.can_prefetch());
    if let Some(ws) = &ws {
        prefetch::on_compile(shared, ws, c.ppid);
    }
    let mut passed: Vec<Vec<Stored>> = Vec::new();
    let result = shared.storage.get_each(&key, &mut |bytes| {
        let list = match decode_part_a(shared, &key, bytes) {
            Ok(PartA::List(list)) => list,
            Ok(PartA::Marker(m)) => {
                found.marker = Some(m);
                return Verdict::Take;
            }
            Err(verdict) => return verdict,
        };
        for s in &list {
            let m = &s.manifest;
            let seen = passed.iter().flatten().any(|p| p.manifest == *m);
            if seen || !m.matches(&c.cwd, bases, &c.env, shared.digests.as_ref()) {
                continue;
            }
            let key_b = m.key_b(key_a).digest;
            if let Some(replay) = hit_by_key(shared, &key_b, outputs, families, bases) {
                found.hit = Some((replay, key_b));
                if passed.is_empty() {
                    return Verdict::Take;
                }
                let lists = passed.drain(..).chain([list]);
                put_list(
                    shared,
                    &key,
                    manifest::merge_lists(lists, MANIFESTS_KEPT),
                    true,
                );
                return Verdict::Stop;
            }
        }
        passed.push(list);
        Verdict::Pass
    });
    if let Err(e) = result {
        read_failed(shared, &key, &e);
    }
    if let Some(ws) = ws {
        let entry = found.hit.as_ref().and_then(|(_, b)| entry_key(b).ok());
        shared.builds.record(&ws, std::iter::once(key).chain(entry));
    }
    found
}

/// Every manifest stored for part A in any tier (a marker counts as none).
fn all_manifests(shared: &Shared, key: &StorageKey) -> Vec<Vec<Stored>> {
    let mut lists = Vec::new();
    let result = shared.storage.get_each(key, &mut |bytes| {
        match decode_part_a(shared, key, bytes) {
            Ok(PartA::List(list)) => lists.push(list),
            Ok(PartA::Marker(_)) => {}
            Err(verdict) => return verdict,
        }
        Verdict::Pass
    });
    if let Err(e) = result {
        read_failed(shared, key, &e);
    }
    lists
}

/// Writes a manifest list to every tier, or to the nearest only.
fn put_list(shared: &Shared, key: &StorageKey, list: Vec<Stored>, nearest: bool) {
    let entry = Entry {
        files: Vec::new(),
        meta: vec![(
            "manifests".into(),
            manifest::encode_list(&list).into_bytes(),
        )],
    };
    let result = entry
        .encode()
        .map_err(|e| StorageError::Encode(e.to_string()))
        .and_then(|bytes| {
            if nearest {
                shared.storage.put_nearest(key, &bytes)
            } else {
                shared.storage.put(key, &bytes)
            }
        });
    if let Err(e) = result {
        tracing::warn!(key = key.as_str(), error = %e, "writing a manifest list failed");
        shared.stats.count(Event::Error);
    }
}

/// Looks a compile up and, on a hit, writes its outputs.
pub fn lookup(shared: &Arc<Shared>, c: &Compile) -> Lookup {
    if is_rustc(&c.compiler) {
        rust::lookup(shared, c)
    } else {
        c::lookup(shared, c)
    }
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
    }
}

/// At a miss: the turn to compile `key`, after waiting for another build's
/// compile of it if there is one. `again` looks the key up once more after
/// such a wait; its hit is returned instead of a turn.
fn take_turn<T>(
    shared: &Shared,
    key: &Digest,
    again: impl FnOnce() -> Option<T>,
) -> Result<Option<Claim>, T> {
    match shared
        .inflight
        .claim_or_wait(*key, shared.config.compile_wait)
    {
        Turn::Mine(c) => Ok(Some(c)),
        Turn::TimedOut => {
            tracing::info!(key = %key, "another compile of this key is still running; compiling too");
            Ok(None)
        }
        Turn::Waited => match again() {
            Some(hit) => Err(hit),
            None => match shared.inflight.claim_or_wait(*key, Duration::ZERO) {
                Turn::Mine(c) => Ok(Some(c)),
                _ => Ok(None),
            },
        },
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
        PendingKind::C(_) => Ok(None),
    }
}

/// Reads the entry under `key` (nearest tier first) and restores it.
fn hit_by_key(
    shared: &Shared,
    key: &Digest,
    outputs: &[Output],
    families: &[OutputFamily],
    bases: &BaseDirs,
) -> Option<Replay> {
    let skey = valid_key(shared, entry_key(key))?;
    let mut replay = None;
    let result = shared
        .storage
        .get_each(
            &skey,
            &mut |bytes| match restore::restore(bytes, outputs, families, bases) {
                Ok((out, written)) => {
                    for w in written {
                        shared.digests.remember(&w.path, &w.meta, w.digest);
                    }
                    replay = Some(out);
                    Verdict::Take
                }
                Err(StreamError::Entry(e)) => undecodable(shared, &skey, &e),
                Err(StreamError::Sink(e)) => {
                    tracing::warn!(key = %key, error = %e, "restore failed");
                    shared.stats.count(Event::Error);
                    Verdict::Stop
                }
            },
        );
    if let Err(e) = result {
        read_failed(shared, &skey, &e);
    }
    replay
}

/// Whether a file the compile read changed after it began: the outputs may
/// not match the digests just taken, so the result is not stored.
fn changed_during(shared: &Shared, paths: &[PathBuf], started: SystemTime) -> io::Result<bool> {
    for path in paths {
        let modified = std::fs::metadata(path).and_then(|m| m.modified())?;
        if modified >= started {
            tracing::info!(file = %path.display(), "source changed during the compile; not stored");
            shared.stats.count(Event::WriteSkipped);
            return Ok(true);
        }
    }
    Ok(false)
}

/// A finished compile's outputs as entry files, and the metadata that
/// records their content digests (see `restore`).
pub(super) struct ReadOutputs {
    pub files: Vec<cachepot_storage::EntryFile>,
    pub digests: Vec<(String, Vec<u8>)>,
}

/// Reads the outputs of a finished compile into entry files; dependency
/// files are stored with base directories replaced by tokens. Each other
/// output's digest goes into the digest memo (when the file did not change
/// while it was read): the crates that depend on it, and the links that
/// read it, then do not hash it again.
fn read_outputs(
    shared: &Shared,
    outputs: &[Output],
    bases: &BaseDirs,
    started: SystemTime,
) -> io::Result<ReadOutputs> {
    let mut read = ReadOutputs {
        files: Vec::with_capacity(outputs.len()),
        digests: Vec::new(),
    };
    for out in outputs {
        // An optional output counts only when this compile wrote it.
        if out.optional {
            match std::fs::metadata(&out.path).and_then(|m| m.modified()) {
                Ok(t) if t >= started => {}
                _ => continue,
            }
        }
        let mut file = std::fs::File::open(&out.path)?;
        let before = file.metadata()?;
        let data = if out.role.rewrites_paths() {
            let mut data = Vec::with_capacity(usize::try_from(before.len()).unwrap_or(0));
            io::Read::read_to_end(&mut file, &mut data)?;
            FileData::Bytes(bases.normalize(&data))
        } else {
            let (data, digest) = spool_copy(shared, &mut file)?;
            shared
                .digests
                .remember_read(&out.path, &before, &file.metadata()?, digest);
            read.digests
                .push((restore::digest_meta(&out.role), digest.0.to_vec()));
            data
        };
        read.files.push(cachepot_storage::EntryFile {
            name: out.role.name().into_owned(),
            mode: before.permissions().mode(),
            data,
        });
    }
    Ok(read)
}

/// Copies an output into the spool (a private file, removed when the
/// store is done or dropped) and takes its digest on the way: the store
/// never holds an output in memory, whatever its size.
fn spool_copy(shared: &Shared, file: &mut std::fs::File) -> io::Result<(FileData, Digest)> {
    let spool = &shared.config.spool;
    let mut tmp = match tempfile::Builder::new()
        .prefix("tmp-out-")
        .tempfile_in(spool)
    {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(spool)?;
            tempfile::Builder::new()
                .prefix("tmp-out-")
                .tempfile_in(spool)?
        }
        Err(e) => return Err(e),
    };
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; SPOOL_BUFFER];
    let mut len = 0u64;
    loop {
        let n = match io::Read::read(file, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        io::Write::write_all(tmp.as_file_mut(), &buf[..n])?;
        len += n as u64;
    }
    let data = FileData::Spooled {
        path: Arc::new(tmp.into_temp_path()),
        len,
    };
    Ok((data, Digest(*hasher.finalize().as_bytes())))
}

/// The buffer an output is copied into the spool through.
const SPOOL_BUFFER: usize = 256 * 1024;

/// Reads the files of `family` that a finished compile wrote (named by
/// the compiler, so found by listing their directory), in name order.
fn read_family(
    shared: &Shared,
    family: &OutputFamily,
    started: SystemTime,
) -> io::Result<Vec<cachepot_storage::EntryFile>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(&family.dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str().filter(|n| family.accepts(n)) else {
            continue;
        };
        let meta = e.metadata()?;
        // An older file of the family is not this compile's.
        if meta.is_file() && meta.modified()? >= started {
            found.push((name.to_string(), meta.permissions().mode()));
        }
    }
    found.sort();
    found
        .into_iter()
        .map(|(name, mode)| {
            let mut file = std::fs::File::open(family.dir.join(&name))?;
            Ok(cachepot_storage::EntryFile {
                data: spool_copy(shared, &mut file)?.0,
                name: Role::Dwo(name).name().into_owned(),
                mode,
            })
        })
        .collect()
}

/// A fresh path in the daemon's private directory, for a file the
/// compiler writes for the cache only (never beside the outputs).
fn private_temp(shared: &Shared, ext: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = shared
        .config
        .socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("tmp-{}-{n}.{ext}", std::process::id()))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Encodes and writes an entry.
fn put_entry(
    shared: &Shared,
    key: Result<StorageKey, StorageError>,
    entry: &Entry,
) -> Result<(), StorageError> {
    let key = key?;
    let spooled = entry
        .files
        .iter()
        .any(|f| matches!(f.data, FileData::Spooled { .. }));
    if !spooled {
        let bytes = entry
            .encode()
            .map_err(|e| StorageError::Encode(e.to_string()))?;
        return shared.storage.put(&key, &bytes);
    }
    // Outputs stream from their spooled copies through the compressor
    // into one more spooled file, which the tiers copy or upload in parts.
    let encoded = entry
        .encode_to_file(&shared.config.spool)
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    shared.storage.put_file(&key, encoded.path())
}

/// Writes what a finished compile left to store, and remembers its inputs
/// for explanations and its keys for the workspace's next build.
pub fn store_and_remember(
    shared: &Shared,
    job: StoreJob,
    unit: &UnitInputs,
    workspace: Option<&str>,
) {
    if let Some(ws) = workspace.filter(|_| shared.storage.can_prefetch()) {
        let keys = match &job {
            StoreJob::Manifest {
                key_a, manifest, ..
            } => vec![
                manifest_key(key_a),
                entry_key(&manifest.key_b(key_a).digest),
            ],
            StoreJob::Plain { key, .. } => vec![entry_key(key)],
            StoreJob::Marker { key_a, .. } => vec![manifest_key(key_a)],
        };
        shared.builds.record(ws, keys.into_iter().flatten());
    }
    match &job {
        StoreJob::Manifest { manifest, .. } => {
            crate::explain::remember(shared, unit, Some(manifest));
        }
        StoreJob::Plain { .. } => crate::explain::remember(shared, unit, None),
        StoreJob::Marker { .. } => {}
    }
    store(shared, job);
}

/// Writes what a finished compile left to store.
fn store(shared: &Shared, job: StoreJob) {
    let (key, result) = match job {
        StoreJob::Manifest {
            key_a,
            manifest,
            entry,
        } => {
            let key_b = manifest.key_b(&key_a).digest;
            let result = put_entry(shared, entry_key(&key_b), &entry).and_then(|()| {
                // Merged with what every tier holds, never overwritten:
                // another machine's manifests for this part A stay.
                let key = manifest_key(&key_a)?;
                let new = Stored {
                    manifest,
                    at: unix_now(),
                };
                let lists = all_manifests(shared, &key);
                let merged =
                    manifest::merge_lists([vec![new]].into_iter().chain(lists), MANIFESTS_KEPT);
                put_list(shared, &key, merged, false);
                Ok(())
            });
            (key_b, result)
        }
        StoreJob::Plain { key, entry } => (key, put_entry(shared, entry_key(&key), &entry)),
        StoreJob::Marker { key_a, marker } => {
            let m_entry = Entry {
                files: Vec::new(),
                meta: vec![("direct".into(), marker.as_bytes().to_vec())],
            };
            (key_a, put_entry(shared, manifest_key(&key_a), &m_entry))
        }
    };
    match result {
        Ok(()) => {
            shared.stats.count(Event::Write);
            tracing::debug!(key = %key, "stored");
        }
        // An entry over a backend's item limit (Memcached's `-I`) is not an
        // error storm: counted apart, no warning.
        Err(StorageError::TooLarge { size, limit }) => {
            shared.stats.count(Event::TooLarge);
            tracing::debug!(key = %key, size, limit, "entry too large for the remote backend");
        }
        Err(e) => {
            shared.stats.count(Event::Error);
            tracing::warn!(error = %e, "storing an entry failed");
            shared.warnings.storage_error(&e.to_string());
        }
    }
}
