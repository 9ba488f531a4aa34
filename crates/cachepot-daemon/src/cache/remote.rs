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

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachepot_compiler::key::env_value;
use cachepot_compiler::rust::args::SplitDebuginfo;
use cachepot_compiler::rust::{CrateType, EmitKind, Role, RustCompile};
use cachepot_dist::{ActionSpec, Executed, Executor, Input};

use super::restore::temp_beside;
use super::rust::RustPending;
use super::Pending;
use crate::Shared;

/// Added to every compile that may run remotely: a mapping of every
/// absolute path to itself, which rustc marks as remapped, as it marks
/// the remote compile's `$r/` → `/`.
pub(super) const IDENTITY_REMAP: &str = "--remap-path-prefix=/=/";

/// What stands for the worker's root in arguments, until [`SCRIPT`]
/// replaces it.
const MARK: &str = "@CACHEPOT_ROOT@";

/// The output file that tells the worker's root.
const ROOT_FILE: &str = ".cachepot-root";

/// How long one compile may run on the engine.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(600);

/// The command of every action: `$1` is the working directory, then the
/// program and its arguments, all with [`MARK`] where the root goes.
const SCRIPT: &str = r#"r=$(pwd -P) || exit 125
[ "$r" = / ] && r=
printf %s "$r" > .cachepot-root || exit 125
m=@CACHEPOT_ROOT@
for a; do
  while :; do case $a in *"$m"*) a="${a%%"$m"*}$r${a#*"$m"}";; *) break;; esac; done
  set -- "$@" "$a"; shift
done
for v in OUT_DIR CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH; do
  eval "x=\${$v-}"
  case $x in /*) export "$v=$r$x";; esac
done
cd "$1" || exit 125
shift
exec "$@"
"#;

/// Variables not passed to the engine: the wrappers', the jobserver's
/// (its descriptors are this machine's), the session's.
const DROPPED_ENV: &[&str] = &[
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "PATH",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
    "TERM",
    "DISPLAY",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
];
const DROPPED_ENV_PREFIXES: &[&str] = &["CACHEPOT_", "SCCACHE_", "SSH_", "RUSTUP_", "XDG_"];

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
            Fallback::Inputs => "inputs not found",
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

/// How many files and bytes a package directory may bring.
struct Budget {
    files: usize,
    bytes: u64,
}

impl Budget {
    fn unlimited() -> Budget {
        Budget {
            files: usize::MAX,
            bytes: u64::MAX,
        }
    }
    fn package() -> Budget {
        Budget {
            files: 20_000,
            bytes: 2 << 30,
        }
    }
}

/// `/a/b` as the input root's `a/b`; `None` for a path that is not
/// absolute, clean and UTF-8.
fn root_path(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => parts.push(n.to_str()?),
            _ => return None,
        }
    }
    p.is_absolute().then(|| parts.join("/"))
}

/// `p` made absolute against `cwd` and cleaned of `.` and `..`.
fn clean(cwd: &Path, p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in cwd.join(p).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn not_utf8(p: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{} is not a plain UTF-8 path", p.display()),
    )
}

fn input_of(local: &Path) -> std::io::Result<Input> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(local)?;
    Ok(Input {
        path: root_path(local).ok_or_else(|| not_utf8(local))?,
        local: local.to_path_buf(),
        executable: meta.permissions().mode() & 0o111 != 0,
    })
}

/// Every file under `dir`, but version control and target directories;
/// symbolic links to files are followed, to directories not.
fn walk(dir: &Path, out: &mut Vec<Input>, budget: &mut Budget) -> std::io::Result<()> {
    if dir.join("CACHEDIR.TAG").exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        if [".git", ".hg", ".svn", ".jj"].iter().any(|s| name == *s) {
            continue;
        }
        let path = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&path, out, budget)?;
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            let input = input_of(&path)?;
            let size = std::fs::metadata(&path)?.len();
            if budget.files == 0 || budget.bytes < size {
                return Err(std::io::Error::other(format!(
                    "{} holds too much to send",
                    dir.display()
                )));
            }
            budget.files -= 1;
            budget.bytes -= size;
            out.push(input);
        }
    }
    Ok(())
}

/// The files of a search directory that rustc may read: crates in it,
/// and static libraries to bundle.
fn search_dir_files(dir: &Path, crates: bool, out: &mut Vec<Input>) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let wanted = if crates {
            name.starts_with("lib")
                && (name.ends_with(".rlib") || name.ends_with(".rmeta") || name.ends_with(".so"))
        } else {
            name.ends_with(".a")
        };
        if wanted && e.path().is_file() {
            out.push(input_of(&e.path())?);
        }
    }
    Ok(())
}

/// An argument with [`MARK`] in front of each absolute path: the whole
/// argument, or after `=` or `,` (`--extern a=/p`, `-L dependency=/p`,
/// `--emit=dep-info=/p`), or after `-L`. Of [`IDENTITY_REMAP`], only
/// the path it maps from: the worker's paths map to this machine's.
fn root_arg(arg: &str) -> String {
    if arg == IDENTITY_REMAP {
        return format!("--remap-path-prefix={MARK}/=/");
    }
    let mut out = String::with_capacity(arg.len() + MARK.len());
    let mut prev: Option<char> = None;
    for (i, ch) in arg.char_indices() {
        let starts_path = ch == '/'
            && match prev {
                None => true,
                Some('=') | Some(',') => true,
                Some('L') => i == 2 && arg.starts_with("-L"),
                _ => false,
            };
        if starts_path {
            out.push_str(MARK);
        }
        out.push(ch);
        prev = Some(ch);
    }
    out
}

/// The action for a rustc miss.
fn rust_action(
    remote: &RemoteExec,
    p: &Pending,
    r: &RustPending,
    target: &str,
) -> std::io::Result<ActionSpec> {
    let c = &r.compile;
    let cwd = &p.cwd;
    let mut inputs: Vec<Input> = remote.toolchain(&r.sysroot, target)?.as_ref().clone();
    let mut budget = Budget::package();
    let env_path = |name: &str| env_value(&p.env, name).map(PathBuf::from);
    if let Some(dir) = env_path("CARGO_MANIFEST_DIR") {
        walk(&dir, &mut inputs, &mut budget)?;
    }
    if let Some(dir) = env_path("OUT_DIR") {
        if dir.is_dir() {
            walk(&dir, &mut inputs, &mut budget)?;
        }
    }
    inputs.push(input_of(&clean(cwd, Path::new(&c.input)))?);
    for e in &c.externs {
        if let Some(path) = &e.path {
            inputs.push(input_of(&clean(cwd, Path::new(path)))?);
        }
    }
    for (kind, dir) in &c.search_paths {
        let dir = clean(cwd, Path::new(dir));
        match kind.as_str() {
            "dependency" | "crate" => search_dir_files(&dir, true, &mut inputs)?,
            _ if p.bases.iter().any(|(_, b)| dir.starts_with(b)) => {
                search_dir_files(&dir, kind == "all", &mut inputs)?;
                search_dir_files(&dir, false, &mut inputs)?;
            }
            _ => {}
        }
    }
    let mut outputs: Vec<String> = super::rust::kept_outputs(c, cwd)
        .iter()
        .map(|o| root_path(&o.path).ok_or_else(|| not_utf8(&o.path)))
        .collect::<std::io::Result<_>>()?;
    if let Some(d) = &r.own_depinfo {
        outputs.push(root_path(d).ok_or_else(|| not_utf8(d))?);
    }
    outputs.push(ROOT_FILE.into());
    let rustc = r.sysroot.join("bin/rustc");
    let mut arguments = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        SCRIPT.into(),
        "cachepot-remote".into(),
        root_arg(cwd.to_str().ok_or_else(|| not_utf8(cwd))?),
        root_arg(rustc.to_str().ok_or_else(|| not_utf8(&rustc))?),
    ];
    for a in r.args.iter().chain(p.extra_args.iter()) {
        let a = a.to_str().ok_or_else(|| not_utf8(Path::new(a)))?;
        arguments.push(root_arg(a));
    }
    let mut env: Vec<(String, String)> = vec![("PATH".into(), "/usr/bin:/bin".into())];
    for (k, v) in &p.env {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if DROPPED_ENV.contains(&k)
            || DROPPED_ENV_PREFIXES.iter().any(|pre| k.starts_with(pre))
            || env.iter().any(|(n, _)| n == k)
        {
            continue;
        }
        env.push((k.to_string(), v.to_string()));
    }
    let dirs = vec![root_path(cwd).ok_or_else(|| not_utf8(cwd))?];
    Ok(ActionSpec {
        arguments,
        env,
        inputs,
        dirs,
        outputs,
        timeout: ACTION_TIMEOUT,
    })
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
    fn absolute_paths_in_arguments_get_the_mark() {
        let m = MARK;
        assert_eq!(root_arg("/a/lib.rs"), format!("{m}/a/lib.rs"));
        assert_eq!(root_arg("src/lib.rs"), "src/lib.rs");
        assert_eq!(
            root_arg("serde=/t/libserde.rmeta"),
            format!("serde={m}/t/libserde.rmeta")
        );
        assert_eq!(
            root_arg("dependency=/t/deps"),
            format!("dependency={m}/t/deps")
        );
        assert_eq!(root_arg("-L/t/deps"), format!("-L{m}/t/deps"));
        assert_eq!(
            root_arg("--emit=dep-info=/t/a.d,link=/t/a.rlib"),
            format!("--emit=dep-info={m}/t/a.d,link={m}/t/a.rlib")
        );
        assert_eq!(
            root_arg(IDENTITY_REMAP),
            format!("--remap-path-prefix={m}/=/")
        );
        assert_eq!(root_arg("--cfg=feature=\"a/b\""), "--cfg=feature=\"a/b\"");
    }

    #[test]
    fn paths_map_into_the_root_and_are_cleaned() {
        assert_eq!(root_path(Path::new("/a/b/c.rs")).unwrap(), "a/b/c.rs");
        assert!(root_path(Path::new("a/b")).is_none());
        assert_eq!(
            clean(Path::new("/w/crate"), Path::new("../t/./x.rlib")),
            PathBuf::from("/w/t/x.rlib")
        );
    }

    #[test]
    fn the_worker_root_is_replaced_everywhere() {
        assert_eq!(
            replace_all(b"/r/x/a.rs: /r/x/b.rs\n", b"/r", b""),
            b"/x/a.rs: /x/b.rs\n"
        );
        assert_eq!(find(b"abc", b"bc"), Some(1));
        assert_eq!(find(b"abc", b""), None);
    }

    /// The script does what the table says, run by the real `sh`.
    #[test]
    fn the_script_roots_arguments_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("w/crate")).unwrap();
        let out = std::process::Command::new("/bin/sh")
            .current_dir(&root)
            .env_clear()
            .env("OUT_DIR", "/w/out")
            .env("OTHER", "/kept")
            .args(["-c", SCRIPT, "cachepot-remote"])
            .arg(root_arg("/w/crate"))
            .arg("/bin/sh")
            .args(["-c", "pwd; echo \"$1\"; echo $OUT_DIR $OTHER", "x"])
            .arg(root_arg("--extern=a=/w/a.rlib,b=/w/b.rlib"))
            .output()
            .unwrap();
        let r = root.display();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{r}/w/crate\n--extern=a={r}/w/a.rlib,b={r}/w/b.rlib\n{r}/w/out /kept\n")
        );
        assert_eq!(
            std::fs::read_to_string(root.join(ROOT_FILE)).unwrap(),
            r.to_string()
        );
    }
}
