//! The linker a linked crate (binary, test, proc-macro, dylib, cdylib)
//! goes through, identified by content.
//!
//! rustc runs `-C linker` (default `cc`), which runs `ld` and adds the C
//! runtime's start files and libraries of its own. The identity covers the
//! driver binary and its version, the `ld` it runs (or the one chosen with
//! `-fuse-ld=`), and the start files and static runtime libraries it adds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::digest::{digest_file, Digest};
use crate::key::{env_value, KeyBuilder};
use crate::toolchain::{find_program, ToolchainError};

/// Files the C driver links into every binary, found with
/// `-print-file-name=`.
const RUNTIME_FILES: [&str; 9] = [
    "crt1.o",
    "Scrt1.o",
    "crti.o",
    "crtn.o",
    "crtbeginS.o",
    "crtendS.o",
    "libgcc.a",
    "libgcc_eh.a",
    "libc_nonshared.a",
];

/// The linker program a compile uses: `-C linker`, else `cc`.
pub fn linker_program(linker: Option<&str>) -> &str {
    linker.unwrap_or("cc")
}

/// The `-fuse-ld=` value among the link arguments, if any (`-Wl,` forms
/// are the linker's own options, not this).
pub fn fuse_ld(link_args: &[String]) -> Option<&str> {
    link_args
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("-fuse-ld="))
}

/// What the linker prints for `args`, when it succeeds.
fn run(program: &Path, args: &[&str], cwd: &Path, env: &[(OsString, OsString)]) -> Option<String> {
    crate::toolchain::run(program, args, cwd, env).ok()
}

/// What the linker prints for each single-argument question, asked all at
/// once, in the order asked.
fn ask_all<const N: usize>(
    program: &Path,
    questions: [&str; N],
    cwd: &Path,
    env: &[(OsString, OsString)],
) -> [Option<String>; N] {
    std::thread::scope(|s| {
        let asked = questions.map(|q| s.spawn(move || run(program, &[q], cwd, env)));
        asked.map(|h| h.join().ok().flatten())
    })
}

/// Finds a program by name (or path) in the compile's `PATH`.
fn which(name: &str, cwd: &Path, env: &[(OsString, OsString)]) -> Option<PathBuf> {
    find_program(Path::new(name), cwd, env_value(env, "PATH").as_ref()).filter(|p| p.is_file())
}

/// Identifies the linker at `linker` (already found in `PATH`).
pub fn linker_identity(
    linker: &Path,
    fuse_ld: Option<&str>,
    cwd: &Path,
    env: &[(OsString, OsString)],
) -> Result<Digest, ToolchainError> {
    let binary = std::fs::canonicalize(linker).unwrap_or_else(|_| linker.to_path_buf());
    let digest = digest_file(&binary).map_err(|source| ToolchainError::Spawn {
        program: binary.clone(),
        args: "(reading the linker)".into(),
        source,
    })?;
    let mut k = KeyBuilder::new("linker");
    k.add_digest("binary", &digest);
    // The questions of each round run at once: each is a process of its
    // own (a dozen in all), and the first linked crate of a build waits.
    let [version, is_driver] = ask_all(linker, ["--version", "-print-prog-name=ld"], cwd, env);
    k.add("version", version.unwrap_or_default().as_bytes());
    // A C driver (gcc, clang): the ld it runs and the runtime it adds.
    if let Some(ld) = is_driver {
        let ld_name = match fuse_ld {
            Some(v) if v.contains('/') => v.to_string(),
            Some(v) => format!("ld.{v}"),
            None => ld.trim().to_string(),
        };
        match which(&ld_name, cwd, env) {
            Some(path) => {
                let real = std::fs::canonicalize(&path).unwrap_or(path);
                let d = digest_file(&real).map_err(|source| ToolchainError::Spawn {
                    program: real.clone(),
                    args: "(reading ld)".into(),
                    source,
                })?;
                k.add_digest("ld", &d);
            }
            None => k.add("ld", ld_name.as_bytes()),
        }
        let questions = RUNTIME_FILES.map(|f| format!("-print-file-name={f}"));
        let answers = ask_all(linker, questions.each_ref().map(String::as_str), cwd, env);
        for (f, found) in RUNTIME_FILES.iter().zip(answers) {
            let Some(found) = found else {
                continue;
            };
            let path = PathBuf::from(found.trim());
            if path.is_absolute() && path.is_file() {
                if let Ok(d) = digest_file(&path) {
                    k.add_digest(&format!("runtime:{f}"), &d);
                }
            }
        }
    }
    Ok(k.finish().digest)
}
