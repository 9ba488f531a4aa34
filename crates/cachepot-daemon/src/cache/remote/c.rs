//! The action of a gcc or clang miss (C and C++ objects).
//!
//! | input | what goes up |
//! |---|---|
//! | compiler | see `c_toolchain.rs`: the driver and its programs, their shared libraries but glibc's |
//! | sources | every file the preprocessor read here (`-M -v`, run once per miss) |
//! | what `__has_include` asks | every file of each name asked, in every directory of the search list and beside the file that asks: a file that exists here but was not read still answers "yes" there |
//! | clang's GCC installation | its `crtbegin.o`, by which clang recognises it (it gives the C++ standard library's headers) |
//! | arguments | as given, with the worker's root in front of the source, `-o`, `-I`, `-isystem`, `-iquote`, `-idirafter`, `-include`, `-imacros`, `-MF` and `-L` paths; then `--sysroot=$r` (system headers from the input root, never the worker's), `-ffile-prefix-map=$r/=/`, and for clang `-resource-dir` and `--gcc-toolchain` as found here, rooted; a dependency file is always asked for |
//! | environment | the compile's, without the wrapper's, the jobserver's and the session's variables and the locale's; `PATH=/usr/bin:/bin`; `LD_LIBRARY_PATH` rooted; `LC_ALL` `C` or `C.UTF-8` (see `c_args::worker_locale`) |
//! | refused (compiled here) | a file read with a time macro or `.incbin`, a `__has_include` form `probes.rs` cannot answer, a path through a link and `..` that names another file than its cleaned spelling, a clang configuration file |
//! | outputs | the object, and the dependency file (the user's or the cache's) |
//!
//! Neither compiler records `--sysroot`, a prefix map, clang's resource
//! directory or GCC installation in the object, so the object is the bytes
//! a local compile writes (the e2e tests compare them). Paths are spelled
//! on the worker as here (`/usr/bin/../lib/gcc/…` stays so), since debug
//! information names headers as the compiler spelled them.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use cachepot_compiler::c::{CCompile, ContentFlags, Family};
use cachepot_compiler::depinfo;
use cachepot_dist::{ActionSpec, Input};

use super::action::{action_env, clean, command, not_utf8, root_path, utf8_args, MARK};
use super::c_args::{root_args, worker_locale};
use super::c_toolchain::LIB_DIR;
use super::probes::{probes, Probe, PROBE_NAMES};
use super::{RemoteExec, Unsent, ACTION_TIMEOUT};
use crate::cache::c::CPending;
use crate::cache::Pending;

/// The dependency file of a compile that asked for none and is keyed by
/// its preprocessed text: read for the checks, not kept.
pub(super) const CHECK_DEPFILE: &str = ".cachepot-deps.d";

/// What the preprocessor read here, and the directories it searched, as
/// it named them (joined to the working directory, `..` kept).
struct Read {
    files: Vec<PathBuf>,
    search: Vec<PathBuf>,
    /// clang's GCC installation (`Selected GCC installation:`).
    gcc_installation: Option<PathBuf>,
    /// A clang configuration file it read (`Configuration file:`).
    config_file: Option<PathBuf>,
}

/// Runs the preprocessor with `-M -v`: the files the compile reads (from
/// the dependency list) and its search list (from `-v`).
fn preprocessor_reads(
    driver: &Path,
    c: &CCompile,
    cwd: &Path,
    env: &[(OsString, OsString)],
    depfile: &Path,
) -> std::io::Result<Read> {
    let mut args = c.preprocess_args();
    let input = args.pop().unwrap_or_default();
    args.pop(); // -E
    let out = Command::new(driver)
        .args(&args)
        .args(["-M", "-v", "-MF"])
        .arg(depfile)
        .arg(input)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()?;
    let text = std::fs::read(depfile);
    let _ = std::fs::remove_file(depfile);
    if !out.status.success() {
        return Err(std::io::Error::other("the preprocessor failed"));
    }
    let text = String::from_utf8_lossy(&text?).replace("$$", "$");
    let files = depinfo::parse(&text)
        .files
        .iter()
        .map(|f| cwd.join(f))
        .collect();
    let mut search = Vec::new();
    let mut gcc_installation = None;
    let mut config_file = None;
    let mut listing = false;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        if let Some(dir) = line.strip_prefix("Selected GCC installation: ") {
            gcc_installation = Some(PathBuf::from(dir));
        } else if let Some(file) = line.strip_prefix("Configuration file: ") {
            config_file = Some(PathBuf::from(file));
        } else if line.starts_with("#include ") && line.ends_with("search starts here:") {
            listing = true;
        } else if line == "End of search list." {
            listing = false;
        } else if listing {
            if let Some(dir) = line.strip_prefix(' ') {
                search.push(cwd.join(dir));
            }
        }
    }
    Ok(Read {
        files,
        search,
        gcc_installation,
        config_file,
    })
}

/// Every local file a probe may find on the worker: in each directory of
/// the search list and, for `"name"`, beside any file read (a macro that
/// probes is expanded in another file than the one defining it).
fn probe_hits(
    probe: &Probe,
    beside: &[PathBuf],
    search: &[PathBuf],
) -> Result<Vec<PathBuf>, Unsent> {
    if probe.name.starts_with('/') {
        return Err(not_portable(format!(
            "__has_include of an absolute path ({})",
            probe.name
        )));
    }
    let beside = beside.iter().filter(|_| probe.quoted);
    Ok(beside
        .chain(search.iter())
        .map(|d| d.join(&probe.name))
        .filter(|p| p.is_file())
        .collect())
}

/// Every probe the files read make, through the built-in names and the
/// aliases any of them defines (an alias of an alias too, a few deep).
fn all_probes(texts: &[Vec<u8>]) -> Result<Vec<Probe>, Unsent> {
    let mut names: Vec<String> = PROBE_NAMES.iter().map(|n| n.to_string()).collect();
    let mut scanned = 0;
    let mut found = Vec::new();
    for _ in 0..4 {
        let new = names[scanned..].to_vec();
        scanned = names.len();
        if new.is_empty() {
            return Ok(found);
        }
        for text in texts {
            let scan = probes(text, &new).map_err(not_portable)?;
            found.extend(scan.probes);
            for a in scan.aliases {
                if !names.contains(&a) {
                    names.push(a);
                }
            }
        }
    }
    if names.len() > scanned {
        return Err(not_portable("__has_include aliases too deep"));
    }
    Ok(found)
}

/// An error that keeps the compile here: the worker cannot match what it
/// reads.
fn not_portable(why: impl Into<String>) -> Unsent {
    Unsent::NotPortable(why.into())
}

/// A file the compiler reads through `path`: read here as the system
/// resolves it, placed where the worker resolves it. The input root has
/// no symbolic links, so there `dir/link/../x` is `dir/x`.
fn input_as_named(path: &Path) -> Result<Input, Unsent> {
    use std::os::unix::fs::PermissionsExt;
    let placed = clean(Path::new("/"), path);
    // `dir/link/../x` is another file than `dir/x` when `link` points
    // elsewhere: the worker would read the wrong one.
    if placed != path && std::fs::canonicalize(path)? != std::fs::canonicalize(&placed)? {
        return Err(not_portable(format!(
            "{} is not {}",
            path.display(),
            placed.display()
        )));
    }
    let meta = std::fs::metadata(path)?;
    Ok(Input {
        path: root_path(&placed).ok_or_else(|| not_utf8(path))?,
        local: path.to_path_buf(),
        executable: meta.permissions().mode() & 0o111 != 0,
    })
}

/// The directories a path spelled with `..` goes through (`/a/b/../c`:
/// `a/b`): they must exist in the input root for the worker to walk it.
fn dirs_before_dotdot(path: &Path, out: &mut Vec<String>) {
    let mut walked = PathBuf::new();
    for c in path.components() {
        if c == Component::ParentDir {
            if let Some(d) = root_path(&clean(Path::new("/"), &walked)).filter(|d| !d.is_empty()) {
                out.push(d);
            }
        }
        walked.push(c);
    }
}

/// `path` without its last `n` components, as spelled.
fn up(path: &Path, n: usize) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..n {
        if !p.pop() {
            return None;
        }
    }
    Some(p)
}

/// The action for a gcc or clang miss; `scratch` is a private path for
/// the local `-M` run's dependency list.
pub(super) fn c_action(
    remote: &RemoteExec,
    p: &Pending,
    cp: &CPending,
    scratch: &Path,
) -> Result<ActionSpec, Unsent> {
    let c = &cp.compile;
    let cwd = &p.cwd;
    let toolchain = remote.c_compiler(cp.family, &cp.compiler, cwd, &p.env)?;
    let mut inputs = toolchain.inputs.clone();
    let read = preprocessor_reads(&cp.compiler, c, cwd, &p.env, scratch)?;
    let mut dirs = vec![root_path(cwd).ok_or_else(|| not_utf8(cwd))?];
    dirs_before_dotdot(&toolchain.program, &mut dirs);
    let beside: Vec<PathBuf> = read
        .files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    let mut texts = Vec::with_capacity(read.files.len());
    for f in &read.files {
        inputs.push(input_as_named(f)?);
        dirs_before_dotdot(f, &mut dirs);
        let text = std::fs::read(f)?;
        let flags = ContentFlags::of(&text);
        if flags.time_macros || flags.incbin {
            // `__TIMESTAMP__` is the worker's file time; `.incbin` reads
            // the worker's file.
            return Err(not_portable(format!(
                "{}: a time macro or .incbin",
                f.display()
            )));
        }
        texts.push(text);
    }
    for probe in all_probes(&texts)? {
        for hit in probe_hits(&probe, &beside, &read.search)? {
            inputs.push(input_as_named(&hit)?);
            dirs_before_dotdot(&hit, &mut dirs);
        }
    }
    // Every directory searched exists there too (`-Wmissing-include-dirs`
    // warns about one that does not).
    for d in &read.search {
        dirs_before_dotdot(d, &mut dirs);
        dirs.push(root_path(&clean(Path::new("/"), d)).ok_or_else(|| not_utf8(d))?);
    }
    if let Some(config) = &read.config_file {
        return Err(not_portable(format!(
            "clang configuration file {}",
            config.display()
        )));
    }
    // clang: its GCC installation, found by `crtbegin.o` in
    // `<prefix>/lib/gcc/<triple>/<version>`, and named by its prefix.
    let mut extra = Vec::new();
    if let Some(dir) = &toolchain.resource_dir {
        extra.push(format!("-resource-dir={MARK}{}", dir.display()));
    }
    if let (Family::Clang, Some(gcc)) = (cp.family, &read.gcc_installation) {
        let prefix = up(gcc, 4).filter(|p| p.is_absolute());
        let prefix = prefix.ok_or_else(|| std::io::Error::other("GCC installation unknown"))?;
        let crt = gcc.join("crtbegin.o");
        if crt.is_file() {
            inputs.push(input_as_named(&crt)?);
        }
        dirs_before_dotdot(&gcc.join("x"), &mut dirs);
        extra.push(format!("--gcc-toolchain={MARK}{}", prefix.display()));
    }
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    for pair in inputs.windows(2) {
        if pair[0].path == pair[1].path && pair[0].local != pair[1].local {
            let same =
                std::fs::canonicalize(&pair[0].local)? == std::fs::canonicalize(&pair[1].local)?;
            if !same {
                return Err(not_portable(format!("two files at /{}", pair[0].path)));
            }
        }
    }
    inputs.dedup_by(|a, b| a.path == b.path);
    dirs.sort();
    dirs.dedup();
    // The compile's own outputs of an earlier build are not its inputs.
    let object = clean(cwd, Path::new(&c.output));
    inputs.retain(|i| i.local != object);

    let args = utf8_args(&cp.args, p)?;
    let mut rooted = root_args(&args, &c.input).ok_or_else(|| {
        std::io::Error::other("an argument names an absolute path that is not mapped")
    })?;
    rooted.push(format!("--sysroot={MARK}"));
    rooted.push(format!("-ffile-prefix-map={MARK}/=/"));
    rooted.extend(extra);
    if toolchain.no_default_config {
        // clang 16 and later read configuration files from the worker's
        // `/etc` and from beside the binary.
        rooted.push("--no-default-config".into());
    }
    if depfile(p, cp).is_none() {
        rooted.extend([
            "-MD".into(),
            "-MF".into(),
            format!("{MARK}/{CHECK_DEPFILE}"),
        ]);
    }
    let locale = worker_locale(&p.env).ok_or_else(|| not_portable("locale"))?;
    let mut env = action_env(
        p,
        &[
            ("LD_LIBRARY_PATH", &format!("/{LIB_DIR}")),
            ("LC_ALL", locale),
        ],
    );
    env.retain(|(k, _)| {
        !matches!(k.as_str(), "LANG" | "LANGUAGE") && !k.starts_with("LC_") || k == "LC_ALL"
    });
    Ok(ActionSpec {
        arguments: command(cwd, &toolchain.program, rooted)?,
        env,
        inputs,
        dirs,
        // The wanted outputs (see `remote::run`).
        outputs: Vec::new(),
        timeout: ACTION_TIMEOUT,
    })
}

/// The local path of the dependency file the compile writes: the cache's
/// own (direct mode) or the user's; `None` when it asked for none.
pub(super) fn depfile(p: &Pending, cp: &CPending) -> Option<PathBuf> {
    cp.own_depfile.clone().or_else(|| {
        cp.compile
            .depfile
            .as_ref()
            .map(|d| clean(&p.cwd, Path::new(d)))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_spelled_with_dotdot_keep_their_directories() {
        let mut dirs = Vec::new();
        let header = Path::new("/usr/bin/../lib/gcc/x/12/../../../../include/c++/12/vector");
        dirs_before_dotdot(header, &mut dirs);
        assert_eq!(
            dirs,
            [
                "usr/bin",
                "usr/lib/gcc/x/12",
                "usr/lib/gcc/x",
                "usr/lib/gcc",
                "usr/lib"
            ]
        );
        let installation = Path::new("/usr/bin/../lib/gcc/x86_64-linux-gnu/12");
        assert_eq!(up(installation, 4).unwrap(), Path::new("/usr/bin/.."));
        assert!(up(Path::new("/a"), 4).is_none());
    }

    #[test]
    fn a_probe_finds_every_file_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["a/x.h", "b/x.h", "src/x.h", "src/a.c"] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), "").unwrap();
        }
        let search = [d.join("a"), d.join("b"), d.join("c")];
        let quoted = Probe {
            name: "x.h".into(),
            quoted: true,
        };
        let beside = [d.join("src")];
        let hits = probe_hits(&quoted, &beside, &search).unwrap();
        assert_eq!(hits, [d.join("src/x.h"), d.join("a/x.h"), d.join("b/x.h")]);
        let angled = Probe {
            name: "x.h".into(),
            quoted: false,
        };
        let hits = probe_hits(&angled, &beside, &search).unwrap();
        assert_eq!(hits, [d.join("a/x.h"), d.join("b/x.h")]);
        let absolute = Probe {
            name: "/etc/x.h".into(),
            quoted: false,
        };
        assert!(probe_hits(&absolute, &beside, &search).is_err());
    }
}
