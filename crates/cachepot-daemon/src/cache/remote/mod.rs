//! Remote execution of rustc misses (`CACHEPOT_REAPI_EXECUTE`).
//!
//! A library compile that misses becomes an action on the REAPI engine.
//! Local files keep their absolute paths inside the input root (`/a/b`
//! is `a/b` there), and the action runs `sh -c` (`action::SCRIPT`), which finds
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

use cachepot_compiler::depinfo;
use cachepot_compiler::key::env_value;
use cachepot_compiler::rust::args::SplitDebuginfo;
use cachepot_compiler::rust::{CrateType, EmitKind, Role, RustCompile};
use cachepot_dist::{Executed, Executor, Input};

use super::restore::temp_beside;
use super::rust::RustPending;
use super::Pending;
use crate::Shared;
use action::{input_of, root_args, root_path, rust_action, walk, Budget, ROOT_FILE};

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
    /// A build script's feature probe: tiny, and on the script's path.
    Probe,
    /// The compiler cargo runs is not the toolchain's rustc (a script or
    /// a wrapper that may add arguments or variables).
    CompilerWrapper,
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
            KeptLocal::PathOptions => {
                "path option not mapped (--remap-path-prefix, --sysroot, @file, a profile, …)"
            }
            KeptLocal::NativeCpu => "target-cpu=native",
            KeptLocal::SplitDebuginfo => "split debuginfo",
            KeptLocal::TargetSpec => "target spec file",
            KeptLocal::Clippy => "clippy",
            KeptLocal::Probe => "build script's probe",
            KeptLocal::CompilerWrapper => "compiler is not the toolchain's rustc",
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
    /// The worker's compile saw another environment than this machine's
    /// (an `env!` value, a file outside the inputs).
    Environment,
    /// A compile error without the dep-info that would show it is the
    /// compiler's own.
    Unproven,
    /// The wrapper went away while the engine compiled.
    WrapperGone,
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
            Fallback::Environment => "environment differs on worker",
            Fallback::Unproven => "error without dep-info",
            Fallback::WrapperGone => "wrapper gone",
        }
    }
}

/// Whether a parsed rustc compile may run on the engine.
pub(super) fn kept_local(
    c: &RustCompile,
    raw_args: &[OsString],
    clippy: bool,
    in_build_script: bool,
) -> Option<KeptLocal> {
    let reason = if clippy {
        KeptLocal::Clippy
    } else if in_build_script {
        KeptLocal::Probe
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
    } else if unmapped_paths(raw_args, &c.input) {
        KeptLocal::PathOptions
    } else {
        return None;
    };
    Some(reason)
}

/// Whether an argument names an absolute path the action would not map.
fn unmapped_paths(raw_args: &[OsString], input: &str) -> bool {
    let args: Vec<&str> = raw_args.iter().filter_map(|a| a.to_str()).collect();
    root_args(&args, input).is_none()
}

/// Whether `compiler` (as found in `PATH`) runs `real`, the sysroot's
/// `bin/rustc` (what the action runs), unchanged: it is that file, or rustup's proxy (a link to the
/// `rustup` binary beside it, or to one of that name).
pub(super) fn is_plain_rustc(compiler: &Path, real: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let Some(c) = id(compiler) else {
        return false;
    };
    if Some(c) == id(real) {
        return true;
    }
    let beside = compiler.parent().map(|d| d.join("rustup"));
    beside.is_some_and(|r| id(&r) == Some(c))
        || std::fs::canonicalize(compiler)
            .ok()
            .is_some_and(|p| p.file_name().is_some_and(|n| n == "rustup"))
}

/// The daemon's remote execution: the engine, and each toolchain's files
/// (listed once).
pub struct RemoteExec {
    pub executor: Arc<Executor>,
    toolchains: Mutex<HashMap<SysrootTarget, Arc<Vec<Input>>>>,
    /// Package directories over the budget (see `action::Budget`): their
    /// compiles run here without walking them again.
    too_large: Mutex<std::collections::HashSet<PathBuf>>,
}

/// A toolchain's sysroot and the target whose standard library is used.
type SysrootTarget = (PathBuf, String);

impl RemoteExec {
    pub fn new(executor: Arc<Executor>) -> RemoteExec {
        RemoteExec {
            executor,
            toolchains: Mutex::default(),
            too_large: Mutex::default(),
        }
    }

    fn too_large(&self, dir: &Path) -> bool {
        self.too_large.lock().is_ok_and(|s| s.contains(dir))
    }

    fn remember_too_large(&self, dir: PathBuf) {
        if let Ok(mut s) = self.too_large.lock() {
            s.insert(dir);
        }
    }

    fn forget_toolchains(&self) {
        if let Ok(mut m) = self.toolchains.lock() {
            m.clear();
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
pub(super) fn run_rust(
    shared: &Shared,
    p: &Pending,
    r: &RustPending,
    target: &str,
    alive: &dyn Fn() -> bool,
) -> Option<Ran> {
    let remote = shared.remote.as_ref()?;
    let started = std::time::Instant::now();
    let fall_back = |why: Fallback, detail: &dyn std::fmt::Display| {
        tracing::warn!(unit = %p.unit.unit, reason = why.as_str(), %detail, "remote execution failed; compiling here");
        shared.stats.remote_failed(why.as_str());
        None
    };
    let spec = match rust_action(remote, p, r, target) {
        Ok(s) => s,
        Err(e) => {
            // A toolchain updated in place (`rustup update`) is listed
            // again next time.
            remote.forget_toolchains();
            return fall_back(Fallback::Inputs, &e);
        }
    };
    let executed = match remote.executor.run(&spec) {
        Ok(e) => e,
        Err(e) => {
            if e.failure() == cachepot_dist::Failure::Input {
                remote.forget_toolchains();
            }
            return fall_back(Fallback::Engine(e.failure()), &e);
        }
    };
    match finish(remote, p, r, executed, alive) {
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

/// Checks the engine's result and writes the outputs in place, unless
/// the wrapper has gone (`alive`).
fn finish(
    remote: &RemoteExec,
    p: &Pending,
    r: &RustPending,
    mut executed: Executed,
    alive: &dyn Fn() -> bool,
) -> Result<(Ran, Executed), (Fallback, String)> {
    let root = executed
        .outputs
        .remove(ROOT_FILE)
        .ok_or((Fallback::Outputs, format!("no {ROOT_FILE}")))?;
    // Text that names the worker's root names this machine's paths once
    // the root is taken out; any trace of it left is a difference.
    let strip =
        |what: &dyn std::fmt::Display, bytes: &[u8]| -> Result<Vec<u8>, (Fallback, String)> {
            let out = strip_root(bytes, &root);
            if names_root(&out, &root) {
                return Err((Fallback::WorkerPath, what.to_string()));
            }
            Ok(out)
        };
    let stdout = strip(&"stdout", &executed.stdout)?;
    let stderr = strip(&"stderr", &executed.stderr)?;
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
    let mut wanted: Vec<(PathBuf, bool, bool)> = super::rust::kept_outputs(&r.compile, &p.cwd)
        .into_iter()
        .map(|o| (o.path, o.role == Role::DepInfo, o.optional))
        .collect();
    if let Some(d) = &r.own_depinfo {
        wanted.push((d.clone(), true, false));
    }
    let mut writes: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut depinfo_seen = false;
    for (path, depinfo, optional) in wanted {
        let name = root_path(&path).unwrap_or_default();
        let Some(bytes) = executed.outputs.remove(&name) else {
            if optional || executed.exit_code != 0 {
                continue;
            }
            return Err((Fallback::Outputs, format!("{} not written", path.display())));
        };
        let bytes = if depinfo {
            same_environment(p, &bytes, &root).map_err(|e| (Fallback::Environment, e))?;
            depinfo_seen = true;
            strip(&path.display(), &bytes)?
        } else if names_root(&bytes, &root) {
            return Err((Fallback::WorkerPath, path.display().to_string()));
        } else {
            bytes
        };
        writes.push((path, bytes));
    }
    // A compile error is the compiler's own only when rustc got as far as
    // its dep-info, and that shows the worker read what this machine has.
    if !depinfo_seen {
        return Err((Fallback::Unproven, "no dep-info".into()));
    }
    if !alive() {
        return Err((Fallback::WrapperGone, String::new()));
    }
    write_outputs(&writes).map_err(|e| (Fallback::Outputs, e.to_string()))?;
    for (path, bytes) in &writes {
        remote.executor.remember(path, bytes);
    }
    let ran = Ran {
        exit_code: executed.exit_code,
        stdout,
        stderr,
    };
    Ok((ran, executed))
}

/// Whether the worker's compile saw this machine's environment, as its
/// dep-info tells: every `env!` variable with the value it has here, and
/// no absolute path outside the input root.
fn same_environment(p: &Pending, raw: &[u8], root: &[u8]) -> Result<(), String> {
    let root = String::from_utf8_lossy(root);
    let stripped = String::from_utf8_lossy(&strip_root(raw, root.as_bytes())).into_owned();
    let raw = String::from_utf8_lossy(raw);
    for f in depinfo::parse(&raw).files {
        if f.starts_with('/') && !root.is_empty() && !f.starts_with(&format!("{root}/")) {
            return Err(format!("read {f} outside its inputs"));
        }
    }
    for (name, value) in depinfo::parse(&stripped).env {
        let here =
            env_value(&p.env, &name).map(|v| depinfo::escape_env_value(&v.to_string_lossy()));
        if here != value {
            return Err(format!("{name} differs"));
        }
    }
    Ok(())
}

/// `bytes` with the worker's root taken out where a path starts (at the
/// start, after white space, `:`, `=`, `"` or `'`): `ROOT/a` becomes `/a`.
fn strip_root(bytes: &[u8], root: &[u8]) -> Vec<u8> {
    if root.is_empty() {
        return bytes.to_vec();
    }
    let mut needle = root.to_vec();
    needle.push(b'/');
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(at) = memchr::memmem::find(&bytes[i..], &needle) {
        let at = i + at;
        let starts_path = at == 0
            || matches!(
                bytes[at - 1],
                b' ' | b'\t' | b'\n' | b':' | b'=' | b'"' | b'\''
            );
        out.extend_from_slice(&bytes[i..at]);
        if starts_path {
            out.push(b'/');
        } else {
            out.extend_from_slice(&needle);
        }
        i = at + needle.len();
    }
    out.extend_from_slice(&bytes[i..]);
    out
}

/// Whether `bytes` still name the worker's root (as is, or with its
/// spaces escaped as make does).
fn names_root(bytes: &[u8], root: &[u8]) -> bool {
    if root.is_empty() {
        return false;
    }
    let escaped: Vec<u8> = root
        .iter()
        .flat_map(|&b| {
            if b == b' ' {
                vec![b'\\', b' ']
            } else {
                vec![b]
            }
        })
        .collect();
    memchr::memmem::find(bytes, root).is_some() || memchr::memmem::find(bytes, &escaped).is_some()
}

/// Writes every file beside its destination, then renames them all into
/// place: an error leaves none of them half done.
fn write_outputs(writes: &[(PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    let mut temps = Vec::with_capacity(writes.len());
    let staged = writes.iter().try_for_each(|(dest, bytes)| {
        let tmp = temp_beside(dest)?;
        temps.push(tmp.clone());
        std::fs::write(&tmp, bytes)
    });
    let renamed = staged.and_then(|()| {
        temps
            .iter()
            .zip(writes)
            .try_for_each(|(tmp, (dest, _))| std::fs::rename(tmp, dest))
    });
    if renamed.is_err() {
        for t in &temps {
            let _ = std::fs::remove_file(t);
        }
    }
    renamed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_root_comes_out_where_a_path_starts() {
        let r = b"/w/a1";
        assert_eq!(
            strip_root(b"/w/a1/x/a.rs: /w/a1/x/b.rs\n", r),
            b"/x/a.rs: /x/b.rs\n"
        );
        // The root as a part of a longer path, or of a name, stays.
        assert_eq!(strip_root(b"/w/a10/x /h/w/a1/y", r), b"/w/a10/x /h/w/a1/y");
        assert_eq!(
            strip_root(b"{\"file\":\"/w/a1/src/lib.rs\"}", r),
            b"{\"file\":\"/src/lib.rs\"}"
        );
        assert!(names_root(b"x /h/w/a1/y", r));
        assert!(names_root(b"/w/my\\ root/x", b"/w/my root"));
        assert!(!names_root(b"/x/a.rs", r));
        assert!(!names_root(b"anything", b""));
    }
}
