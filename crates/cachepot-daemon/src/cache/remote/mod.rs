//! Remote execution of rustc misses (`CACHEPOT_REAPI_EXECUTE`).
//!
//! A library compile that misses becomes an action on the REAPI engine.
//! Local files keep their absolute paths inside the input root (`/a/b`
//! is `a/b` there), and the action runs `sh -c` [`SCRIPT`], which finds
//! the root's real path on the worker (`$r`) and puts it in front of
//! every path the arguments and path variables name:
//!
//! | input | what goes up |
//! |---|---|
//! | toolchain | `<sysroot>/bin/rustc`, `<sysroot>/lib/*.so*`, `<sysroot>/lib/rustlib/<target>/lib/**` |
//! | sources | the package directory (`CARGO_MANIFEST_DIR`) without `.git` and target directories (`CACHEDIR.TAG`), `OUT_DIR`, the crate root when it lies elsewhere |
//! | dependencies | `--extern` files; `lib*.rlib`, `lib*.rmeta`, `lib*.so` in `-L dependency=` directories (dependencies of dependencies); `*.a` in other `-L` directories under a base directory |
//! | environment | the compile's, without the wrapper's, the jobserver's and the session's variables; `PATH=/usr/bin:/bin`; `OUT_DIR`, `CARGO_MANIFEST_DIR` and `CARGO_MANIFEST_PATH` rooted on the worker |
//! | outputs | the compile's outputs, the dep-info the cache asked for, and `.cachepot-root` (the worker's `$r`) |
//!
//! rustc marks every path it remaps, so a remote compile that maps `$r/`
//! to `/` can only give the bytes of a local compile that maps too: every
//! compile that may run remotely gets [`IDENTITY_REMAP`], keyed like any
//! argument and passed to the local compiler on a fallback. The worker's
//! root is then removed from dep-info, stdout and stderr; an output that
//! still names it (a crate that embeds `env!("OUT_DIR")`) is not used and
//! the compile runs here. So do compiles the engine could not run, and
//! compile errors that name an input the worker lacked.

mod action;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachepot_compiler::rust::args::SplitDebuginfo;
use cachepot_compiler::rust::{CrateType, EmitKind, Role, RustCompile};
use cachepot_dist::{Executed, Executor, Input};

use super::restore::temp_beside;
use super::rust::RustPending;
use super::Pending;
use crate::Shared;
use action::{input_of, root_path, rust_action, walk, Budget, ROOT_FILE};

/// Added to every compile that may run remotely: a mapping of every
/// absolute path to itself, which rustc marks as remapped, as it marks
/// the remote compile's `$r/` → `/`.
pub(super) const IDENTITY_REMAP: &str = "--remap-path-prefix=/=/";

/// How long one compile may run on the engine.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(600);

/// Compile errors that mean the worker lacked an input: the compile runs
/// here instead.
const MISSING_INPUT: &[&str] = &[
    "couldn't read",
    "E0583",
    "E0460",
    "E0461",
    "E0462",
    "E0463",
    "E0464",
    "E0786",
    "could not find native static library",
    "No such file or directory",
];

/// Why a compile runs here although remote execution is on (statistics
/// keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeptLocal {
    /// Binaries, tests, proc-macros, dylibs: they need the linker and
    /// the system's libraries.
    Linked,
    /// Static libraries and other crate types.
    NotALibrary,
    Incremental,
    LlvmIr,
    Stdin,
    /// `--remap-path-prefix`, `--sysroot` or an `@file` of the user's.
    PathOptions,
    /// The worker's CPU is not this one.
    NativeCpu,
    SplitDebuginfo,
    /// A target given as a JSON file.
    TargetSpec,
    Clippy,
    NotUtf8,
    /// A hit compiled again under `CACHEPOT_VERIFY`.
    Verify,
}

impl KeptLocal {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            KeptLocal::Linked => "linked crate",
            KeptLocal::NotALibrary => "not an rlib",
            KeptLocal::Incremental => "incremental",
            KeptLocal::LlvmIr => "emits LLVM IR",
            KeptLocal::Stdin => "source on stdin",
            KeptLocal::PathOptions => "--remap-path-prefix, --sysroot or @file",
            KeptLocal::NativeCpu => "target-cpu=native",
            KeptLocal::SplitDebuginfo => "split debuginfo",
            KeptLocal::TargetSpec => "target spec file",
            KeptLocal::Clippy => "clippy",
            KeptLocal::NotUtf8 => "non-UTF-8 argument or path",
            KeptLocal::Verify => "verify",
        }
    }
}

/// Why a compile sent to the engine ran here after all, beyond the
/// engine's own failures (statistics keys).
#[derive(Clone, Copy, Debug)]
enum Fallback {
    Engine(cachepot_dist::Failure),
    /// An input could not be named for the action.
    Inputs,
    /// The worker's root is in an output.
    WorkerPath,
    /// The compile failed for want of an input.
    MissingInput,
    /// The compiler crashed or was killed on the worker.
    Crashed,
    /// The engine's result lacks an output or cannot be written here.
    Outputs,
}

impl Fallback {
    fn as_str(self) -> &'static str {
        match self {
            Fallback::Engine(f) => f.as_str(),
            Fallback::Inputs => "inputs not collected",
            Fallback::WorkerPath => "worker path in output",
            Fallback::MissingInput => "input missing on worker",
            Fallback::Crashed => "compiler crashed on worker",
            Fallback::Outputs => "outputs unusable",
        }
    }
}

/// Whether a parsed rustc compile may run on the engine.
pub(super) fn kept_local(
    c: &RustCompile,
    raw_args: &[OsString],
    clippy: bool,
) -> Option<KeptLocal> {
    let reason = if clippy {
        KeptLocal::Clippy
    } else if c.is_linked() || c.test {
        KeptLocal::Linked
    } else if c
        .crate_types
        .iter()
        .any(|t| !matches!(t, CrateType::Lib | CrateType::Rlib))
    {
        KeptLocal::NotALibrary
    } else if c.incremental.is_some() {
        KeptLocal::Incremental
    } else if c.emits.iter().any(|e| e.kind == EmitKind::LlvmIr) {
        KeptLocal::LlvmIr
    } else if c.reads_stdin() {
        KeptLocal::Stdin
    } else if c.native_cpu() {
        KeptLocal::NativeCpu
    } else if c.split_debuginfo == SplitDebuginfo::Unpacked {
        KeptLocal::SplitDebuginfo
    } else if c
        .target
        .as_deref()
        .is_some_and(|t| t.contains('/') || t.ends_with(".json"))
    {
        KeptLocal::TargetSpec
    } else if raw_args.iter().any(|a| {
        let a = a.to_string_lossy();
        a.starts_with('@') || a.starts_with("--remap-path-prefix") || a.starts_with("--sysroot")
    }) {
        KeptLocal::PathOptions
    } else if raw_args.iter().any(|a| a.to_str().is_none()) {
        KeptLocal::NotUtf8
    } else {
        return None;
    };
    Some(reason)
}

/// The daemon's remote execution: the engine, and each toolchain's files
/// (listed once).
pub struct RemoteExec {
    pub executor: Arc<Executor>,
    toolchains: Mutex<HashMap<SysrootTarget, Arc<Vec<Input>>>>,
}

/// A toolchain's sysroot and the target whose standard library is used.
type SysrootTarget = (PathBuf, String);

impl RemoteExec {
    pub fn new(executor: Arc<Executor>) -> RemoteExec {
        RemoteExec {
            executor,
            toolchains: Mutex::default(),
        }
    }

    fn toolchain(&self, sysroot: &Path, target: &str) -> std::io::Result<Arc<Vec<Input>>> {
        let key = (sysroot.to_path_buf(), target.to_string());
        if let Some(t) = self
            .toolchains
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(t);
        }
        let mut files = Vec::new();
        files.push(sysroot.join("bin/rustc"));
        for e in std::fs::read_dir(sysroot.join("lib"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".so") && e.path().is_file() {
                files.push(e.path());
            }
        }
        let mut inputs = Vec::new();
        for f in files {
            inputs.push(input_of(&f)?);
        }
        walk(
            &sysroot.join("lib/rustlib").join(target).join("lib"),
            &mut inputs,
            &mut Budget::unlimited(),
        )?;
        let inputs = Arc::new(inputs);
        if let Ok(mut m) = self.toolchains.lock() {
            m.insert(key, inputs.clone());
        }
        Ok(inputs)
    }
}

/// What a compile that ran on the engine answers.
pub struct Ran {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs a rustc miss on the engine and writes its outputs; `None` when
/// the compile must run here (the reason is counted and logged).
pub(super) fn run_rust(shared: &Shared, p: &Pending, r: &RustPending, target: &str) -> Option<Ran> {
    let remote = shared.remote.as_ref()?;
    let started = std::time::Instant::now();
    let fall_back = |why: Fallback, detail: &dyn std::fmt::Display| {
        tracing::warn!(unit = %p.unit.unit, reason = why.as_str(), %detail, "remote execution failed; compiling here");
        shared.stats.remote_failed(why.as_str());
        None
    };
    let spec = match rust_action(remote, p, r, target) {
        Ok(s) => s,
        Err(e) => return fall_back(Fallback::Inputs, &e),
    };
    let executed = match remote.executor.run(&spec) {
        Ok(e) => e,
        Err(e) => return fall_back(Fallback::Engine(e.failure()), &e),
    };
    match finish(remote, r, &p.cwd, executed) {
        Ok((ran, executed)) => {
            shared.stats.remote_done(
                executed.uploaded,
                executed.downloaded,
                executed.queued,
                executed.executing,
                started.elapsed(),
            );
            tracing::debug!(unit = %p.unit.unit, worker = %executed.worker, cached = executed.cached, "ran on the engine");
            Some(ran)
        }
        Err((why, detail)) => fall_back(why, &detail),
    }
}

/// Checks the engine's result and writes the outputs in place.
fn finish(
    remote: &RemoteExec,
    r: &RustPending,
    cwd: &Path,
    mut executed: Executed,
) -> Result<(Ran, Executed), (Fallback, String)> {
    let root = executed
        .outputs
        .remove(ROOT_FILE)
        .ok_or((Fallback::Outputs, format!("no {ROOT_FILE}")))?;
    let strip = |bytes: &[u8]| -> Vec<u8> {
        if root.is_empty() {
            return bytes.to_vec();
        }
        replace_all(bytes, &root, b"")
    };
    let stdout = strip(&executed.stdout);
    let stderr = strip(&executed.stderr);
    match executed.exit_code {
        0 => {}
        1 => {
            let text = String::from_utf8_lossy(&stderr);
            if let Some(sign) = MISSING_INPUT.iter().find(|s| text.contains(*s)) {
                return Err((Fallback::MissingInput, (*sign).to_string()));
            }
        }
        code => return Err((Fallback::Crashed, format!("exit code {code}"))),
    }
    // What goes where: dep-info has the root taken out; any other output
    // must not name it.
    let mut writes: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut wanted: Vec<(PathBuf, bool, bool)> = super::rust::kept_outputs(&r.compile, cwd)
        .into_iter()
        .map(|o| (o.path, o.role == Role::DepInfo, o.optional))
        .collect();
    if let Some(d) = &r.own_depinfo {
        wanted.push((d.clone(), true, false));
    }
    for (path, depinfo, optional) in wanted {
        let name = root_path(&path).unwrap_or_default();
        let Some(bytes) = executed.outputs.remove(&name) else {
            if optional || executed.exit_code != 0 {
                continue;
            }
            return Err((Fallback::Outputs, format!("{} not written", path.display())));
        };
        let bytes = if depinfo {
            strip(&bytes)
        } else if !root.is_empty() && find(&bytes, &root).is_some() {
            return Err((Fallback::WorkerPath, path.display().to_string()));
        } else {
            bytes
        };
        writes.push((path, bytes));
    }
    for (path, bytes) in &writes {
        write_output(path, bytes).map_err(|e| (Fallback::Outputs, e.to_string()))?;
        remote.executor.remember(path, bytes);
    }
    let ran = Ran {
        exit_code: executed.exit_code,
        stdout,
        stderr,
    };
    Ok((ran, executed))
}

/// Writes a file beside its destination and renames it into place.
fn write_output(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_beside(dest)?;
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, dest));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(i) = find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_root_is_replaced_everywhere() {
        assert_eq!(
            replace_all(b"/r/x/a.rs: /r/x/b.rs\n", b"/r", b""),
            b"/x/a.rs: /x/b.rs\n"
        );
        assert_eq!(find(b"abc", b"bc"), Some(1));
        assert_eq!(find(b"abc", b""), None);
    }
}
