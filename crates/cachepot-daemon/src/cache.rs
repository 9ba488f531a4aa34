//! Looking up, restoring and storing rustc compiles.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cachepot_compiler::depinfo;
use cachepot_compiler::digest::Digest;
use cachepot_compiler::rust::{self, KeyContext, Manifest, Output, Parsed, RustCompile};
use cachepot_compiler::BaseDirs;
use cachepot_storage::{Entry, EntryFile, StorageError, StorageKey};

use crate::memo::resolve_program;
use crate::protocol::CompileRequest;
use crate::stats::Event;
use crate::Shared;

/// How many manifests one part-A key keeps (most recent first).
const MANIFESTS_KEPT: usize = 8;

/// A compile decoded from the wire.
pub struct Compile {
    recache: bool,
    compiler: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
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
    /// A hit; outputs are written. Stdout, stderr.
    Hit(Vec<u8>, Vec<u8>),
    /// A miss: what is needed to store the result.
    Miss(Box<Pending>),
}

/// A miss waiting for the compile to finish.
pub struct Pending {
    compile: RustCompile,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    bases: BaseDirs,
    key_a: Digest,
    started: SystemTime,
}

fn manifest_key(a: &Digest) -> Result<StorageKey, StorageError> {
    StorageKey::new(format!("m-{}", a.to_hex()))
}

fn entry_key(b: &Digest) -> Result<StorageKey, StorageError> {
    StorageKey::new(format!("e-{}", b.to_hex()))
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

/// Reads an entry, counting and removing corrupt ones.
fn read_entry(shared: &Shared, key: Result<StorageKey, StorageError>) -> Option<Entry> {
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "invalid storage key");
            shared.stats.count(Event::Error);
            return None;
        }
    };
    let key = &key;
    let bytes = match shared.storage.get(key) {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(key = key.as_str(), error = %e, "storage read failed");
            shared.stats.count(Event::Error);
            shared.warnings.storage_error(&e.to_string());
            return None;
        }
    };
    match Entry::decode(&bytes) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(key = key.as_str(), error = %e, "corrupt entry removed");
            shared.stats.count(Event::Corrupt);
            if let Err(e) = shared.storage.remove(key) {
                tracing::warn!(key = key.as_str(), error = %e, "removing corrupt entry failed");
            }
            None
        }
    }
}

fn read_manifests(shared: &Shared, a: &Digest) -> Vec<Manifest> {
    let Some(entry) = read_entry(shared, manifest_key(a)) else {
        return Vec::new();
    };
    let text = entry
        .meta("manifests")
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    Manifest::decode_list(&text).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "unreadable manifest list");
        Vec::new()
    })
}

/// Looks a compile up and, on a hit, writes its outputs.
pub fn lookup(shared: &Shared, c: &Compile) -> Lookup {
    if !is_rustc(&c.compiler) {
        // C and C++ compilers (the `cc` crate sends them here) come later.
        shared.stats.count(Event::Request);
        shared.stats.non_cacheable("unsupported compiler");
        tracing::debug!(compiler = %c.compiler.display(), "not cacheable: unsupported compiler");
        return Lookup::Uncacheable;
    }
    // `cargo clippy` runs `clippy-driver /path/to/rustc ARGS…`; clippy-driver
    // drops that first argument, and so does the parser.
    let args = match c.args.split_first() {
        Some((first, rest)) if is_clippy(&c.compiler) && is_rustc(Path::new(first)) => rest,
        _ => &c.args[..],
    };
    let compile = match rust::parse(args, &c.cwd) {
        Parsed::NotACompile => return Lookup::NotACompile,
        Parsed::Uncacheable(u) => {
            shared.stats.count(Event::Request);
            tracing::debug!(reason = %u.reason, detail = %u.detail, "not cacheable");
            shared.stats.non_cacheable(&u.reason);
            return Lookup::Uncacheable;
        }
        Parsed::Cacheable(rc) => *rc,
    };
    shared.stats.count(Event::Request);
    let started = SystemTime::now();
    let timer = std::time::Instant::now();
    let uncacheable = |reason: &str, detail: String| {
        tracing::debug!(reason, detail, "not cacheable");
        shared.stats.non_cacheable(reason);
        Lookup::Uncacheable
    };
    let Some(compiler) = resolve_program(&c.compiler, &c.cwd, c.env("PATH")) else {
        return uncacheable("compiler not found", c.compiler.display().to_string());
    };
    let toolchain = match shared.toolchains.probe(&compiler, &c.cwd, &c.env) {
        Ok(t) => t,
        Err(e) => return uncacheable("unknown compiler", e.to_string()),
    };
    let identity = match shared
        .toolchains
        .identity(&toolchain, compile.target.as_deref())
    {
        Ok(d) => d,
        Err(e) => return uncacheable("unknown compiler", e.to_string()),
    };
    let bases = rust::base_dirs(&compile, &c.cwd, &c.env, &shared.config.basedirs);
    let ctx = KeyContext {
        cwd: &c.cwd,
        env: &c.env,
        toolchain: &identity,
        bases: &bases,
        digester: shared.digests.as_ref(),
        clippy: is_clippy(&c.compiler),
    };
    let key_a = match rust::key_a(&compile, &ctx) {
        Ok(k) => k.digest,
        Err(u) => return uncacheable(&u.reason, u.detail),
    };
    let outputs = compile.outputs(&c.cwd);
    let keyed = timer.elapsed();
    // CACHEPOT_RECACHE: compile and overwrite, without looking up.
    let candidates = if c.recache {
        Vec::new()
    } else {
        read_manifests(shared, &key_a)
    };
    for m in candidates {
        if !m.matches(&c.cwd, &bases, &c.env, shared.digests.as_ref()) {
            continue;
        }
        let key_b = m.key_b(&key_a).digest;
        let matched = timer.elapsed();
        let Some(entry) = read_entry(shared, entry_key(&key_b)) else {
            continue;
        };
        let found = timer.elapsed();
        match restore(&entry, &outputs, &bases) {
            Ok((stdout, stderr)) => {
                shared.stats.count(Event::Hit);
                tracing::debug!(
                    crate_name = %compile.crate_name,
                    key = %key_b,
                    key_us = keyed.as_micros(),
                    match_us = matched.as_micros(),
                    lookup_us = found.as_micros(),
                    total_us = timer.elapsed().as_micros(),
                    "hit"
                );
                return Lookup::Hit(stdout, stderr);
            }
            Err(e) => {
                tracing::warn!(crate_name = %compile.crate_name, error = %e, "restore failed");
                shared.stats.count(Event::Error);
            }
        }
    }
    shared.stats.count(Event::Miss);
    tracing::debug!(crate_name = %compile.crate_name, key_a = %key_a, "miss");
    Lookup::Miss(Box::new(Pending {
        compile,
        cwd: c.cwd.clone(),
        env: c.env.clone(),
        bases,
        key_a,
        started,
    }))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Writes an entry's outputs where this compile wants them. Every output is
/// written to a temporary file first and renamed, so a reader never sees
/// half a file.
fn restore(entry: &Entry, outputs: &[Output], bases: &BaseDirs) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let text = |name: &str| -> io::Result<Vec<u8>> {
        bases
            .restore(entry.meta(name).unwrap_or_default())
            .ok_or_else(|| invalid(format!("{name} names an unknown base directory")))
    };
    let stdout = text("stdout")?;
    let stderr = text("stderr")?;
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(outputs.len());
    let result = (|| {
        for out in outputs {
            let file = entry
                .file(&out.role)
                .ok_or_else(|| invalid(format!("entry lacks {}", out.role)))?;
            let data: std::borrow::Cow<'_, [u8]> = if out.role == "dep-info" {
                bases
                    .restore(&file.data)
                    .ok_or_else(|| invalid("dep-info names an unknown base directory"))?
                    .into()
            } else {
                file.data.as_slice().into()
            };
            let tmp = temp_beside(&out.path)?;
            std::fs::write(&tmp, &data)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(file.mode & 0o7777))?;
            staged.push((tmp, out.path.clone()));
        }
        for (tmp, dest) in &staged {
            std::fs::rename(tmp, dest)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    Ok((stdout, stderr))
}

fn temp_beside(dest: &Path) -> io::Result<PathBuf> {
    let dir = dest
        .parent()
        .ok_or_else(|| invalid("output without a directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Ok(dir.join(format!(".{name}.cachepot-{}-{nanos}", std::process::id())))
}

/// After a successful compile: reads the outputs and dep-info now (before
/// the build can touch them) and returns the writes to do in the background.
/// Reads a finished compile's outputs and dep-info, and returns what to
/// write in the background, or `None` when the result must not be stored.
pub fn prepare_store(
    shared: &Arc<crate::Shared>,
    p: &Pending,
    stdout: &[u8],
    stderr: &[u8],
) -> io::Result<Option<(Digest, Manifest, Entry)>> {
    let outputs = p.compile.outputs(&p.cwd);
    let mut files = Vec::with_capacity(outputs.len());
    let mut depinfo_text = None;
    for out in &outputs {
        let data = std::fs::read(&out.path)?;
        let mode = std::fs::metadata(&out.path)?.permissions().mode();
        let data = if out.role == "dep-info" {
            depinfo_text = Some(String::from_utf8_lossy(&data).into_owned());
            p.bases.normalize(&data)
        } else {
            data
        };
        files.push(EntryFile {
            name: out.role.clone(),
            mode,
            data,
        });
    }
    let depinfo_text = depinfo_text.ok_or_else(|| invalid("no dep-info output"))?;
    let info = depinfo::parse(&depinfo_text);
    let manifest = Manifest::from_depinfo(&info, &p.cwd, &p.bases, shared.digests.as_ref())
        .map_err(|e| invalid(e.to_string()))?;
    // A source changed after the compile began: the outputs may not match
    // the digests just taken. Don't store.
    if let Some(paths) = manifest.paths(&p.cwd, &p.bases) {
        for path in paths {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified())?;
            if modified >= p.started {
                tracing::info!(file = %path.display(), "source changed during the compile; not stored");
                shared.stats.count(Event::WriteSkipped);
                return Ok(None);
            }
        }
    }
    // Check the env-deps against this compile's environment too.
    if !manifest.env_matches(&p.env, &p.bases) {
        return Ok(None);
    }
    let entry = Entry {
        files,
        meta: vec![
            ("stdout".into(), p.bases.normalize(stdout)),
            ("stderr".into(), p.bases.normalize(stderr)),
            ("crate".into(), p.compile.crate_name.clone().into_bytes()),
        ],
    };
    Ok(Some((p.key_a, manifest, entry)))
}

/// Writes an entry and adds its manifest to the part-A list.
fn put_entry(
    shared: &Shared,
    key: Result<StorageKey, StorageError>,
    entry: &Entry,
) -> Result<(), StorageError> {
    let bytes = entry
        .encode()
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    shared.storage.put(&key?, &bytes)
}

pub fn store(shared: &Shared, key_a: Digest, manifest: Manifest, entry: Entry) {
    let key_b = manifest.key_b(&key_a).digest;
    let result = put_entry(shared, entry_key(&key_b), &entry).and_then(|()| {
        let mut list = read_manifests(shared, &key_a);
        list.retain(|m| *m != manifest);
        list.insert(0, manifest);
        list.truncate(MANIFESTS_KEPT);
        let m_entry = Entry {
            files: Vec::new(),
            meta: vec![(
                "manifests".into(),
                Manifest::encode_list(&list).into_bytes(),
            )],
        };
        put_entry(shared, manifest_key(&key_a), &m_entry)
    });
    match result {
        Ok(()) => {
            shared.stats.count(Event::Write);
            tracing::debug!(key = %key_b, "stored");
        }
        // An entry over a backend's item limit (Memcached's 1 MiB) is not an
        // error storm: counted apart, no warning.
        Err(StorageError::TooLarge { size, limit }) => {
            shared.stats.count(Event::TooLarge);
            tracing::debug!(key = %key_b, size, limit, "entry too large for the remote backend");
        }
        Err(e) => {
            shared.stats.count(Event::Error);
            tracing::warn!(error = %e, "storing an entry failed");
            shared.warnings.storage_error(&e.to_string());
        }
    }
}
