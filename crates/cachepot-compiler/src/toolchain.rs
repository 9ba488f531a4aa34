//! Toolchain identity: what a rustc binary is, found by asking it once.
//!
//! The caller memoises the result (by the binary's path, size and mtime,
//! and the rustup toolchain selection), so a build pays for this once.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

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

/// How long a compiler or linker may take to answer a question about
/// itself (`-vV`, `--print sysroot`, `-E -dM`, `--version`, …). A first
/// answer from a rustup proxy installing nothing takes well under a second.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `program` with `args` and returns its stdout; an error when it
/// fails, or does not finish within [`PROBE_TIMEOUT`] (then it is killed).
pub(crate) fn run(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    env: &[(OsString, OsString)],
) -> Result<String, ToolchainError> {
    run_limited(program, args, cwd, env, PROBE_TIMEOUT).map(|(stdout, _)| stdout)
}

/// Runs `program` with `args` and returns its stdout and stderr; an error
/// when it fails, or does not finish within `limit` (then it is killed).
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
    // Both pipes are drained while the program runs, so a chatty one
    // never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = match child.wait_timeout(limit).map_err(spawn_error)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            // The readers end once every holder of the pipes is gone; a
            // grandchild that keeps them is not waited for.
            return Err(ToolchainError::Timeout {
                program: program.to_path_buf(),
                args: args.join(" "),
                limit,
            });
        }
    };
    let text = |reader: std::thread::JoinHandle<Vec<u8>>| {
        String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned()
    };
    let (stdout, stderr) = (text(stdout), text(stderr));
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

    fn path_env() -> Vec<(OsString, OsString)> {
        vec![(OsString::from("PATH"), std::env::var_os("PATH").unwrap())]
    }

    #[test]
    fn a_probe_that_hangs_is_killed_at_its_limit() {
        let started = std::time::Instant::now();
        let r = run_limited(
            Path::new("/bin/sh"),
            &["-c", "sleep 30"],
            Path::new("/"),
            &path_env(),
            Duration::from_millis(300),
        );
        assert!(matches!(r, Err(ToolchainError::Timeout { .. })), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_probe_answers_with_its_stdout_or_its_failure() {
        let env = path_env();
        // More than a pipe's buffer on both streams: neither may block.
        let script = "head -c 200000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero >&2; echo";
        let out = run_limited(
            Path::new("/bin/sh"),
            &["-c", script],
            Path::new("/"),
            &env,
            PROBE_TIMEOUT,
        )
        .unwrap()
        .0;
        assert_eq!(out.trim_end().len(), 200_000);
        let r = run_limited(
            Path::new("/bin/sh"),
            &["-c", "echo no >&2; exit 3"],
            Path::new("/"),
            &env,
            PROBE_TIMEOUT,
        );
        match r {
            Err(ToolchainError::Unexpected { output, .. }) => assert_eq!(output.trim(), "no"),
            other => panic!("{other:?}"),
        }
    }
}
