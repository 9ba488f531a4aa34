//! cachepot on Bazel Remote Execution API (REAPI v2) engines: BuildGrid,
//! Buildbarn, BuildBuddy, NativeLink, bazel-remote.
//!
//! Today: a cache backend on an engine's Action Cache and CAS ([`Reapi`]).
//! Remote execution of misses is to come here too.

mod reapi;

pub use reapi::{parse_headers, Reapi, ReapiError, ReapiSettings};
