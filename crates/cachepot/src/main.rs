//! cachepot: a shared compiler cache.
//!
//! `RUSTC_WRAPPER=cachepot cargo build` wraps each rustc call; the flags
//! below (sccache's) manage the daemon.

mod check;
mod cli;
mod client;
mod config;
mod daemon;
mod explain;
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
    // Installed as a link named after a compiler (`gcc -> cachepot`): wrap
    // that compiler with every argument.
    if let Some(name) = masquerade_name() {
        if let Ok(runtime) = runtime::dir() {
            logging::to_file(&runtime.join("client.log"), "warn");
        }
        std::process::exit(wrapper::run(name, args, start));
    }
    // A build script's launcher (see the daemon's `script::launcher`).
    if args.first().is_some_and(|a| a == "--run-build-script") && args.len() >= 2 {
        if let Ok(runtime) = runtime::dir() {
            logging::to_file(&runtime.join("client.log"), "warn");
        }
        let real = args.remove(1);
        args.remove(0);
        std::process::exit(wrapper::run_build_script(real, args, start));
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

/// The compiler name cachepot was invoked as, when it is not `cachepot`.
fn masquerade_name() -> Option<OsString> {
    let argv0 = std::env::args_os().next()?;
    let name = std::path::Path::new(&argv0).file_name()?.to_os_string();
    let text = name.to_string_lossy();
    if text.starts_with("cachepot") || text.is_empty() {
        return None;
    }
    Some(name)
}
