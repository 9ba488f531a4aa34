//! cachepot on Bazel Remote Execution API (REAPI v2) engines: BuildGrid,
//! Buildbarn, BuildBuddy, NativeLink, bazel-remote.
//!
//! Today: a cache backend on an engine's Action Cache and CAS ([`Reapi`]),
//! and one action executed end to end for `cachepot --check-remote`
//! ([`Reapi::execute_check`]). Remote execution of misses is to come here
//! too.

mod exec;
mod reapi;

pub use exec::{CallError, Capabilities, CheckRun, CHECK_OUTPUT};

pub use reapi::{parse_headers, Reapi, ReapiError, ReapiSettings};
