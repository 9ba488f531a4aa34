//! Memo caches: file digests by (path, size, mtime, inode), and toolchain
//! identities by the compiler binary and rustup's toolchain choice.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use cachepot_compiler::c::{CToolchain, ContentFlags};
use cachepot_compiler::digest::{digest_file, Digest, FileDigester};
use cachepot_compiler::key::env_value;
use cachepot_compiler::rust::linker::linker_identity;
pub use cachepot_compiler::toolchain::find_program as resolve_program;
use cachepot_compiler::toolchain::{RustToolchain, ToolchainError};

use crate::once::OnceMemo;

/// A file is not memoised while its mtime is this recent: a write within the
/// filesystem's timestamp granularity could otherwise go unseen.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What identifies a file's version without reading it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ino: u64,
    dev: u64,
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    Stamp {
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ino: meta.ino(),
        dev: meta.dev(),
    }
}

fn is_recent(meta: &std::fs::Metadata) -> bool {
    match meta.modified() {
        Ok(m) => SystemTime::now()
            .duration_since(m)
            .map(|age| age < RACY_WINDOW)
            .unwrap_or(true),
        Err(_) => true,
    }
}

/// File digests memoised by path and stamp.
#[derive(Default)]
pub struct DigestMemo {
    map: RwLock<HashMap<PathBuf, (Stamp, Digest)>>,
}

impl FileDigester for DigestMemo {
    fn digest(&self, path: &Path) -> io::Result<Digest> {
        let meta = std::fs::metadata(path)?;
        let st = stamp(&meta);
        if let Ok(map) = self.map.read() {
            if let Some((s, d)) = map.get(path) {
                if *s == st {
                    return Ok(*d);
                }
            }
        }
        let d = digest_file(path)?;
        // Re-check: a file changed while it was read must not be memoised.
        let after = std::fs::metadata(path)?;
        if stamp(&after) == st && !is_recent(&after) {
            if let Ok(mut map) = self.map.write() {
                map.insert(path.to_path_buf(), (st, d));
            }
        }
        Ok(d)
    }
}

impl DigestMemo {
    /// Remembers the digest of a file the daemon has just written, from
    /// the metadata of its own handle after the last write (so the stamp
    /// describes exactly those bytes), even though its mtime is recent:
    /// the racy window guards a file read while someone may still write it
    /// within one timestamp tick, and nobody writes these in place (rustc
    /// and the linker write new files and rename them; a new inode is a
    /// new stamp). A warm build otherwise hashes each restored rlib once
    /// for every crate that depends on it.
    pub fn remember(&self, path: &Path, written: &std::fs::Metadata, digest: Digest) {
        if let Ok(mut map) = self.map.write() {
            map.insert(path.to_path_buf(), (stamp(written), digest));
        }
    }
}

/// Toolchains memoised by what selects them.
#[derive(Default)]
pub struct ToolchainMemo {
    probes: OnceMemo<Vec<u8>, Arc<RustToolchain>>,
    identities: OnceMemo<(PathBuf, Option<String>), Digest>,
}

/// The rust-toolchain file rustup would read for a compile in `cwd`.
fn toolchain_file(cwd: &Path) -> Option<(PathBuf, i64)> {
    cwd.ancestors().find_map(|d| {
        ["rust-toolchain.toml", "rust-toolchain"]
            .iter()
            .find_map(|n| {
                let p = d.join(n);
                std::fs::metadata(&p).ok().map(|m| (p, m.mtime()))
            })
    })
}

impl ToolchainMemo {
    /// Probes (once) the toolchain that `compiler` runs for this compile.
    pub fn probe(
        &self,
        compiler: &Path,
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> Result<Arc<RustToolchain>, ToolchainError> {
        let meta = std::fs::metadata(compiler).map_err(|source| ToolchainError::Spawn {
            program: compiler.to_path_buf(),
            args: String::new(),
            source,
        })?;
        let canonical = std::fs::canonicalize(compiler).unwrap_or_else(|_| compiler.to_path_buf());
        let is_proxy = canonical.file_name().is_some_and(|n| n == "rustup");
        let mut memo_key = format!("{}\0{:?}\0", compiler.display(), stamp(&meta)).into_bytes();
        if is_proxy {
            let selected =
                env_value(env, "RUSTUP_TOOLCHAIN").map(|v| v.to_string_lossy().into_owned());
            match selected {
                Some(t) => memo_key.extend_from_slice(t.as_bytes()),
                None => memo_key.extend_from_slice(format!("{:?}", toolchain_file(cwd)).as_bytes()),
            }
        }
        self.probes.get_or_try(memo_key, || {
            let t = Arc::new(RustToolchain::probe(compiler, cwd, env)?);
            tracing::info!(compiler = %compiler.display(), rustc = %t.rustc.display(), "identified toolchain");
            Ok(t)
        })
    }

    /// The identity digest of `toolchain` for `target`, computed once.
    pub fn identity(
        &self,
        toolchain: &RustToolchain,
        target: Option<&str>,
    ) -> Result<Digest, ToolchainError> {
        let key = (toolchain.rustc.clone(), target.map(str::to_string));
        self.identities
            .get_or_try(key, || toolchain.identity(target))
    }
}

/// C compilers identified by path and binary stamp, and the files known to
/// use time macros, by content digest.
#[derive(Default)]
pub struct CCompilerMemo {
    probes: OnceMemo<(PathBuf, Stamp), Arc<CToolchain>>,
    content: Mutex<HashMap<Digest, ContentFlags>>,
    pch_dirs: Mutex<HashMap<(PathBuf, i128), bool>>,
}

impl CCompilerMemo {
    /// Probes (once) what the C compiler at `compiler` is.
    pub fn probe(
        &self,
        compiler: &Path,
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> Result<Arc<CToolchain>, ToolchainError> {
        let meta = std::fs::metadata(compiler).map_err(|source| ToolchainError::Spawn {
            program: compiler.to_path_buf(),
            args: String::new(),
            source,
        })?;
        let key = (compiler.to_path_buf(), stamp(&meta));
        self.probes.get_or_try(key, || {
            let t = Arc::new(CToolchain::probe(compiler, cwd, env)?);
            tracing::info!(compiler = %compiler.display(), family = ?t.family, "identified C compiler");
            Ok(t)
        })
    }

    /// Whether a directory holds a precompiled header (`*.gch`, `*.pch`),
    /// memoised by the directory's mtime (which changes when an entry is
    /// added or removed). A directory that cannot be read holds none.
    pub fn has_precompiled_header(&self, dir: &Path) -> bool {
        let Ok(meta) = std::fs::metadata(dir) else {
            return false;
        };
        let s = stamp(&meta);
        let key = (dir.to_path_buf(), s.mtime_ns);
        let recent = is_recent(&meta);
        if !recent {
            if let Some(v) = self.pch_dirs.lock().ok().and_then(|m| m.get(&key).copied()) {
                return v;
            }
        }
        let found = std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".gch") || name.ends_with(".pch")
            })
        });
        if !recent {
            if let Ok(mut m) = self.pch_dirs.lock() {
                m.insert(key, found);
            }
        }
        found
    }

    /// What a source or header with this digest holds that direct mode
    /// must know of; read once per content.
    pub fn content_flags(&self, path: &Path, digest: &Digest) -> io::Result<ContentFlags> {
        if let Some(v) = self
            .content
            .lock()
            .ok()
            .and_then(|m| m.get(digest).copied())
        {
            return Ok(v);
        }
        let text = std::fs::read(path)?;
        let v = ContentFlags::of(&text);
        if let Ok(mut m) = self.content.lock() {
            m.insert(*digest, v);
        }
        Ok(v)
    }
}

/// What selects a linker identity: its path, its stamp, `-fuse-ld=`.
type LinkerKey = (PathBuf, Stamp, Option<String>, Option<OsString>);

/// Linker identities by the linker's path and stamp and `-fuse-ld=`.
#[derive(Default)]
pub struct LinkerMemo {
    map: OnceMemo<LinkerKey, Digest>,
}

impl LinkerMemo {
    /// Identifies (once) the linker at `linker`.
    pub fn identity(
        &self,
        linker: &Path,
        fuse_ld: Option<&str>,
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> Result<Digest, ToolchainError> {
        let meta = std::fs::metadata(linker).map_err(|source| ToolchainError::Spawn {
            program: linker.to_path_buf(),
            args: String::new(),
            source,
        })?;
        // The `PATH` in which the driver finds `ld` is part of what is
        // identified.
        let path_var = env_value(env, "PATH");
        let key = (
            linker.to_path_buf(),
            stamp(&meta),
            fuse_ld.map(str::to_string),
            path_var,
        );
        self.map.get_or_try(key, || {
            let d = linker_identity(linker, fuse_ld, cwd, env)?;
            tracing::info!(linker = %linker.display(), "identified linker");
            Ok(d)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_follows_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let memo = DigestMemo::default();
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"one"));
        std::fs::write(&p, "two!").unwrap();
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"two!"));
        assert!(memo.digest(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn old_files_are_memoised_and_a_new_stamp_rereads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let memo = DigestMemo::default();
        memo.digest(&p).unwrap();
        assert_eq!(memo.map.read().unwrap().len(), 1);
        // Same length, new content, new mtime: the stamp differs, so it is read again.
        std::fs::write(&p, "two").unwrap();
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"two"));
    }

    #[test]
    fn a_remembered_digest_serves_until_the_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let memo = DigestMemo::default();
        // Remembered although recent: the remembered value is what is served
        // (a planted one proves the file was not read again).
        let planted = Digest::of(b"planted");
        memo.remember(&p, &std::fs::metadata(&p).unwrap(), planted);
        assert_eq!(memo.digest(&p).unwrap(), planted);
        // A new file renamed over it (as rustc writes): another inode.
        let q = dir.path().join("g");
        std::fs::write(&q, "two").unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"two"));
    }
}
