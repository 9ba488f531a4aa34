//! The files of a C compiler that go up with every action, listed once
//! per driver.
//!
//! | compiler | what goes up |
//! |---|---|
//! | gcc | the driver (see [`CompilerFiles::program`]); `cc1` and `cc1plus` where the driver finds them; the assembler beside them (the driver looks there before `PATH`); `specs` when there is one |
//! | clang | the driver (one binary: it runs itself as `-cc1`, and assembles with its integrated assembler); its resource directory is named on the command line, and only the headers read go up |
//! | both | the shared libraries `ldd` lists for those programs, but glibc's (the worker's own, as for `sh`), in [`LIB_DIR`], which `LD_LIBRARY_PATH` names |

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cachepot_compiler::c::Family;
use cachepot_compiler::key::env_value;
use cachepot_dist::Input;

use super::action::{input_of, not_utf8, root_path};
use crate::memo::resolve_program;

/// Where the toolchain's shared libraries go in the input root.
pub(super) const LIB_DIR: &str = ".cachepot-lib";

/// glibc's libraries: the worker's own are used.
const GLIBC: &[&str] = &[
    "libc.so",
    "libm.so",
    "libmvec.so",
    "ld-linux",
    "libpthread.so",
    "libdl.so",
    "librt.so",
    "libutil.so",
    "libresolv.so",
    "libanl.so",
    "libnsl.so",
    "libthread_db.so",
];

/// A C compiler's files.
pub(super) struct CompilerFiles {
    /// The path the action runs the driver by: the one it was run by here
    /// (its name picks gcc's or g++'s, clang's or clang++'s behaviour and
    /// messages), as a plain file. gcc finds `cc1` relative to its real
    /// directory, so a gcc driver whose link points elsewhere runs by its
    /// real path.
    pub program: PathBuf,
    /// Every file, placed in the input root.
    pub inputs: Vec<Input>,
    /// clang's resource directory (its own headers), named on the
    /// worker's command line: clang would look beside its real path.
    pub resource_dir: Option<PathBuf>,
    /// clang 16 or later: it reads configuration files by default, and
    /// `--no-default-config` keeps the worker's out.
    pub no_default_config: bool,
    /// The real binary's identity when listed: another one (an
    /// `update-alternatives`, an upgrade in place) is listed again.
    pub stamp: Option<Stamp>,
}

/// A file's identity: device, inode, size and modification time.
pub(super) type Stamp = (u64, u64, u64, i64, i64);

/// The stamp of the binary `driver` runs.
pub(super) fn stamp(driver: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(driver).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// Runs `driver ARG` and returns its output, trimmed.
fn ask(
    driver: &Path,
    arg: &str,
    cwd: &Path,
    env: &[(OsString, OsString)],
) -> std::io::Result<String> {
    let out = Command::new(driver)
        .arg(arg)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{} {arg} failed",
            driver.display()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The shared libraries `ldd` lists for `binary`, but glibc's.
fn libraries(binary: &Path) -> std::io::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" => ").map(|(_, r)| r))
        .filter_map(|r| r.split(" (").next())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !GLIBC.iter().any(|g| name.starts_with(g))
        })
        .collect())
}

/// `local`'s content at `path` in the input root.
fn placed(path: &Path, local: &Path) -> std::io::Result<Input> {
    let mut i = input_of(local)?;
    i.path = root_path(path).ok_or_else(|| not_utf8(path))?;
    Ok(i)
}

impl CompilerFiles {
    /// Lists the files of the compiler that `driver` (as found in `PATH`)
    /// runs.
    pub(super) fn find(
        family: Family,
        driver: &Path,
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> std::io::Result<CompilerFiles> {
        let real = std::fs::canonicalize(driver)?;
        let program = if family == Family::Clang || driver.parent() == real.parent() {
            driver.to_path_buf()
        } else {
            real.clone()
        };
        let mut inputs = vec![placed(&program, &real)?];
        let mut programs = vec![real];
        let mut resource_dir = None;
        let mut no_default_config = false;
        let listed = stamp(driver);
        match family {
            Family::Gcc => {
                let mut libexec = None;
                for name in ["cc1", "cc1plus"] {
                    let p =
                        PathBuf::from(ask(driver, &format!("-print-prog-name={name}"), cwd, env)?);
                    if p.is_absolute() && p.is_file() {
                        libexec = p.parent().map(Path::to_path_buf);
                        inputs.push(input_of(&p)?);
                        programs.push(p);
                    }
                }
                let libexec =
                    libexec.ok_or_else(|| std::io::Error::other("the driver names no cc1"))?;
                let name = ask(driver, "-print-prog-name=as", cwd, env)?;
                let assembler = if Path::new(&name).is_absolute() {
                    PathBuf::from(name)
                } else {
                    resolve_program(Path::new(&name), cwd, env_value(env, "PATH").as_ref())
                        .ok_or_else(|| std::io::Error::other("no assembler in PATH"))?
                };
                let assembler = std::fs::canonicalize(assembler)?;
                inputs.push(placed(&libexec.join("as"), &assembler)?);
                programs.push(assembler);
                let specs = PathBuf::from(ask(driver, "-print-file-name=specs", cwd, env)?);
                if specs.is_absolute() && specs.is_file() {
                    inputs.push(input_of(&specs)?);
                }
            }
            Family::Clang => {
                let dir = PathBuf::from(ask(driver, "-print-resource-dir", cwd, env)?);
                if !dir.is_absolute() {
                    return Err(std::io::Error::other("no resource directory"));
                }
                resource_dir = Some(dir);
                let version = ask(driver, "-dumpversion", cwd, env)?;
                let major = version
                    .split('.')
                    .next()
                    .and_then(|m| m.parse::<u32>().ok());
                no_default_config = major.is_some_and(|m| m >= 16);
            }
        }
        for p in &programs {
            for lib in libraries(p)? {
                let Some(name) = lib.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    continue;
                };
                let path = format!("{LIB_DIR}/{name}");
                if !inputs.iter().any(|i| i.path == path) {
                    let mut i = input_of(&lib)?;
                    i.path = path;
                    inputs.push(i);
                }
            }
        }
        Ok(CompilerFiles {
            program,
            inputs,
            resource_dir,
            no_default_config,
            stamp: listed,
        })
    }
}

/// One listing per driver.
pub(super) type CompilerFilesByDriver =
    std::collections::HashMap<PathBuf, std::sync::Arc<CompilerFiles>>;
