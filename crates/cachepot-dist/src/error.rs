//! Why remote execution failed: the error, and its kind as a statistics
//! key.

use std::path::PathBuf;

use crate::execute::PAUSE_AFTER;
use crate::tree::TreeError;

/// Why an action did not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Paused after failures in a row.
    #[error("remote execution paused for {seconds} s after {PAUSE_AFTER} failures in a row")]
    Paused {
        /// Seconds left.
        seconds: u64,
    },
    /// An input could not be read.
    #[error("reading {path}: {source}")]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An input changed between its digest and its upload.
    #[error("{0} changed while it was uploaded")]
    Changed(PathBuf),
    /// The input root could not be built.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A call failed.
    #[error("{call}: {code:?}: {message}")]
    Call {
        /// The call.
        call: &'static str,
        /// gRPC's status code.
        code: tonic::Code,
        /// The engine's message.
        message: String,
    },
    /// A call did not end in time.
    #[error("{call}: no answer within {seconds} s")]
    Timeout {
        /// The call.
        call: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// The engine's answer makes no sense.
    #[error("{0}")]
    Result(String),
}

/// Why remote execution failed, as a statistics key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Not tried: paused after failures.
    Paused,
    /// The engine could not be reached or dropped the call.
    Unavailable,
    /// A call or the action timed out.
    Timeout,
    /// The engine refused the action (bad argument, permission, platform).
    Rejected,
    /// A blob was missing (after the retry).
    MissingBlob,
    /// A local input could not be read or changed.
    Input,
    /// The answer was malformed.
    BadResult,
}

impl Failure {
    /// The statistics key.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Paused => "paused after failures",
            Failure::Unavailable => "engine unavailable",
            Failure::Timeout => "timeout",
            Failure::Rejected => "action rejected",
            Failure::MissingBlob => "blob missing",
            Failure::Input => "input unreadable",
            Failure::BadResult => "bad result",
        }
    }
}

impl ExecError {
    /// What kind of failure this is.
    pub fn failure(&self) -> Failure {
        match self {
            ExecError::Paused { .. } => Failure::Paused,
            ExecError::Input { .. } | ExecError::Changed(_) | ExecError::Tree(_) => Failure::Input,
            ExecError::Timeout { .. } => Failure::Timeout,
            ExecError::Result(_) => Failure::BadResult,
            ExecError::Call { code, .. } => match code {
                tonic::Code::NotFound | tonic::Code::FailedPrecondition => Failure::MissingBlob,
                tonic::Code::DeadlineExceeded => Failure::Timeout,
                tonic::Code::InvalidArgument
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
                | tonic::Code::Unimplemented => Failure::Rejected,
                _ => Failure::Unavailable,
            },
        }
    }

    /// Whether the engine (not this machine) failed: those count towards
    /// the pause.
    /// A refused action (wrong platform, API key, instance) counts too:
    /// the next ones would be refused alike.
    pub(crate) fn engine_side(&self) -> bool {
        !matches!(self.failure(), Failure::Input | Failure::Paused)
    }
}
