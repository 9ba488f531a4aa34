//! One compile or build-script run on a connection: the lookup's answer,
//! a miss run on the engine or by the wrapper, and what is stored after.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::cache::{self, Compile, Lookup};
use crate::protocol::{read_frame, write_frame, CompileRequest, Request, Response};
use crate::server::{Background, Server};
use crate::stats::Event;

/// What a wrapper asks to be looked up.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Compile,
    BuildScript,
}

/// Looks a compile or a build script's run up and answers: a hit, a miss
/// run on the engine, or a miss for the wrapper to run (then waits for
/// its report). Misses' results are stored.
pub(crate) fn serve_work(
    server: &Server,
    stream: &mut UnixStream,
    req: CompileRequest,
    kind: Kind,
) -> io::Result<()> {
    let shared = &server.shared;
    let ppid = req.ppid;
    let compile = Compile::from_request(req);
    let lookup = match kind {
        Kind::Compile => cache::lookup(shared, &compile),
        Kind::BuildScript => cache::lookup_script(shared, &compile),
    };
    if let Some(w) = shared.warnings.take_for(ppid) {
        write_frame(stream, &Response::Warning(w))?;
    }
    let resp = match lookup {
        Lookup::NotACompile | Lookup::Uncacheable => Response::RunUncached,
        Lookup::Hit(r) => Response::Hit {
            exit_code: r.exit_code,
            stdout: r.stdout,
            stderr: r.stderr,
        },
        Lookup::Miss(mut pending) => {
            // Why it missed, worked out in the background (a hit run
            // again for verifying did not miss).
            if pending.verify.is_none() {
                let (unit, cwd, bases, env) = pending.explain_parts();
                let s = shared.clone();
                server.queue_write(
                    Background::Explain,
                    Box::new(move || crate::explain::explain_miss(&s, &unit, &cwd, &bases, &env)),
                );
            }
            if let Some(ran) = cache::run_remote(shared, &pending, &|| wrapper_waits(stream)) {
                conclude(
                    server,
                    &mut pending,
                    Some(ran.exit_code),
                    &ran.stdout,
                    &ran.stderr,
                );
                return write_frame(
                    stream,
                    &Response::Ran {
                        exit_code: ran.exit_code,
                        stdout: ran.stdout,
                        stderr: ran.stderr,
                    },
                );
            }
            // Compiles that run here wait for a core when remote
            // execution lets cargo start many (see `slots`).
            let _slot = match kind {
                Kind::Compile => shared.local_slots.as_ref().map(|s| s.take()),
                Kind::BuildScript => None,
            };
            let extra_args = pending
                .extra_args
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect();
            if let Err(e) = write_frame(stream, &Response::Miss { extra_args }) {
                pending.cleanup();
                return Err(e);
            }
            return finish_miss(server, stream, *pending);
        }
    };
    write_frame(stream, &resp)
}

/// Whether the wrapper is still there: its end of the socket is open and
/// it sent nothing (it waits for the answer). Anything to read means it
/// closed (end of file) or broke the protocol: either way it is not
/// waiting for outputs.
fn wrapper_waits(stream: &UnixStream) -> bool {
    use std::io::Read;
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let waiting = matches!(
        (&mut &*stream).read(&mut byte),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).is_ok() && waiting
}

/// Waits for the wrapper's report of a missed compile and stores the result.
fn finish_miss(
    server: &Server,
    stream: &mut UnixStream,
    mut pending: cache::Pending,
) -> io::Result<()> {
    let shared = &server.shared;
    let report = read_frame::<Request>(stream);
    let Ok(Some(Request::Finished {
        exit_code,
        stdout,
        stderr,
    })) = report
    else {
        pending.cleanup();
        return report.map(|_| ());
    };
    // A verified hit: its fresh outputs are compared with the entry, not
    // stored.
    if pending.verify.is_some() {
        if exit_code == Some(0) {
            if let cache::Verified::RunAgain(second) = cache::verify(shared, &pending, &stdout) {
                write_frame(stream, &Response::RunAgain)?;
                match read_frame::<Request>(stream) {
                    Ok(Some(Request::Finished {
                        exit_code: Some(0),
                        stdout,
                        ..
                    })) => cache::verify_second(shared, &pending, *second, &stdout),
                    _ => second.abandon(&pending),
                }
            }
            pending.after_success(shared);
        }
        pending.cleanup();
        return write_frame(stream, &Response::Ok);
    }
    conclude(server, &mut pending, exit_code, &stdout, &stderr);
    write_frame(stream, &Response::Ok)
}

/// After a missed compile ran (here or on the engine): reads its outputs
/// now, before the wrapper goes on (once it exits, cargo may touch them:
/// it sets the mtime of check outputs, and a later compile may rewrite
/// them), and queues the store. A compile error (exit code 1) of a crate
/// that is not linked is stored too, when rustc wrote its dep-info (see
/// `prepare_failure`).
fn conclude(
    server: &Server,
    pending: &mut cache::Pending,
    exit_code: Option<i32>,
    stdout: &[u8],
    stderr: &[u8],
) {
    let shared = &server.shared;
    let preparing = Instant::now();
    let prepared = match exit_code {
        Some(0) => cache::prepare_store(shared, pending, stdout, stderr),
        Some(1) => {
            pending.count_failure(shared);
            cache::prepare_failure(shared, pending, stdout, stderr)
        }
        _ => {
            pending.count_failure(shared);
            Ok(None)
        }
    };
    pending.cleanup();
    // Only once its outputs are read: a build script's binary gives way to
    // its launcher.
    if exit_code == Some(0) {
        pending.after_success(shared);
    }
    tracing::debug!(
        unit = %pending.unit.unit,
        prepare_us = preparing.elapsed().as_micros(),
        "outputs read"
    );
    match prepared {
        Ok(Some(job)) => {
            let s = shared.clone();
            // Builds waiting for this key are woken once it is stored.
            let claim = pending.claim.take();
            let unit = std::mem::take(&mut pending.unit);
            let ws = pending.workspace();
            server.queue_write(
                Background::Store,
                Box::new(move || {
                    cache::store_and_remember(&s, job, &unit, ws.as_deref());
                    drop(claim);
                }),
            );
        }
        Ok(None) => {}
        Err(e) if exit_code != Some(0) => {
            tracing::debug!(error = %e, "compile error not stored");
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the compile's outputs failed; not stored");
            shared.stats.count(Event::Error);
        }
    }
}
