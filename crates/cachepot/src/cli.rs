//! The command line: sccache's flags, so CI scripts migrate by changing one word.

use std::ffi::OsString;

use anyhow::{bail, Result};
use cachepot_daemon::protocol::{Request, Response};
use cachepot_daemon::stats::StatsSnapshot;

use crate::client;
use crate::config::{self, Config};
use crate::runtime::Paths;

const USAGE: &str = "\
cachepot: a shared compiler cache

Usage:
  RUSTC_WRAPPER=cachepot cargo build     cache Rust compiles
  cachepot <compiler> [args...]          run one compile through the cache

Options:
  -s, --show-stats          show statistics (add --stats-format json for JSON)
  -z, --zero-stats          reset statistics (and the explained misses)
      --explain             why each miss since the statistics were reset missed:
                            the inputs that differ from the closest stored compile
      --start-server        start the daemon
      --stop-server         stop the daemon (pending writes finish first)
      --check-storage       write, read and delete a probe on each storage tier
      --check-remote        the REAPI engine: capabilities, a store probe and one
                            tiny action executed end to end
      --stats-format FMT    text (default) or json
  -V, --version             print the version
  -h, --help                print this help

Environment variables (the sccache name works too; `key` is the config file key):
";

fn env_help() -> String {
    let mut out = String::new();
    for v in config::ALL
        .iter()
        .filter(|v| v.name != config::INTERNAL_DAEMON.name)
    {
        let mut names = v.name.to_string();
        if let Some(s) = v.sccache {
            names.push_str(&format!(" ({s})"));
        }
        if let Some(k) = v.key {
            names.push_str(&format!(" [key {k}]"));
        }
        out.push_str(&format!(
            "  {names}
      {}
",
            v.doc
        ));
    }
    out
}

/// How long `--stop-server` waits for pending writes.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

pub(crate) enum Format {
    Text,
    Json,
}

/// Runs a command-line invocation and returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    crate::logging::to_stderr("warn");
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cachepot: {e:#}");
            2
        }
    }
}

fn run(args: &[OsString]) -> Result<i32> {
    let mut format = Format::Text;
    let mut action: Option<&str> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        i += 1;
        match a.as_ref() {
            "-s" | "--show-stats" => action = Some("show"),
            "-z" | "--zero-stats" => action = Some("zero"),
            "--start-server" => action = Some("start"),
            "--stop-server" => action = Some("stop"),
            "--check-storage" => action = Some("check"),
            "--check-remote" => action = Some("check-remote"),
            "--explain" => action = Some("explain"),
            "-V" | "--version" => action = Some("version"),
            "-h" | "--help" => action = Some("help"),
            "--stats-format" => {
                let v = args.get(i).map(|v| v.to_string_lossy().into_owned());
                i += 1;
                format = parse_format(v.as_deref())?;
            }
            other => match other.strip_prefix("--stats-format=") {
                Some(v) => format = parse_format(Some(v))?,
                None => bail!("unknown option {other:?}; see cachepot --help"),
            },
        }
    }
    match action {
        None | Some("help") => {
            print!("{USAGE}");
            print!("{}", env_help());
            Ok(if action.is_none() { 2 } else { 0 })
        }
        Some("version") => {
            println!("cachepot {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Some("start") => Ok(start_server()),
        Some("stop") => stop_server(),
        Some("check") => crate::check::run(),
        Some("check-remote") => crate::check::run_remote(),
        Some("explain") => crate::explain::run(format),
        Some("zero") => {
            let paths = Paths::new(&Config::load()?)?;
            let mut conn = client::connect_or_start(&paths)?;
            conn.call(&Request::ZeroStats)?;
            println!("Statistics zeroed.");
            Ok(0)
        }
        Some(_) => show_stats(format),
    }
}

fn parse_format(v: Option<&str>) -> Result<Format> {
    match v {
        Some("text") => Ok(Format::Text),
        Some("json") => Ok(Format::Json),
        other => bail!("--stats-format: expected text or json, got {other:?}"),
    }
}

/// Starts the daemon (if none runs) and returns when it is ready.
pub fn start_server() -> i32 {
    let result = Config::load()
        .and_then(|c| Paths::new(&c))
        .and_then(|p| client::connect_or_start(&p).map(|_| p));
    match result {
        Ok(p) => {
            println!("cachepot daemon running; socket {}", p.socket.display());
            0
        }
        Err(e) => {
            eprintln!("cachepot: could not start the daemon: {e:#}");
            2
        }
    }
}

fn stop_server() -> Result<i32> {
    let paths = Paths::new(&Config::load()?)?;
    match client::connect_existing(&paths) {
        Ok(mut conn) => {
            conn.call(&Request::Shutdown)?;
            // The daemon holds its lock until its writes are done.
            let lock = std::fs::File::open(&paths.lock)?;
            let deadline = std::time::Instant::now() + STOP_TIMEOUT;
            loop {
                match lock.try_lock() {
                    Ok(()) => break,
                    Err(std::fs::TryLockError::WouldBlock)
                        if std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {
                        bail!(
                            "the daemon did not stop within {STOP_TIMEOUT:?}; see {}",
                            paths.log.display()
                        )
                    }
                    Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
                }
            }
            println!("cachepot daemon stopped.");
            Ok(0)
        }
        Err(_) => {
            println!("No cachepot daemon is running.");
            Ok(0)
        }
    }
}

fn show_stats(format: Format) -> Result<i32> {
    let paths = Paths::new(&Config::load()?)?;
    let mut conn = client::connect_or_start(&paths)?;
    let Response::Stats(s) = conn.call(&Request::Stats)? else {
        bail!("unexpected answer to a stats request");
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&s)?),
        Format::Text => print!("{}", render(&s)),
    }
    Ok(0)
}

fn render(s: &StatsSnapshot) -> String {
    let cacheable = s.cache_hits + s.cache_misses;
    let rate = if cacheable == 0 {
        "-".to_string()
    } else {
        format!("{:.2} %", 100.0 * s.cache_hits as f64 / cacheable as f64)
    };
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<40}{v}\n"));
    row("Compile requests", s.compile_requests.to_string());
    row("Cache hits", s.cache_hits.to_string());
    row("Cache misses", s.cache_misses.to_string());
    row("Cache hit rate", rate);
    row("Non-cacheable compiles", s.non_cacheable.to_string());
    row("Compile failures", s.compile_failures.to_string());
    row("Cache errors", s.cache_errors.to_string());
    row("Corrupt entries removed", s.corrupt_entries.to_string());
    row(
        "Entries of another version",
        s.other_version_entries.to_string(),
    );
    for (lang, l) in &s.languages {
        row(
            &format!("  {lang}"),
            format!(
                "{} hits, {} misses, {} non-cacheable",
                l.hits, l.misses, l.non_cacheable
            ),
        );
    }
    let b = &s.build_scripts;
    let not_cached: u64 = b.not_cached.values().sum();
    if b.hits + b.misses + b.failed + not_cached > 0 {
        row(
            "Build scripts",
            format!(
                "{} hits, {} misses, {} failed, {} not cached",
                b.hits, b.misses, b.failed, not_cached
            ),
        );
        for (reason, n) in &b.not_cached {
            row(&format!("  {reason}"), n.to_string());
        }
    }
    let r = &s.remote_execution;
    let kept: u64 = r.kept_local.values().sum();
    if s.remote_executions + s.remote_execution_failures + kept > 0 {
        row(
            "Remote executions",
            format!(
                "{} ran there, {} failed (ran here), {} kept here",
                s.remote_executions, s.remote_execution_failures, kept
            ),
        );
        for (reason, n) in &r.failure_reasons {
            row(&format!("  failed: {reason}"), n.to_string());
        }
        for (reason, n) in &r.kept_local {
            row(&format!("  kept here: {reason}"), n.to_string());
        }
        row(
            "  sent, received",
            format!(
                "{:.1} MiB, {:.1} MiB",
                r.bytes_uploaded as f64 / 1048576.0,
                r.bytes_downloaded as f64 / 1048576.0
            ),
        );
        row(
            "  queued, executing (engine's time)",
            format!(
                "{:.1} s, {:.1} s",
                r.queued_ms as f64 / 1000.0,
                r.executing_ms as f64 / 1000.0
            ),
        );
    }
    row("Cache writes", s.cache_writes.to_string());
    row("Cache writes pending", s.pending_writes.to_string());
    if let Some(m) = s.hit_time_median_us {
        row(
            "Hit time, median (in the wrapper)",
            format!("{:.2} ms", m as f64 / 1000.0),
        );
    }
    if let Some(m) = s.hit_time_p90_us {
        row(
            "Hit time, 90th percentile",
            format!("{:.2} ms", m as f64 / 1000.0),
        );
    }
    row("Cache location", s.cache_location.clone());
    row(
        "Cache size",
        format!(
            "{:.1} MiB of {:.1} MiB ({} entries)",
            s.cache_size_bytes as f64 / 1048576.0,
            s.cache_max_size_bytes as f64 / 1048576.0,
            s.cache_entries
        ),
    );
    row(
        "Daemon log",
        s.log_file
            .clone()
            .unwrap_or_else(|| "terminal (foreground daemon)".into()),
    );
    row("Daemon pid", s.daemon_pid.to_string());
    for b in &s.backends {
        out.push_str(&format!(
            "\nStorage {} ({})\n  hits {}, misses {}, writes {}, errors {}, skipped {}\n  read {:.1} MiB (mean {:.1} ms), written {:.1} MiB (mean {:.1} ms)\n",
            b.kind,
            b.location,
            b.hits,
            b.misses,
            b.writes,
            b.errors,
            b.skipped,
            b.bytes_read as f64 / 1048576.0,
            b.read_ms_mean,
            b.bytes_written as f64 / 1048576.0,
            b.write_ms_mean
        ));
        if let Some(e) = &b.last_error {
            out.push_str(&format!("  last error: {e}\n"));
        }
    }
    if !s.non_cacheable_reasons.is_empty() {
        out.push_str("\nNon-cacheable reasons:\n");
        for (r, n) in &s.non_cacheable_reasons {
            out.push_str(&format!("  {r:<38}{n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stats_show_rate_reasons_and_log() {
        let mut s = StatsSnapshot {
            cache_hits: 3,
            cache_misses: 1,
            log_file: Some("/run/cachepot/daemon.log".into()),
            ..Default::default()
        };
        s.non_cacheable_reasons.insert("crate-type bin".into(), 2);
        s.languages.insert(
            "c++".into(),
            cachepot_daemon::stats::LanguageStats {
                hits: 4,
                misses: 5,
                non_cacheable: 6,
            },
        );
        let text = render(&s);
        assert!(
            text.contains("c++") && text.contains("4 hits, 5 misses, 6 non-cacheable"),
            "{text}"
        );
        assert!(text.contains("75.00 %"), "{text}");
        assert!(text.contains("crate-type bin"), "{text}");
        assert!(text.contains("/run/cachepot/daemon.log"), "{text}");
    }
}
