//! cachepot: a shared compiler cache.
//!
//! `RUSTC_WRAPPER=cachepot cargo build` wraps each rustc call; the flags
//! below (sccache's) manage the daemon.

mod check;
mod cli;
mod client;
mod config;
mod daemon;
mod logging;
mod remote_config;
mod runtime;
mod wrapper;

use std::ffi::OsString;
use std::time::Instant;

fn main() {
    let start = Instant::now();
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if config::env_flag(&config::INTERNAL_DAEMON) {
        std::process::exit(daemon::run_child());
    }
    if config::env_flag(&config::START_SERVER) {
        let code = if config::env_flag(&config::NO_DAEMON) {
            daemon::run_foreground()
        } else {
            cli::start_server()
        };
        std::process::exit(code);
    }
    let is_flag = args
        .first()
        .is_some_and(|a| a.to_string_lossy().starts_with('-'));
    if args.is_empty() || is_flag {
        std::process::exit(cli::main(&args));
    }
    if let Ok(runtime) = runtime::dir() {
        logging::to_file(&runtime.join("client.log"), "warn");
    }
    let compiler = args.remove(0);
    std::process::exit(wrapper::run(compiler, args, start));
}
