//! Toolchain identity: what a rustc binary is, found by asking it once.
//!
//! The caller memoises the result (by the binary's path, size and mtime,
//! and the rustup toolchain selection), so a build pays for this once.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::digest::{Digest, FileDigester};

/// Why a toolchain could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    /// Running the compiler failed.
    #[error("running {program} {args}: {source}")]
    Spawn {
        /// The compiler.
        program: PathBuf,
        /// Its arguments.
        args: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The compiler ran but did not answer as rustc does.
    #[error("{program} {args} answered unexpectedly: {output}")]
    Unexpected {
        /// The compiler.
        program: PathBuf,
        /// Its arguments.
        args: String,
        /// What it printed.
        output: String,
    },
    /// The compiler did not answer within the time limit (it was killed).
    #[error("{program} {args} did not answer within {limit:?}")]
    Timeout {
        /// The compiler.
        program: PathBuf,
        /// Its arguments.
        args: String,
        /// The limit.
        limit: Duration,
    },
    /// A file of the sysroot could not be read.
    #[error("reading the sysroot {path}: {source}")]
    Sysroot {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A rustc toolchain, identified.
#[derive(Clone, Debug)]
pub struct RustToolchain {
    /// `rustc -vV` output.
    pub version: String,
    /// The host triple.
    pub host: String,
    /// The sysroot.
    pub sysroot: PathBuf,
    /// The real compiler binary (rustc or clippy-driver) inside the sysroot
    /// (rustup proxies resolve to it).
    pub rustc: PathBuf,
}

/// Finds a program the way a shell would: a path with a directory part is
/// taken relative to `cwd`, a bare name is looked up in `path_var` (the
/// compile's `PATH`).
pub fn find_program(program: &Path, cwd: &Path, path_var: Option<&OsString>) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(cwd.join(program));
    }
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .map(|d| cwd.join(d).join(program))
        .find(|p| p.is_file())
}

pub(crate) fn run(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    env: &[(OsString, OsString)],
) -> Result<String, ToolchainError> {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|source| ToolchainError::Spawn {
            program: program.to_path_buf(),
            args: args.join(" "),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(ToolchainError::Unexpected {
            program: program.to_path_buf(),
            args: args.join(" "),
            output: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(text)
}

/// Runs `program` with `args` and returns its standard output and error,
/// or kills it when it has not finished (closed both) within `limit`.
/// A failing exit status is an error, as in [`run`].
pub(crate) fn run_limited(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    env: &[(OsString, OsString)],
    limit: Duration,
) -> Result<(String, String), ToolchainError> {
    let spawn_error = |source| ToolchainError::Spawn {
        program: program.to_path_buf(),
        args: args.join(" "),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Each pipe is read to its end on a thread of its own; the ends come
    // when the program exits (or is killed), whatever it writes meanwhile.
    let (tx, rx) = mpsc::channel();
    let pipes: [Option<Box<dyn std::io::Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ];
    for (i, pipe) in pipes.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            let _ = tx.send((i, text));
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + limit;
    let mut outputs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, text)) => outputs[i] = text,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ToolchainError::Timeout {
                    program: program.to_path_buf(),
                    args: args.join(" "),
                    limit,
                });
            }
        }
    }
    let status = child.wait().map_err(spawn_error)?;
    let [stdout, stderr] = outputs.map(|o| String::from_utf8_lossy(&o).into_owned());
    if !status.success() {
        return Err(ToolchainError::Unexpected {
            program: program.to_path_buf(),
            args: args.join(" "),
            output: format!("{stdout}{stderr}"),
        });
    }
    Ok((stdout, stderr))
}

impl RustToolchain {
    /// Asks `rustc` (or a rustup proxy for it) what it is, in the compile's
    /// working directory and environment so rustup picks the same toolchain.
    pub fn probe(
        rustc: &Path,
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> Result<RustToolchain, ToolchainError> {
        // Both questions at once: a build's first compile waits for them.
        let (version, sysroot) = std::thread::scope(|s| {
            let sysroot = s.spawn(|| run(rustc, &["--print", "sysroot"], cwd, env));
            let version = run(rustc, &["-vV"], cwd, env);
            (version, sysroot.join())
        });
        let version = version?;
        let host = version
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .map(str::to_string)
            .ok_or_else(|| ToolchainError::Unexpected {
                program: rustc.to_path_buf(),
                args: "-vV".into(),
                output: version.clone(),
            })?;
        let sysroot = sysroot.map_err(|_| ToolchainError::Unexpected {
            program: rustc.to_path_buf(),
            args: "--print sysroot".into(),
            output: "the question's thread panicked".into(),
        })??;
        let sysroot = PathBuf::from(sysroot.trim());
        // A rustup proxy named `rustc` or `clippy-driver` runs the binary
        // of that name in the toolchain it selects.
        let name = rustc.file_name().unwrap_or_default();
        let real = sysroot.join("bin").join(name);
        let rustc = if real.is_file() {
            real
        } else {
            rustc.to_path_buf()
        };
        Ok(RustToolchain {
            version,
            host,
            sysroot,
            rustc,
        })
    }

    /// The identity of this toolchain compiling for `target` (the host when
    /// `None`): its `-vV` answer, the digest of the compiler binary itself
    /// (clippy-driver answers `-vV` exactly as rustc does), and the digest
    /// of every file in the target's library directory. A missing directory (a target not
    /// installed) is hashed as missing; rustc will fail on its own.
    /// Files are read through `digester` (the daemon memoises them).
    pub fn identity(
        &self,
        target: Option<&str>,
        digester: &dyn FileDigester,
    ) -> Result<Digest, ToolchainError> {
        let target = target.unwrap_or(&self.host);
        let dir = self
            .sysroot
            .join("lib")
            .join("rustlib")
            .join(target)
            .join("lib");
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.version.as_bytes());
        hasher.update(target.as_bytes());
        let driver = digester
            .digest(&self.rustc)
            .map_err(|source| ToolchainError::Sysroot {
                path: self.rustc.clone(),
                source,
            })?;
        hasher.update(
            self.rustc
                .file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(&driver.0);
        let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(ToolchainError::Sysroot { path: dir, source }),
        };
        names.sort();
        for p in names.iter().filter(|p| p.is_file()) {
            let d = digester
                .digest(p)
                .map_err(|source| ToolchainError::Sysroot {
                    path: p.clone(),
                    source,
                })?;
            hasher.update(
                p.file_name()
                    .map(|n| n.as_encoded_bytes())
                    .unwrap_or_default(),
            );
            hasher.update(&d.0);
        }
        Ok(Digest(*hasher.finalize().as_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod find_tests {
    use super::*;

    #[test]
    fn a_program_that_does_not_answer_in_time_is_killed() {
        let started = std::time::Instant::now();
        let env: Vec<(OsString, OsString)> =
            std::env::vars_os().filter(|(k, _)| k == "PATH").collect();
        let err = run_limited(
            Path::new("sleep"),
            &["60"],
            Path::new("/"),
            &env,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, ToolchainError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
        let (out, _) = run_limited(
            Path::new("echo"),
            &["hi"],
            Path::new("/"),
            &env,
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(out, "hi\n");
    }

    #[test]
    fn programs_resolve_through_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rustc"), "").unwrap();
        let path = OsString::from(format!("/nonexistent:{}", dir.path().display()));
        assert_eq!(
            find_program(Path::new("rustc"), Path::new("/"), Some(&path)),
            Some(dir.path().join("rustc"))
        );
        assert_eq!(
            find_program(Path::new("./x/rustc"), Path::new("/w"), None),
            Some(PathBuf::from("/w/./x/rustc"))
        );
    }
}
