//! Memo caches: toolchain identities by the compiler binary and rustup's
//! toolchain choice, what `native` is for each toolchain and C compiler,
//! C compilers, linkers, and what file contents hold.
//! File digests are in [`crate::digests`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cachepot_compiler::c::{CToolchain, ContentFlags};
use cachepot_compiler::digest::{Digest, FileDigester};
use cachepot_compiler::key::env_value;
use cachepot_compiler::native::{self, NativeCpu};
use cachepot_compiler::rust::linker::linker_identity;
pub use cachepot_compiler::toolchain::find_program as resolve_program;
use cachepot_compiler::toolchain::{RustToolchain, ToolchainError};

use crate::once::OnceMemo;

pub use crate::digests::DigestMemo;
use crate::digests::{is_recent, stamp, Stamp};

/// What `native` is, or why it could not be told. A question that timed
/// out is remembered (asking again would stall every compile as long);
/// other failures are not, and the next compile asks again.
type NativeAnswer = Result<Arc<NativeCpu>, String>;

/// Asks once: a timeout becomes a remembered answer, other errors are
/// returned unremembered.
fn ask_native<K: Eq + std::hash::Hash>(
    memo: &OnceMemo<K, NativeAnswer>,
    key: K,
    ask: impl FnOnce() -> Result<NativeCpu, ToolchainError>,
) -> NativeAnswer {
    memo.get_or_try(key, || match ask() {
        Ok(n) => {
            tracing::info!(cpu = %n.cpu, features = n.features.len(), "resolved the native CPU");
            Ok(Ok(Arc::new(n)))
        }
        Err(e @ ToolchainError::Timeout { .. }) => Ok(Err(e.to_string())),
        Err(e) => Err(e.to_string()),
    })
    .and_then(|answer| answer)
}

/// Toolchains memoised by what selects them.
#[derive(Default)]
pub struct ToolchainMemo {
    probes: OnceMemo<Vec<u8>, Arc<RustToolchain>>,
    identities: OnceMemo<(PathBuf, Option<String>), Digest>,
    natives: OnceMemo<Digest, NativeAnswer>,
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
        digester: &dyn FileDigester,
    ) -> Result<Digest, ToolchainError> {
        let key = (toolchain.rustc.clone(), target.map(str::to_string));
        self.identities
            .get_or_try(key, || toolchain.identity(target, digester))
    }

    /// What `-C target-cpu=native` is for this toolchain (`identity`, which
    /// covers the target) and `target`, asked once.
    pub fn native_cpu(
        &self,
        toolchain: &RustToolchain,
        identity: &Digest,
        target: Option<&str>,
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> NativeAnswer {
        // clippy-driver's toolchain has rustc beside it, which answers the same.
        let rustc = toolchain.sysroot.join("bin").join("rustc");
        let rustc = if rustc.is_file() {
            rustc
        } else {
            toolchain.rustc.clone()
        };
        ask_native(&self.natives, *identity, || {
            native::probe_rustc(&rustc, target, cwd, env)
        })
    }
}

/// C compilers identified by path and binary stamp, and the files known to
/// use time macros, by content digest.
#[derive(Default)]
pub struct CCompilerMemo {
    probes: OnceMemo<(PathBuf, Stamp), Arc<CToolchain>>,
    content: Mutex<HashMap<Digest, ContentFlags>>,
    pch_dirs: Mutex<HashMap<(PathBuf, i128), bool>>,
    natives: OnceMemo<(Digest, Vec<String>), NativeAnswer>,
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

    /// What a compile's `native` options (`CCompile::native_args`) expand
    /// to with this compiler, asked once per compiler and options.
    pub fn native_cpu(
        &self,
        toolchain: &CToolchain,
        compiler: &Path,
        native_args: &[String],
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> NativeAnswer {
        let key = (toolchain.identity, native_args.to_vec());
        ask_native(&self.natives, key, || {
            native::probe_c(compiler, toolchain.family, native_args, cwd, env)
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
        let key = (dir.to_path_buf(), s.mtime_ns());
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
