//! The compiler wrapper: `cachepot /path/to/rustc ARGS…`.
//!
//! The compiler always runs in this process on a miss, so cargo's
//! jobserver, file descriptors, environment and working directory reach it
//! untouched. Any daemon problem means: run the compiler, log, go on.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use anyhow::{bail, Result};
use cachepot_daemon::protocol::{CompileRequest, Request, Response};

use crate::client;
use crate::config::{self, Config};
use crate::runtime::Paths;

/// Runs one compile through the cache and returns the exit code.
pub fn run(compiler: OsString, args: Vec<OsString>, start: Instant) -> i32 {
    let compiler = match real_compiler(compiler) {
        Ok(c) => c,
        Err(name) => {
            let name = name.to_string_lossy();
            eprintln!(
                "cachepot: {name} in PATH is cachepot itself and no other {name} follows it; \
                 put the directory of the real compiler after cachepot's links in PATH"
            );
            return 127;
        }
    };
    if is_query(&args) || config::env_flag(&config::NO_CACHE) {
        return exec_plain(&compiler, &args);
    }
    // A source read from standard input (`-`, as autocfg's probes do): read
    // it here, for the key and for the compiler.
    let stdin = if reads_stdin_source(&compiler, &args) {
        let mut buf = Vec::new();
        if let Err(e) = io::stdin().read_to_end(&mut buf) {
            eprintln!("cachepot: reading standard input: {e}");
            return 1;
        }
        Some(buf)
    } else {
        None
    };
    let stdin = stdin.as_deref();
    match through_daemon(&compiler, &args, start, stdin, Work::Compile) {
        Ok(code) => code,
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cache unavailable; compiling without it"
            );
            // A daemon that cannot start says why (bad settings): tell the build.
            if let Some(why) = e.downcast_ref::<client::DaemonStartFailed>() {
                eprintln!("cachepot: {why}; compiling without the cache");
            }
            run_plain(&compiler, &args, stdin)
        }
    }
}

/// Runs a build script through the cache (from its launcher) and returns
/// the exit code. Whatever fails on the cache's side, the script runs.
pub fn run_build_script(real: OsString, args: Vec<OsString>, start: Instant) -> i32 {
    if config::env_flag(&config::NO_CACHE) {
        return exec_plain(&real, &args);
    }
    match through_daemon(&real, &args, start, None, Work::BuildScript) {
        Ok(code) => code,
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "cache unavailable; running the build script without it"
            );
            exec_plain(&real, &args)
        }
    }
}

/// What the wrapper asks the daemon about.
#[derive(Clone, Copy)]
enum Work {
    Compile,
    BuildScript,
}

/// The compiler to run. A bare name is looked up in `PATH` as the shell
/// would, skipping cachepot itself: with a `gcc` link to cachepot first in
/// `PATH`, the real gcc is the next one. Err(name) when only cachepot is
/// found.
fn real_compiler(name: OsString) -> Result<OsString, OsString> {
    // By file identity, so a hard link named `gcc` is known too.
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let me = std::env::current_exe().ok().and_then(|p| id(&p));
    let is_me = |p: &Path| me.is_some() && id(p) == me;
    if name.as_bytes().contains(&b'/') {
        return if is_me(Path::new(&name)) {
            Err(name)
        } else {
            Ok(name)
        };
    }
    let Some(path) = std::env::var_os("PATH") else {
        return Ok(name);
    };
    let mut found_me = false;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(&name);
        if !candidate.is_file() {
            continue;
        }
        if !is_me(&candidate) {
            // The first hit keeps its bare name (what the shell would run).
            return Ok(if found_me {
                candidate.into_os_string()
            } else {
                name
            });
        }
        found_me = true;
    }
    if found_me {
        Err(name)
    } else {
        Ok(name)
    }
}

/// Whether a rustc compile takes its source from standard input: `-` as an
/// argument of its own, not the value of an option (`-o -`). C compilers
/// reading standard input are not cached, and keep their stdin untouched.
fn reads_stdin_source(compiler: &OsString, args: &[OsString]) -> bool {
    let name = Path::new(compiler)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !(name.starts_with("rustc") || name.starts_with("clippy-driver")) {
        return false;
    }
    args.iter().enumerate().any(|(i, a)| {
        a == "-"
            && !matches!(
                i.checked_sub(1).map(|p| args[p].to_string_lossy()),
                Some(prev) if prev == "-o" || prev == "--out-dir" || prev == "--emit"
            )
    })
}

/// Version and `--print` queries skip the daemon altogether.
fn is_query(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.as_bytes();
        matches!(a, b"-vV" | b"-V" | b"--version" | b"-Vv")
            || a.starts_with(b"--print")
            || a.starts_with(b"-print-")
            || a.starts_with(b"-dump")
    })
}

/// Result of talking to the daemon: an exit code once the compile is done.
fn through_daemon(
    compiler: &OsString,
    args: &[OsString],
    start: Instant,
    stdin: Option<&[u8]>,
    work: Work,
) -> Result<i32> {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            // Bad configuration: say what to fix, but never fail the build.
            eprintln!("cachepot: {e:#}; compiling without the cache");
            return Ok(run_plain(compiler, args, stdin));
        }
    };
    let paths = Paths::new(&config)?;
    let mut conn = client::connect_or_start(&paths)?;
    // The daemon may make this compile wait for the same unit compiled by
    // another build: never give up on it before it gives up waiting.
    // A compile on the remote engine may take as long as its time limit,
    // and one that runs here may first wait for a core as long.
    let remote = if config.reapi_execute {
        2 * cachepot_daemon::ACTION_TIMEOUT + config.remote_timeout
    } else {
        std::time::Duration::ZERO
    };
    conn.allow_replies_for(config.compile_wait + client::REPLY_TIMEOUT + remote)?;
    let cwd = std::env::current_dir()?;
    let req = CompileRequest {
        compiler: compiler.as_bytes().to_vec(),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        cwd: cwd.as_os_str().as_bytes().to_vec(),
        env: std::env::vars_os()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        ppid: std::os::unix::process::parent_id(),
        recache: config::env_flag(&config::RECACHE),
        stdin: stdin.map(<[u8]>::to_vec),
    };
    let request = match work {
        Work::Compile => Request::Compile(req),
        Work::BuildScript => Request::BuildScript(req),
    };
    match conn.call(&request)? {
        Response::Hit {
            exit_code,
            stdout,
            stderr,
        } => {
            replay(&stdout, &stderr)?;
            // The hit time statistics are of compiles.
            if matches!(work, Work::Compile) {
                let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = conn.send(&Request::HitTime { micros });
            }
            Ok(exit_code)
        }
        Response::Miss { extra_args } => {
            // The daemon may ask for a dependency file the cache needs.
            let mut full: Vec<OsString> = args.to_vec();
            full.extend(
                extra_args
                    .into_iter()
                    .map(|a| std::ffi::OsStr::from_bytes(&a).to_os_string()),
            );
            // From here on the compiler has run: never run it twice.
            let (status, captured) = match compile_captured(compiler, &full, stdin, true) {
                Ok(r) => r,
                // Not started at all: run it plainly.
                Err(e) => {
                    tracing::warn!(error = %e, "could not run the compiler with captured output");
                    return Ok(run_plain(compiler, args, stdin));
                }
            };
            // Output that could not be kept: reported as no exit code, so
            // nothing is stored.
            let (exit, stdout, stderr) = match captured {
                Some((out, err)) => (status.code(), out, err),
                None => (None, Vec::new(), Vec::new()),
            };
            let report = Request::Finished {
                exit_code: exit,
                stdout,
                stderr,
            };
            match conn.call(&report) {
                // CACHEPOT_VERIFY, a build script whose run differed from
                // its entry: once more, for the daemon to tell a script
                // whose runs differ from a wrong entry. Its output was
                // passed on already.
                Ok(Response::RunAgain) => {
                    let report = match compile_captured(compiler, &full, stdin, false) {
                        Ok((again, Some((stdout, stderr)))) => Request::Finished {
                            exit_code: again.code(),
                            stdout,
                            stderr,
                        },
                        _ => Request::Finished {
                            exit_code: None,
                            stdout: Vec::new(),
                            stderr: Vec::new(),
                        },
                    };
                    if let Err(e) = conn.call(&report) {
                        tracing::warn!(error = format!("{e:#}"), "could not report the second run");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "could not report the compile to the daemon"
                ),
            }
            Ok(exit_code(status))
        }
        // Run on the remote engine; the outputs are in place.
        Response::Ran {
            exit_code,
            stdout,
            stderr,
        } => {
            replay(&stdout, &stderr)?;
            Ok(exit_code)
        }
        Response::RunUncached => Ok(run_plain(compiler, args, stdin)),
        Response::Error(e) => bail!("daemon error: {e}"),
        other => bail!("unexpected daemon answer: {other:?}"),
    }
}

/// Writes a compile's output that ran elsewhere (a hit, the engine).
fn replay(stdout: &[u8], stderr: &[u8]) -> io::Result<()> {
    io::stdout().write_all(stdout)?;
    io::stdout().flush()?;
    io::stderr().write_all(stderr)
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(1))
}

/// Runs the compiler without the cache: replaces this process by it, or,
/// when standard input was already read, runs it with that input.
fn run_plain(compiler: &OsString, args: &[OsString], stdin: Option<&[u8]>) -> i32 {
    let Some(input) = stdin else {
        return exec_plain(compiler, args);
    };
    let run = || -> io::Result<ExitStatus> {
        let mut child = Command::new(compiler)
            .args(args)
            .stdin(Stdio::piped())
            .spawn()?;
        if let Some(mut pipe) = child.stdin.take() {
            // A compiler that stops reading early closes the pipe: fine.
            let _ = pipe.write_all(input);
        }
        child.wait()
    };
    match run() {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("cachepot: cannot run {}: {e}", compiler.to_string_lossy());
            127
        }
    }
}

/// Replaces this process by the compiler; returns only if that fails.
fn exec_plain(compiler: &OsString, args: &[OsString]) -> i32 {
    let err = Command::new(compiler).args(args).exec();
    eprintln!("cachepot: cannot run {}: {err}", compiler.to_string_lossy());
    127
}

/// A compile's stdout and stderr, as kept for the cache.
type Captured = (Vec<u8>, Vec<u8>);

/// Runs the compiler, passing its output through as it comes (cargo reads
/// artifact notifications from stderr while the compile runs) unless
/// `pass_on` is false, and keeping a copy for the cache.
fn compile_captured(
    compiler: &OsString,
    args: &[OsString],
    stdin: Option<&[u8]>,
    pass_on: bool,
) -> io::Result<(ExitStatus, Option<Captured>)> {
    let mut child = Command::new(compiler)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let sink = |w: Box<dyn Write + Send>| -> Box<dyn Write + Send> {
        if pass_on {
            w
        } else {
            Box::new(io::sink())
        }
    };
    let (to_out, to_err) = (sink(Box::new(io::stdout())), sink(Box::new(io::stderr())));
    let out = child
        .stdout
        .take()
        .map(|s| std::thread::spawn(move || tee(s, to_out)));
    let err = child
        .stderr
        .take()
        .map(|s| std::thread::spawn(move || tee(s, to_err)));
    // From here on the compiler runs: whatever fails, it is never run a
    // second time; a compile whose output could not be kept is not stored.
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "waiting for the compiler failed");
            return Ok((ExitStatus::from_raw(1 << 8), None));
        }
    };
    let join = |h: Option<std::thread::JoinHandle<io::Result<Vec<u8>>>>| -> Option<Vec<u8>> {
        match h {
            Some(h) => h.join().ok()?.ok(),
            None => Some(Vec::new()),
        }
    };
    let captured = join(out).zip(join(err));
    Ok((status, captured))
}

fn tee(mut from: impl Read, mut to: impl Write) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(kept),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        kept.extend_from_slice(&buf[..n]);
        // The build's output matters more than the copy: ignore a closed reader.
        let _ = to.write_all(&buf[..n]).and_then(|()| to.flush());
    }
}
