//! Reaching the daemon: connecting, the version handshake, and starting a
//! daemon when none answers.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cachepot_daemon::protocol::{read_frame, write_frame, Request, Response};

use crate::config;
use crate::runtime::{build_id, Paths};

/// How long a wrapper waits for a daemon it started to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a request may go unanswered before the wrapper gives up on the
/// daemon and compiles by itself.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// The daemon said why it could not start (such as a remote backend it
/// cannot configure): the build should be told, not only the log.
#[derive(Debug)]
pub struct DaemonStartFailed(pub String);

impl std::fmt::Display for DaemonStartFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DaemonStartFailed {}

/// A handshaken connection to the daemon.
pub struct Conn {
    stream: UnixStream,
}

impl Conn {
    /// Sends a request.
    pub fn send(&mut self, req: &Request) -> Result<()> {
        write_frame(&mut self.stream, req).context("sending to the daemon")
    }

    /// Waits for a response, printing any warning for the build on the way.
    pub fn recv(&mut self) -> Result<Response> {
        loop {
            let resp = read_frame(&mut self.stream)
                .context("reading from the daemon")?
                .ok_or_else(|| anyhow!("the daemon closed the connection"))?;
            match resp {
                Response::Warning(w) => eprintln!("{w}"),
                other => return Ok(other),
            }
        }
    }

    /// Sends a request and waits for its response.
    /// Lets the next answers take up to `d` (a compile may wait for
    /// another build's compile of the same unit first).
    pub fn allow_replies_for(&self, d: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(d))?;
        Ok(())
    }

    pub fn call(&mut self, req: &Request) -> Result<Response> {
        self.send(req)?;
        self.recv()
    }
}

enum Connected {
    Ready(Conn),
    OtherBuild(Conn),
}

fn connect(paths: &Paths) -> Result<Connected> {
    let stream = UnixStream::connect(&paths.socket)
        .with_context(|| format!("connecting to {}", paths.socket.display()))?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let mut conn = Conn { stream };
    let ours = build_id();
    match conn.call(&Request::Hello {
        build_id: ours.clone(),
    })? {
        Response::Hello { build_id, .. } if build_id == ours => Ok(Connected::Ready(conn)),
        Response::Hello { .. } => Ok(Connected::OtherBuild(conn)),
        other => bail!("unexpected answer to hello: {other:?}"),
    }
}

/// Connects to a running daemon without starting one.
pub fn connect_existing(paths: &Paths) -> Result<Conn> {
    match connect(paths)? {
        Connected::Ready(c) | Connected::OtherBuild(c) => Ok(c),
    }
}

/// Connects to the daemon, starting it (or replacing one of another build).
pub fn connect_or_start(paths: &Paths) -> Result<Conn> {
    match connect(paths) {
        Ok(Connected::Ready(c)) => return Ok(c),
        Ok(Connected::OtherBuild(mut c)) => {
            tracing::info!("replacing a daemon of another cachepot build");
            let _ = c.call(&Request::Shutdown);
        }
        Err(e) => tracing::debug!(error = %e, "no daemon answered"),
    }
    // One wrapper starts the daemon; the others wait here, then connect.
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.start_lock)
        .with_context(|| format!("opening {}", paths.start_lock.display()))?;
    lock.lock().context("waiting for the start lock")?;
    if let Ok(Connected::Ready(c)) = connect(paths) {
        return Ok(c);
    }
    spawn_daemon(paths)?;
    match connect(paths)? {
        Connected::Ready(c) => Ok(c),
        Connected::OtherBuild(_) => bail!("the daemon just started reports another build"),
    }
}

/// Starts a detached daemon and waits for its readiness line.
pub fn spawn_daemon(paths: &Paths) -> Result<()> {
    let exe = std::env::current_exe().context("finding the cachepot executable")?;
    crate::logging::rotate(&paths.log);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&paths.log)
        .with_context(|| format!("opening {}", paths.log.display()))?;
    let mut child = Command::new(exe)
        .env(config::INTERNAL_DAEMON.name, "1")
        .env_remove(config::START_SERVER.name)
        .env_remove(config::NO_DAEMON.name)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        // Its own process group: Ctrl-C in the terminal stops the build, not the daemon.
        .process_group(0)
        .spawn()
        .context("starting the daemon")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("daemon has no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let started = Instant::now();
    let line = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
        anyhow!(
            "the daemon did not start within {START_TIMEOUT:?}; see {}",
            paths.log.display()
        )
    })?;
    tracing::debug!(elapsed = ?started.elapsed(), "daemon answered");
    match line.trim() {
        "ready" => Ok(()),
        other => Err(DaemonStartFailed(format!(
            "the daemon failed to start: {}; see {}",
            other
                .strip_prefix("error: ")
                .unwrap_or(if other.is_empty() {
                    "no message"
                } else {
                    other
                }),
            paths.log.display()
        ))
        .into()),
    }
}
