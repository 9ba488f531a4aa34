//! The action of a rustc miss: its input files, its command (the `sh`
//! preamble [`SCRIPT`] and the arguments with [`MARK`] where the worker's
//! root goes), its environment and its outputs (see the table in
//! `remote/mod.rs`).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use cachepot_compiler::key::env_value;
use cachepot_dist::{ActionSpec, Input};

use super::{RemoteExec, ACTION_TIMEOUT, IDENTITY_REMAP};
use crate::cache::rust::RustPending;
use crate::cache::Pending;

/// What stands for the worker's root in arguments, until [`SCRIPT`]
/// replaces it.
pub(super) const MARK: &str = "@CACHEPOT_ROOT@";

/// The output file that tells the worker's root.
pub(super) const ROOT_FILE: &str = ".cachepot-root";

/// The command of every action: `$1` is the working directory, then the
/// program and its arguments, all with [`MARK`] where the root goes.
pub(super) const SCRIPT: &str = r#"r=$(pwd -P) || exit 125
[ "$r" = / ] && r=
printf %s "$r" > .cachepot-root || exit 125
m=@CACHEPOT_ROOT@
for a; do
  while :; do case $a in *"$m"*) a="${a%%"$m"*}$r${a#*"$m"}";; *) break;; esac; done
  set -- "$@" "$a"; shift
done
for v in OUT_DIR CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH LD_LIBRARY_PATH; do
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

/// An action's environment: the compile's, without [`DROPPED_ENV`], with
/// `PATH=/usr/bin:/bin` and `extra` (before the compile's).
pub(super) fn action_env(p: &Pending, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![("PATH".into(), "/usr/bin:/bin".into())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
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
    env
}

/// How many files and bytes a package directory may bring.
pub(super) struct Budget {
    files: usize,
    bytes: u64,
}

impl Budget {
    pub(super) fn unlimited() -> Budget {
        Budget {
            files: usize::MAX,
            bytes: u64::MAX,
        }
    }
    pub(super) fn package() -> Budget {
        Budget {
            files: 20_000,
            bytes: 2 << 30,
        }
    }
}

/// `/a/b` as the input root's `a/b`; `None` for a path that is not
/// absolute, clean and UTF-8.
pub(super) fn root_path(p: &Path) -> Option<String> {
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
pub(super) fn clean(cwd: &Path, p: &Path) -> PathBuf {
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

pub(super) fn not_utf8(p: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{} is not an absolute UTF-8 path without `.` or `..`",
            p.display()
        ),
    )
}

pub(super) fn input_of(local: &Path) -> std::io::Result<Input> {
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
pub(super) fn walk(dir: &Path, out: &mut Vec<Input>, budget: &mut Budget) -> std::io::Result<()> {
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
                return Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!("{} holds too much to send", dir.display()),
                ));
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

/// Options whose value names files or directories: rooted. The value
/// follows as the next argument, after `=` (long), or attached (short).
const PATH_OPTIONS: &[&str] = &["-o", "--out-dir", "-L", "--extern", "--emit"];

/// `-C` options that only the linker reads (an rlib is not linked): their
/// paths are passed as they are.
const LINKER_ONLY: &[&str] = &["link-arg", "link-args", "linker", "link-self-contained"];

/// `v` with [`MARK`] in front when it is an absolute path.
pub(super) fn root_one(v: &str) -> String {
    if v.starts_with('/') {
        format!("{MARK}{v}")
    } else {
        v.to_string()
    }
}

/// The command of an action: `/bin/sh -c` [`SCRIPT`] with the working
/// directory and the program, rooted, then `args`.
pub(super) fn command(
    cwd: &Path,
    program: &Path,
    args: Vec<String>,
) -> std::io::Result<Vec<String>> {
    let rooted = |p: &Path| p.to_str().map(root_one).ok_or_else(|| not_utf8(p));
    let mut out = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        SCRIPT.into(),
        "cachepot-remote".into(),
        rooted(cwd)?,
        rooted(program)?,
    ];
    out.extend(args);
    Ok(out)
}

/// A compile's arguments as the wrapper got them and those the cache
/// adds, as UTF-8.
pub(super) fn utf8_args<'a>(args: &'a [OsString], p: &'a Pending) -> std::io::Result<Vec<&'a str>> {
    args.iter()
        .chain(p.extra_args.iter())
        .map(|a| a.to_str().ok_or_else(|| not_utf8(Path::new(a))))
        .collect()
}

/// A path option's value with [`MARK`] in front of its absolute paths:
/// `/p`, `kind=/p` (`-L`), `name=/p` (`--extern`), `k=/p,k=/q` (`--emit`).
fn root_value(value: &str) -> String {
    value
        .split(',')
        .map(|part| match part.split_once('=') {
            Some((k, v)) if v.starts_with('/') => format!("{k}={MARK}{v}"),
            _ if part.starts_with('/') => format!("{MARK}{part}"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether an argument names an absolute path.
fn names_absolute(arg: &str) -> bool {
    arg.starts_with('/') || arg.contains("=/")
}

/// The arguments with [`MARK`] in front of the absolute paths rustc
/// reads or writes: the crate root (`input`), and the values of
/// [`PATH_OPTIONS`]. Of [`IDENTITY_REMAP`], only the path it maps from.
/// `None` when another argument names an absolute path (a profile, a
/// codegen backend): the compile stays here.
pub(super) fn root_args(args: &[&str], input: &str) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if a == IDENTITY_REMAP {
            out.push(format!("--remap-path-prefix={MARK}/=/"));
        } else if PATH_OPTIONS.contains(&a) {
            out.push(a.to_string());
            if let Some(v) = args.get(i) {
                out.push(root_value(v));
                i += 1;
            }
        } else if let Some((flag, v)) = a
            .split_once('=')
            .filter(|(f, _)| f.starts_with("--") && PATH_OPTIONS.contains(f))
        {
            out.push(format!("{flag}={}", root_value(v)));
        } else if let Some(v) = ["-L", "-o"]
            .iter()
            .find_map(|f| a.strip_prefix(f).filter(|v| !v.is_empty()).map(|v| (f, v)))
        {
            out.push(format!("{}{}", v.0, root_value(v.1)));
        } else if a == input {
            out.push(root_value(a));
        } else if a == "-C" || a == "--codegen" {
            let v = args.get(i).copied().unwrap_or_default();
            i += 1;
            let name = v.split('=').next().unwrap_or_default();
            if names_absolute(v) && !LINKER_ONLY.contains(&name) {
                return None;
            }
            out.push(a.to_string());
            out.push(v.to_string());
        } else if let Some(v) = a.strip_prefix("-C").filter(|v| !v.is_empty()) {
            let name = v.split('=').next().unwrap_or_default();
            if names_absolute(v) && !LINKER_ONLY.contains(&name) {
                return None;
            }
            out.push(a.to_string());
        } else if names_absolute(a) {
            return None;
        } else {
            out.push(a.to_string());
        }
    }
    Some(out)
}

/// The action for a rustc miss.
pub(super) fn rust_action(
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
        // A package too large to send is not walked again.
        if remote.too_large(&dir) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("{} holds too much to send", dir.display()),
            ));
        }
        if let Err(e) = walk(&dir, &mut inputs, &mut budget) {
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                remote.remember_too_large(dir);
            }
            return Err(e);
        }
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
    // The compile's own outputs of an earlier build are not its inputs.
    let own = crate::cache::rust::kept_outputs(c, cwd);
    inputs.retain(|i| !own.iter().any(|o| o.path == i.local));
    let args = utf8_args(&r.args, p)?;
    let rooted = root_args(&args, &c.input).ok_or_else(|| {
        std::io::Error::other("an argument names an absolute path that is not mapped")
    })?;
    Ok(ActionSpec {
        arguments: command(cwd, &r.sysroot.join("bin/rustc"), rooted)?,
        env: action_env(p, &[]),
        inputs,
        dirs: vec![root_path(cwd).ok_or_else(|| not_utf8(cwd))?],
        // The wanted outputs (see `remote::run`).
        outputs: Vec::new(),
        timeout: ACTION_TIMEOUT,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_rustc_reads_get_the_mark_and_nothing_else() {
        let m = MARK;
        let args = [
            "--crate-name",
            "x",
            "/r/x/src/lib.rs",
            "--extern",
            "serde=/t/libserde.rmeta",
            "--extern",
            "alloc",
            "-L",
            "dependency=/t/deps",
            "-L/t/native",
            "--out-dir=/t/deps",
            "-o/t/deps/x.rlib",
            "--emit=dep-info=/t/a.d,link=/t/a.rlib",
            "--cfg",
            "k=\"a,/b\"",
            "-C",
            "link-arg=-Wl,-rpath=/opt/lib",
            "-Clinker=/usr/bin/cc",
            IDENTITY_REMAP,
        ];
        let rooted = root_args(&args, "/r/x/src/lib.rs").unwrap();
        let expected = [
            "--crate-name".to_string(),
            "x".into(),
            format!("{m}/r/x/src/lib.rs"),
            "--extern".into(),
            format!("serde={m}/t/libserde.rmeta"),
            "--extern".into(),
            "alloc".into(),
            "-L".into(),
            format!("dependency={m}/t/deps"),
            format!("-L{m}/t/native"),
            format!("--out-dir={m}/t/deps"),
            format!("-o{m}/t/deps/x.rlib"),
            format!("--emit=dep-info={m}/t/a.d,link={m}/t/a.rlib"),
            "--cfg".into(),
            "k=\"a,/b\"".into(),
            "-C".into(),
            "link-arg=-Wl,-rpath=/opt/lib".into(),
            "-Clinker=/usr/bin/cc".into(),
            format!("--remap-path-prefix={m}/=/"),
        ];
        assert_eq!(rooted, expected);
        // A relative crate root stays relative (the working directory is
        // rooted); a file read through another option keeps it here.
        assert_eq!(
            root_args(&["src/lib.rs"], "src/lib.rs").unwrap(),
            ["src/lib.rs"]
        );
        assert!(root_args(&["-C", "profile-use=/p.profdata"], "x.rs").is_none());
        assert!(root_args(&["-Cprofile-use=/p.profdata"], "x.rs").is_none());
        assert!(root_args(&["-Z", "codegen-backend=/b.so"], "x.rs").is_none());
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
            .arg(root_value("/w/crate"))
            .arg("/bin/sh")
            .args(["-c", "pwd; echo \"$1\"; echo $OUT_DIR $OTHER", "x"])
            .arg(root_args(&["--extern=a=/w/a.rlib,b=/w/b.rlib"], "").unwrap()[0].clone())
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
