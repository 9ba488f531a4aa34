//! The wire protocol between the wrapper and the daemon: length-prefixed
//! bincode frames over a Unix socket. Byte strings carry paths, arguments
//! and environment exactly, whatever their encoding.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::stats::StatsSnapshot;

/// Largest frame accepted (outputs never travel over the socket).
const MAX_FRAME: u32 = 256 * 1024 * 1024;

/// A compile as the wrapper saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompileRequest {
    /// The compiler as given (`/path/to/rustc` or `rustc`).
    pub compiler: Vec<u8>,
    /// The compiler's arguments.
    pub args: Vec<Vec<u8>>,
    /// The working directory.
    pub cwd: Vec<u8>,
    /// The whole environment.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// The wrapper's parent (cargo): one build, for warning it once.
    pub ppid: u32,
    /// Compile and overwrite the entry without looking it up.
    pub recache: bool,
    /// Standard input, when the compile reads its source from it (`-`).
    pub stdin: Option<Vec<u8>>,
}

/// Wrapper to daemon.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// First message on every connection.
    Hello {
        /// The wrapper's build identity.
        build_id: String,
    },
    /// Look a compile up.
    Compile(CompileRequest),
    /// After `Response::Miss`: the compile ran; here is how it went.
    Finished {
        /// Exit code, or `None` if killed by a signal.
        exit_code: Option<i32>,
        /// What it wrote to stdout.
        stdout: Vec<u8>,
        /// What it wrote to stderr.
        stderr: Vec<u8>,
    },
    /// After `Response::Hit`: the whole wrapper run took this long.
    HitTime {
        /// Microseconds from wrapper start to output replayed.
        micros: u64,
    },
    /// Current statistics.
    Stats,
    /// The explained misses of the current statistics period.
    Explain,
    /// Reset statistics.
    ZeroStats,
    /// Stop the daemon after pending writes.
    Shutdown,
    /// Look a build script's run up (from its launcher): `compiler` is the
    /// real binary. Answered like `Compile`.
    BuildScript(CompileRequest),
}

/// Daemon to wrapper.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `Hello`.
    Hello {
        /// The daemon's build identity.
        build_id: String,
        /// Its process id.
        pid: u32,
    },
    /// The outputs were written; replay these and exit with this code.
    Hit {
        /// Exit code to return.
        exit_code: i32,
        /// Bytes for stdout.
        stdout: Vec<u8>,
        /// Bytes for stderr.
        stderr: Vec<u8>,
    },
    /// Run the compiler, then send `Request::Finished`.
    Miss {
        /// Arguments the wrapper appends to the compile.
        extra_args: Vec<Vec<u8>>,
    },
    /// The compile ran on the remote engine and its outputs are written:
    /// replay these and exit with this code.
    Ran {
        /// The compiler's exit code.
        exit_code: i32,
        /// Bytes for stdout.
        stdout: Vec<u8>,
        /// Bytes for stderr.
        stderr: Vec<u8>,
    },
    /// Run the compiler; nothing to report.
    RunUncached,
    /// After `Request::Finished` of a build script's run under
    /// `CACHEPOT_VERIFY`: run it once more (its output not passed on) and
    /// report again.
    RunAgain,
    /// Statistics.
    Stats(Box<StatsSnapshot>),
    /// The answer to [`Request::Explain`].
    Explain(Vec<crate::explain::Explained>),
    /// Done.
    Ok,
    /// Print this on the build's stderr, then read the real answer.
    Warning(String),
    /// The request failed; the wrapper runs the compiler.
    Error(String),
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let body =
        bincode::serialize(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    bincode::deserialize(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::HitTime { micros: 42 }).unwrap();
        write_frame(
            &mut buf,
            &Request::Hello {
                build_id: "b".into(),
            },
        )
        .unwrap();
        let mut r = buf.as_slice();
        assert!(matches!(
            read_frame::<Request>(&mut r).unwrap(),
            Some(Request::HitTime { micros: 42 })
        ));
        assert!(matches!(
            read_frame::<Request>(&mut r).unwrap(),
            Some(Request::Hello { .. })
        ));
        assert!(read_frame::<Request>(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame::<Request>(&mut r).is_err());
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::Stats).unwrap();
        buf.truncate(buf.len() - 1);
        buf[0] += 1;
        let mut r = buf.as_slice();
        assert!(read_frame::<Request>(&mut r).is_err());
    }
}
