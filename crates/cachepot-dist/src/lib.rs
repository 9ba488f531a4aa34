//! cachepot on Bazel Remote Execution API (REAPI v2) engines: BuildGrid,
//! Buildbarn, BuildBuddy, NativeLink, bazel-remote.
//!
//! Today: a cache backend on an engine's Action Cache and CAS ([`Reapi`]),
//! and one action executed end to end for `cachepot --check-remote`
//! ([`Reapi::execute_check`]), and running any command on the engine
//! ([`Executor`]: the input root built from local files, uploads of what
//! the engine lacks, the result and its outputs fetched). Which compiles
//! run there, and how their paths map, is the daemon's business.

mod blobs;
mod cas;
mod compress;
mod error;
mod exec;
mod execute;
mod headers;
mod reapi;
mod tree;

pub use exec::{CallError, Capabilities, CheckRun, CHECK_OUTPUT};
pub use execute::{
    ActionSpec, ExecError, Executed, Executor, Failure, Input, PAUSE_AFTER, PAUSE_FOR,
};
pub use tree::TreeError;

pub use headers::parse_headers;
pub use reapi::{Reapi, ReapiError, ReapiSettings};
