//! Remote execution of misses (`CACHEPOT_REAPI_EXECUTE`): rustc's here,
//! gcc's in `c.rs`.
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
//! | environment | the compile's, without the wrapper's, the jobserver's and the session's variables; `PATH=/usr/bin:/bin`; `OUT_DIR`, `CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH` and `LD_LIBRARY_PATH` rooted on the worker |
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
mod c;
mod c_args;
mod c_toolchain;
mod finish;
mod probes;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachepot_compiler::rust::args::SplitDebuginfo;
use cachepot_compiler::rust::{CrateType, EmitKind, Role, RustCompile};
use cachepot_dist::{ActionSpec, Executor, Input};

use super::c::CPending;
use super::rust::RustPending;
use super::Pending;
use crate::Shared;
use action::{input_of, root_args, rust_action, walk, Budget};
pub(in crate::cache) use c_args::kept_local as kept_local_c;
use c_toolchain::{CompilerFiles, CompilerFilesByDriver};
use finish::{finish, Errors, Wanted};

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
    "file not found",
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
    /// clang with `-fno-integrated-as`: the assembler would come from
    /// the worker's `PATH`.
    ExternalAssembler,
    /// A `-D` value with `__has_include`: what it asks is not known
    /// before the compile.
    ProbeInArguments,
    /// A locale whose messages or character set the worker may not have.
    Locale,
    /// `$PWD` names the working directory through a link, and the debug
    /// information records it.
    LinkedCwd,
    /// Assembler, Objective-C.
    NotCOrCxx,
    /// Coverage notes, profiling, split DWARF, profiles read: files
    /// beside the object, or paths embedded in it.
    SideFiles,
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
            KeptLocal::ExternalAssembler => "external assembler",
            KeptLocal::ProbeInArguments => "__has_include in an argument",
            KeptLocal::Locale => "locale other than C or English UTF-8",
            KeptLocal::LinkedCwd => "working directory named through a link",
            KeptLocal::NotCOrCxx => "not C or C++",
            KeptLocal::SideFiles => "coverage, profiling or split DWARF",
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
    /// A C compile that failed on the worker: compiled here, whose error
    /// is certainly this machine's.
    CompileError,
    /// The compile reads what the worker cannot match: a time macro, a
    /// file through `.incbin`, `__has_include` of a macro, a path that
    /// names two files.
    NotPortable,
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
            Fallback::CompileError => "C compile error, compiled here",
            Fallback::NotPortable => "reads what the worker cannot match",
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
    /// Each C driver's files.
    c_compilers: Mutex<CompilerFilesByDriver>,
}

/// A toolchain's sysroot and the target whose standard library is used.
type SysrootTarget = (PathBuf, String);

impl RemoteExec {
    pub fn new(executor: Arc<Executor>) -> RemoteExec {
        RemoteExec {
            executor,
            toolchains: Mutex::default(),
            too_large: Mutex::default(),
            c_compilers: Mutex::default(),
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
        if let Ok(mut m) = self.c_compilers.lock() {
            m.clear();
        }
    }

    fn c_compiler(
        &self,
        family: cachepot_compiler::c::Family,
        driver: &Path,
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> std::io::Result<Arc<CompilerFiles>> {
        let known = self.c_compilers.lock().ok();
        let listed = known.and_then(|m| m.get(driver).cloned());
        if let Some(t) = listed.filter(|t| t.stamp == c_toolchain::stamp(driver)) {
            return Ok(t);
        }
        let t = Arc::new(CompilerFiles::find(family, driver, cwd, env)?);
        if let Ok(mut m) = self.c_compilers.lock() {
            m.insert(driver.to_path_buf(), t.clone());
        }
        Ok(t)
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

/// Why an action could not be built: the compile runs here.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unsent {
    /// An input could not be named or read.
    #[error(transparent)]
    Inputs(#[from] std::io::Error),
    /// The compile reads what the worker cannot match (see
    /// [`Fallback::NotPortable`]).
    #[error("{0}")]
    NotPortable(String),
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
    let action = || -> Result<(ActionSpec, Vec<Wanted>), Unsent> {
        let mut wanted = super::rust::kept_outputs(&r.compile, &p.cwd)
            .into_iter()
            .map(|o| Wanted::file(o.path, o.role == Role::DepInfo, o.optional))
            .collect::<std::io::Result<Vec<_>>>()?;
        if let Some(d) = &r.own_depinfo {
            wanted.push(Wanted::file(d.clone(), true, false)?);
        }
        Ok((rust_action(remote, p, r, target)?, wanted))
    };
    run(shared, p, action(), Errors::Located, alive)
}

/// Runs a gcc or clang miss on the engine and writes its outputs; `None`
/// when the compile must run here (the reason is counted and logged).
pub(super) fn run_c(
    shared: &Shared,
    p: &Pending,
    cp: &CPending,
    alive: &dyn Fn() -> bool,
) -> Option<Ran> {
    let remote = shared.remote.as_ref()?;
    let action = || -> Result<(ActionSpec, Vec<Wanted>), Unsent> {
        let object = action::clean(&p.cwd, Path::new(&cp.compile.output));
        let depfile = match c::depfile(p, cp) {
            Some(d) => Wanted::file(d, true, false)?,
            None => Wanted {
                name: c::CHECK_DEPFILE.into(),
                dest: None,
                depinfo: true,
                optional: false,
            },
        };
        let wanted = vec![Wanted::file(object, false, false)?, depfile];
        let scratch = super::private_temp(shared, "d");
        // The local `-M` run preprocesses as a compile would: it waits
        // for a core like one (see `slots`).
        let _slot = shared.local_slots.as_ref().map(|s| s.take());
        Ok((c::c_action(remote, p, cp, &scratch)?, wanted))
    };
    run(shared, p, action(), Errors::CompiledHere, alive)
}

/// Runs an action and checks and writes what it gives.
/// The action's outputs are the wanted files and [`action::ROOT_FILE`].
fn run(
    shared: &Shared,
    p: &Pending,
    action: Result<(ActionSpec, Vec<Wanted>), Unsent>,
    errors: Errors,
    alive: &dyn Fn() -> bool,
) -> Option<Ran> {
    let remote = shared.remote.as_ref()?;
    let started = std::time::Instant::now();
    let fall_back = |why: Fallback, detail: &dyn std::fmt::Display| {
        tracing::warn!(unit = %p.unit.unit, reason = why.as_str(), %detail, "remote execution failed; compiling here");
        shared.stats.remote_failed(why.as_str());
        None
    };
    let (mut spec, wanted) = match action {
        Ok(a) => a,
        Err(Unsent::NotPortable(why)) => return fall_back(Fallback::NotPortable, &why),
        Err(Unsent::Inputs(e)) => {
            // A toolchain updated in place (`rustup update`) is listed
            // again next time.
            remote.forget_toolchains();
            return fall_back(Fallback::Inputs, &e);
        }
    };
    spec.outputs = wanted
        .iter()
        .map(|w| w.name.clone())
        .chain([action::ROOT_FILE.to_string()])
        .collect();
    let executed = match remote.executor.run(&spec) {
        Ok(e) => e,
        Err(e) => {
            if e.failure() == cachepot_dist::Failure::Input {
                remote.forget_toolchains();
            }
            return fall_back(Fallback::Engine(e.failure()), &e);
        }
    };
    match finish(remote, p, wanted, errors, executed, alive) {
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
