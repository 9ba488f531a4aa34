//! End-to-end tests: the real binary wrapping the real cargo and rustc.

mod build_scripts;
mod c_builds;
mod daemon;
mod direct;
mod explain;
mod harness;
mod key_inputs;
mod linked;
mod reapi;
mod remote;
mod remote_exec;
mod remote_exec_c;
mod remote_failures;
mod rust_builds;
mod team;
mod verify;
