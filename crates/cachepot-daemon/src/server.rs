//! The socket server: accepting connections, the idle timer, background
//! writes and orderly shutdown.

use std::fs::File;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cachepot_storage::Storage;

use crate::prefetch;
use crate::protocol::{read_frame, write_frame, Request, Response};
use crate::stats::Event;
use crate::work::{serve_work, Kind};
use crate::{DaemonConfig, Shared};

/// How long a starting daemon waits for an old one to release the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long a stopping daemon waits for open connections (compiles in flight).
const DRAIN_WAIT: Duration = Duration::from_secs(120);

/// How often the daemon checks whether build records wait to be written,
/// and how long it must have been idle to write them.
const RECORD_CHECK: Duration = Duration::from_millis(500);
const RECORD_AFTER_IDLE: Duration = Duration::from_secs(2);

/// Background writes queued at most; past that a store is dropped and
/// counted (a build never waits on the cache's writes).
const WRITE_QUEUE: usize = 64;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds the lock.
    #[error("another cachepot daemon holds {0}")]
    Locked(PathBuf),
    /// A file or socket operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Everything the server loop and its threads share.
pub(crate) struct Server {
    pub(crate) shared: Arc<Shared>,
    writer: Mutex<Option<SyncSender<Job>>>,
    /// Writes queued and not yet done.
    pending_writes: Arc<AtomicUsize>,
    stopping: AtomicBool,
    active: AtomicUsize,
    /// Milliseconds since `epoch` of the last request.
    last_activity: AtomicU64,
    epoch: Instant,
}

impl Server {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed();
        now.saturating_sub(Duration::from_millis(
            self.last_activity.load(Ordering::Relaxed),
        ))
    }

    fn stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            // Wake the accept loop.
            let _ = UnixStream::connect(&self.shared.config.socket);
        }
    }

    /// Queues a background job without waiting: when the queue is full
    /// the job is dropped (its claim with it, which wakes any build
    /// waiting on the key) and counted. A job that panics is caught and
    /// counted; the writer goes on with the next one.
    pub(crate) fn queue_write(&self, what: Background, job: Job) {
        let sender = self.writer.lock().ok().and_then(|g| g.clone());
        let pending = self.pending_writes.clone();
        pending.fetch_add(1, Ordering::SeqCst);
        let shared = self.shared.clone();
        let job: Job = Box::new(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                tracing::error!(job = what.as_str(), "a background job panicked");
                shared.stats.count(Event::Panic);
            }
            pending.fetch_sub(1, Ordering::SeqCst);
        });
        match sender {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.pending_writes.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!(job = what.as_str(), "write queue full; dropped");
                    self.shared.stats.count(Event::WriteDropped);
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.pending_writes.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!(job = what.as_str(), "write queue closed; dropped");
                }
            },
            None => job(),
        }
    }
}

/// What a background job does (for logs).
#[derive(Clone, Copy)]
pub(crate) enum Background {
    Store,
    Explain,
    Record,
}

impl Background {
    fn as_str(self) -> &'static str {
        match self {
            Background::Store => "store",
            Background::Explain => "explain",
            Background::Record => "build record",
        }
    }
}

/// Removes files a previous daemon asked compilers to write for the cache
/// (`tmp-*` in its private directory) and could not read: its wrapper went
/// away mid-compile, or it stopped.
fn sweep_private_temps(socket: &Path) {
    let Some(dir) = socket.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes spooled copies (`tmp-*` in the spool directory) that a daemon
/// which stopped mid-store left. The spool may be shared by daemons of
/// other settings on the same cache directory: only files older than a
/// store could take are removed.
fn sweep_spool(spool: &Path) {
    const STALE: Duration = Duration::from_secs(3600);
    let Ok(entries) = std::fs::read_dir(spool) else {
        return;
    };
    for e in entries.flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE);
        if stale && e.file_name().to_string_lossy().starts_with("tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Takes the daemon lock, waiting a little for a daemon that is exiting.
/// A directory removed when the daemon's `run` returns.
struct RemovedOnExit(Option<PathBuf>);

impl Drop for RemovedOnExit {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn take_lock(path: &Path) -> Result<File, DaemonError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("opening", path))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DaemonError::Locked(path.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("locking", path)(e)),
        }
    }
}

/// Runs the daemon until it is idle for the configured time or asked to
/// stop. `executor`: remote execution of misses, when on. `on_ready` is
/// called once the socket accepts connections.
pub fn run(
    config: DaemonConfig,
    storage: Arc<dyn Storage>,
    executor: Option<Arc<cachepot_dist::Executor>>,
    on_ready: impl FnOnce(),
) -> Result<(), DaemonError> {
    let _lock = take_lock(&config.lock)?;
    // Dropped before the lock: whoever sees the lock free finds the
    // scratch tier gone.
    let _scratch = RemovedOnExit(config.scratch.clone());
    sweep_private_temps(&config.socket);
    sweep_spool(&config.spool);
    let socket = config.socket.clone();
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("removing stale socket", &socket)(e)),
    }
    let listener = UnixListener::bind(&socket).map_err(io_err("binding", &socket))?;
    let (tx, rx) = sync_channel::<Job>(WRITE_QUEUE);
    let writer = thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            for job in rx {
                job();
            }
        })
        .map_err(io_err("starting writer thread", &socket))?;
    let idle_timeout = config.idle_timeout;
    let server = Arc::new(Server {
        shared: Arc::new(Shared {
            config,
            storage,
            stats: Default::default(),
            digests: Default::default(),
            toolchains: Default::default(),
            c_compilers: Default::default(),
            linkers: Default::default(),
            inflight: Default::default(),
            explanations: Default::default(),
            warnings: Default::default(),
            builds: Default::default(),
            local_slots: executor.as_ref().map(|_| {
                crate::slots::Slots::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                )
            }),
            remote: executor.map(crate::cache::RemoteExec::new),
        }),
        writer: Mutex::new(Some(tx)),
        pending_writes: Arc::new(AtomicUsize::new(0)),
        stopping: AtomicBool::new(false),
        active: AtomicUsize::new(0),
        last_activity: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    if let Some(timeout) = idle_timeout {
        let s = server.clone();
        thread::Builder::new()
            .name("idle".into())
            .spawn(move || loop {
                thread::sleep(Duration::from_millis(250).min(timeout));
                if s.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if s.active.load(Ordering::SeqCst) == 0 && s.idle_for() >= timeout {
                    tracing::info!(seconds = timeout.as_secs(), "idle; stopping");
                    s.stop();
                    return;
                }
            })
            .map_err(io_err("starting idle timer", &socket))?;
    }
    // A build's keys go to its workspace's record once the daemon has had
    // no compile open and no request for two seconds (the build ended, or
    // paused), and when it stops.
    {
        let s = server.clone();
        thread::Builder::new()
            .name("records".into())
            .spawn(move || loop {
                thread::sleep(RECORD_CHECK);
                if s.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if s.active.load(Ordering::SeqCst) == 0
                    && s.idle_for() >= RECORD_AFTER_IDLE
                    && s.shared.builds.dirty()
                {
                    let shared = s.shared.clone();
                    s.queue_write(
                        Background::Record,
                        Box::new(move || prefetch::flush(&shared)),
                    );
                }
            })
            .map_err(io_err("starting the record thread", &socket))?;
    }
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "daemon ready");
    on_ready();
    for stream in listener.incoming() {
        if server.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        server.touch();
        server.active.fetch_add(1, Ordering::SeqCst);
        let s = server.clone();
        let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
            // A panic ends this connection (the wrapper then compiles
            // plainly), never the daemon's count of open connections.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&s, stream))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
                Err(_) => {
                    tracing::error!("a connection thread panicked");
                    s.shared.stats.count(Event::Panic);
                }
            }
            s.touch();
            s.active.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a connection thread");
            server.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // Stop taking new connections, let the open ones finish (a compile in
    // flight still reports and stores), then finish the queued writes.
    let _ = std::fs::remove_file(&socket);
    let deadline = Instant::now() + DRAIN_WAIT;
    while server.active.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            tracing::warn!(
                open = server.active.load(Ordering::SeqCst),
                "stopping with connections still open"
            );
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let pending = server.pending_writes.load(Ordering::SeqCst);
    if pending > 0 {
        tracing::info!(pending, "finishing pending writes before stopping");
    }
    if server.shared.builds.dirty() {
        let shared = server.shared.clone();
        server.queue_write(
            Background::Record,
            Box::new(move || prefetch::flush(&shared)),
        );
    }
    if let Ok(mut w) = server.writer.lock() {
        w.take();
    }
    if writer.join().is_err() {
        tracing::warn!("writer thread panicked");
    }
    tracing::info!("daemon stopped");
    Ok(())
}

fn handle(server: &Server, mut stream: UnixStream) -> io::Result<()> {
    let shared = &server.shared;
    while let Some(req) = read_frame::<Request>(&mut stream)? {
        server.touch();
        let resp = match req {
            Request::Hello { build_id } => {
                if build_id != shared.config.build_id {
                    tracing::info!(client = %build_id, "wrapper of another build connected");
                }
                Response::Hello {
                    build_id: shared.config.build_id.clone(),
                    pid: std::process::id(),
                }
            }
            Request::Compile(req) => {
                serve_work(server, &mut stream, req, Kind::Compile)?;
                continue;
            }
            Request::BuildScript(req) => {
                serve_work(server, &mut stream, req, Kind::BuildScript)?;
                continue;
            }
            Request::Finished { .. } => Response::Error("Finished without a miss".into()),
            Request::HitTime { micros } => {
                shared.stats.hit_time(micros);
                continue;
            }
            Request::Stats => {
                // A build's statistics include its prefetch.
                shared.builds.wait_idle(Duration::from_secs(30));
                let mut snap = shared.stats.snapshot();
                let info = shared.storage.describe();
                snap.cache_location = info.location;
                snap.cache_size_bytes = info.size_bytes;
                snap.cache_max_size_bytes = info.max_size_bytes;
                snap.cache_entries = info.entries;
                snap.log_file = shared
                    .config
                    .log_file
                    .as_ref()
                    .map(|p| p.display().to_string());
                snap.daemon_pid = std::process::id();
                snap.backends = shared.storage.stats();
                snap.pending_writes = server.pending_writes.load(Ordering::SeqCst) as u64;
                Response::Stats(Box::new(snap))
            }
            Request::Explain => {
                // Every miss queued before this request is explained once
                // the queue reaches this point (one writer, in order).
                let (tx, rx) = std::sync::mpsc::channel();
                server.queue_write(
                    Background::Explain,
                    Box::new(move || {
                        let _ = tx.send(());
                    }),
                );
                let _ = rx.recv_timeout(Duration::from_secs(60));
                Response::Explain(shared.explanations.all())
            }
            Request::ZeroStats => {
                shared.explanations.clear();
                shared.stats.zero();
                shared.storage.zero_stats();
                Response::Ok
            }
            Request::Shutdown => {
                write_frame(&mut stream, &Response::Ok)?;
                server.stop();
                return Ok(());
            }
        };
        write_frame(&mut stream, &resp)?;
    }
    Ok(())
}
