//! Running one action on the engine: its input files' digests (SHA-256,
//! memoised by file stamp), the input root, the uploads the engine lacks
//! (remembered, so each blob goes up once per daemon), `Execute`, and the
//! result with its output files fetched.
//!
//! The engine is paused after [`PAUSE_AFTER`] failures in a row, for
//! [`PAUSE_FOR`]: the compiles in between run locally at once.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;
use sha2::{Digest as _, Sha256};

use crate::cas::Blob;
pub use crate::error::{ExecError, Failure};
use crate::reapi::{digest_of, Reapi, ReapiError, ReapiSettings};
use crate::tree::InputTree;

/// Failures in a row that pause remote execution.
pub const PAUSE_AFTER: u32 = 3;
/// How long it stays paused.
pub const PAUSE_FOR: Duration = Duration::from_secs(30);

/// How many times an operation whose stream ended is taken up again.
const MAX_RESUMES: u32 = 5;

/// A file of the input root.
#[derive(Clone, Debug)]
pub struct Input {
    /// Where it goes, relative to the input root.
    pub path: String,
    /// The local file it is read from (links followed).
    pub local: PathBuf,
    /// Whether it is executable.
    pub executable: bool,
}

/// An action, before it is encoded.
#[derive(Clone, Debug, Default)]
pub struct ActionSpec {
    /// The command line; the first is the program.
    pub arguments: Vec<String>,
    /// The environment (the command gets nothing else).
    pub env: Vec<(String, String)>,
    /// Its files.
    pub inputs: Vec<Input>,
    /// Directories that must exist even when empty.
    pub dirs: Vec<String>,
    /// The files it writes that come back, relative to the input root
    /// (the working directory is the input root).
    pub outputs: Vec<String>,
    /// How long it may run on the worker.
    pub timeout: Duration,
}

/// What the engine ran.
#[derive(Debug, Default)]
pub struct Executed {
    /// The command's exit code.
    pub exit_code: i32,
    /// What it printed.
    pub stdout: Vec<u8>,
    /// What it printed on stderr.
    pub stderr: Vec<u8>,
    /// The outputs it wrote, by path (missing ones left out).
    pub outputs: HashMap<String, Vec<u8>>,
    /// The worker, as the engine names it.
    pub worker: String,
    /// Time queued, and executing, from the execution metadata.
    pub queued: Option<Duration>,
    pub executing: Option<Duration>,
    /// Bytes uploaded for this action (inputs the engine lacked) and
    /// downloaded (outputs, stdout, stderr).
    pub uploaded: u64,
    pub downloaded: u64,
    /// Whether the engine answered from its own action cache.
    pub cached: bool,
}

/// A file's stamp: a changed file has another.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: m.len(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

/// The breaker's state.
#[derive(Default)]
struct Breaker {
    failures: u32,
    paused_until: Option<Instant>,
}

/// Runs actions on one engine.
pub struct Executor {
    reapi: Reapi,
    platform: Option<re::Platform>,
    /// SHA-256 of local files by path, with the stamp they had.
    digests: Mutex<HashMap<PathBuf, (Stamp, re::Digest)>>,
    /// Blobs known to be in the engine's CAS.
    present: Mutex<HashSet<String>>,
    /// Blobs being uploaded by some action now.
    uploads: Uploading,
    breaker: Mutex<Breaker>,
}

/// Blobs being uploaded, by hash.
#[derive(Default)]
struct Uploading {
    hashes: Mutex<HashSet<String>>,
    done: std::sync::Condvar,
}

/// The blobs one action uploads: released when dropped, even by a panic.
struct Claimed<'a> {
    uploading: &'a Uploading,
    hashes: Vec<String>,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        let mut inflight = self
            .uploading
            .hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for h in &self.hashes {
            inflight.remove(h);
        }
        self.uploading.done.notify_all();
    }
}

impl Uploading {
    /// Splits blobs into those this caller uploads (claimed until the
    /// guard drops) and those another caller is uploading.
    fn claim(&self, hashes: impl Iterator<Item = String>) -> (Claimed<'_>, Vec<String>) {
        let mut inflight = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        let (mine, theirs) = hashes.partition(|h| inflight.insert(h.clone()));
        (
            Claimed {
                uploading: self,
                hashes: mine,
            },
            theirs,
        )
    }

    /// Waits until none of `theirs` is being uploaded, at most `limit`;
    /// whether they all were done.
    fn wait_for(&self, theirs: &[String], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut inflight = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        while theirs.iter().any(|h| inflight.contains(h)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            inflight = self
                .done
                .wait_timeout(inflight, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Executor {
    /// Connects lazily. `timeout` limits each CAS call; an action's run
    /// is limited by its own timeout.
    pub fn new(settings: ReapiSettings, timeout: Duration) -> Result<Executor, ReapiError> {
        let platform = crate::exec::platform_of(&settings.platform);
        Ok(Executor {
            reapi: Reapi::connect(settings, timeout, false)?,
            platform,
            digests: Mutex::default(),
            present: Mutex::default(),
            uploads: Uploading::default(),
            breaker: Mutex::default(),
        })
    }

    /// The SHA-256 digest of a local file, memoised by its stamp.
    fn file_digest(&self, path: &Path) -> Result<re::Digest, ExecError> {
        let input = |source| ExecError::Input {
            path: path.to_path_buf(),
            source,
        };
        let stamp = Stamp::of(&std::fs::metadata(path).map_err(input)?);
        if let Some((s, d)) = self.digests.lock().ok().and_then(|m| m.get(path).cloned()) {
            if s == stamp {
                return Ok(d);
            }
        }
        let mut file = std::fs::File::open(path).map_err(input)?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher).map_err(input)?;
        let digest = re::Digest {
            hash: format!("{:x}", hasher.finalize()),
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        };
        if let Ok(mut m) = self.digests.lock() {
            m.insert(path.to_path_buf(), (stamp, digest.clone()));
        }
        Ok(digest)
    }

    /// Tells the memo a file's digest (a file just written from an
    /// output), so that it is neither hashed nor uploaded again.
    pub fn remember(&self, path: &Path, bytes: &[u8]) {
        let Ok(m) = std::fs::metadata(path) else {
            return;
        };
        let digest = digest_of(bytes);
        if let Ok(mut p) = self.present.lock() {
            p.insert(digest.hash.clone());
        }
        if let Ok(mut memo) = self.digests.lock() {
            memo.insert(path.to_path_buf(), (Stamp::of(&m), digest));
        }
    }

    fn check_pause(&self) -> Result<(), ExecError> {
        let Ok(mut b) = self.breaker.lock() else {
            return Ok(());
        };
        match b.paused_until {
            Some(t) if Instant::now() < t => Err(ExecError::Paused {
                seconds: t.saturating_duration_since(Instant::now()).as_secs() + 1,
            }),
            Some(_) => {
                b.paused_until = None;
                b.failures = 0;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn record(&self, outcome: &Result<Executed, ExecError>) {
        let Ok(mut b) = self.breaker.lock() else {
            return;
        };
        match outcome {
            Ok(_) => b.failures = 0,
            Err(e) if e.engine_side() => {
                b.failures += 1;
                if b.failures >= PAUSE_AFTER {
                    b.paused_until = Some(Instant::now() + PAUSE_FOR);
                }
            }
            Err(_) => {}
        }
    }

    /// Runs the action; any failure of the engine is an error (the caller
    /// runs the command locally). A missing blob is uploaded again once.
    pub fn run(&self, spec: &ActionSpec) -> Result<Executed, ExecError> {
        self.check_pause()?;
        let outcome = self.run_once(spec).or_else(|e| match e.failure() {
            Failure::MissingBlob => {
                tracing::debug!(error = %e, "a blob went missing; uploading again");
                if let Ok(mut p) = self.present.lock() {
                    p.clear();
                }
                self.run_once(spec)
            }
            _ => Err(e),
        });
        self.record(&outcome);
        outcome
    }

    fn run_once(&self, spec: &ActionSpec) -> Result<Executed, ExecError> {
        // The input root, and where each blob comes from.
        let mut tree = InputTree::default();
        let mut sources: HashMap<String, (re::Digest, Blob)> = HashMap::new();
        for input in &spec.inputs {
            let digest = self.file_digest(&input.local)?;
            tree.add_file(&input.path, digest.clone(), input.executable)?;
            sources
                .entry(digest.hash.clone())
                .or_insert_with(|| (digest, Blob::File(input.local.clone())));
        }
        for d in &spec.dirs {
            tree.add_dir(d)?;
        }
        let built = tree.build();
        for (digest, bytes) in built.directories {
            sources.insert(digest.hash.clone(), (digest, Blob::Bytes(bytes)));
        }
        let mut env = spec.env.clone();
        env.sort();
        let mut outputs = spec.outputs.clone();
        outputs.sort();
        outputs.dedup();
        let command = re::Command {
            arguments: spec.arguments.clone(),
            environment_variables: env
                .into_iter()
                .map(|(name, value)| re::command::EnvironmentVariable { name, value })
                .collect(),
            output_paths: outputs,
            ..Default::default()
        };
        let command_bytes = command.encode_to_vec();
        let command_digest = digest_of(&command_bytes);
        let action = re::Action {
            command_digest: Some(command_digest.clone()),
            input_root_digest: Some(built.root),
            timeout: Some(bazel_remote_apis::google::protobuf::Duration {
                seconds: i64::try_from(spec.timeout.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            platform: self.platform.clone(),
            ..Default::default()
        };
        let action_bytes = action.encode_to_vec();
        let action_digest = digest_of(&action_bytes);
        sources.insert(
            command_digest.hash.clone(),
            (command_digest, Blob::Bytes(command_bytes)),
        );
        sources.insert(
            action_digest.hash.clone(),
            (action_digest.clone(), Blob::Bytes(action_bytes)),
        );

        let r = &self.reapi;
        // Only what the engine is not known to have is asked about.
        let unknown: Vec<re::Digest> = {
            let present = self.present.lock().map(|p| p.clone()).unwrap_or_default();
            sources
                .values()
                .filter(|(d, _)| !present.contains(&d.hash))
                .map(|(d, _)| d.clone())
                .collect()
        };
        let asked: Vec<String> = unknown.iter().map(|d| d.hash.clone()).collect();
        let missing = r.rt.block_on(r.find_missing(unknown))?;
        // A blob another action is uploading is not sent twice (the
        // toolchain, when the first compiles start together): this one
        // waits for it. Should that upload fail, `Execute` finds the blob
        // missing and the retry sends it.
        let (mine, theirs) = self.uploads.claim(missing.iter().map(|d| d.hash.clone()));
        let uploads: Vec<(re::Digest, Blob)> = mine
            .hashes
            .iter()
            .filter_map(|h| sources.remove(h))
            .collect();
        let uploaded = r.rt.block_on(r.upload_many(uploads));
        drop(mine);
        let uploaded = uploaded?;
        // Theirs are known present only if their uploads succeeded: they
        // are asked about again next time.
        if !self.uploads.wait_for(&theirs, spec.timeout) {
            return Err(ExecError::Timeout {
                call: "upload by another action",
                seconds: spec.timeout.as_secs(),
            });
        }
        if let Ok(mut p) = self.present.lock() {
            p.extend(asked.into_iter().filter(|h| !theirs.contains(h)));
        }
        r.rt.block_on(async {
            let response = self.execute(&action_digest, spec.timeout).await?;
            let mut executed = self.fetch_result(response).await?;
            executed.uploaded = uploaded;
            Ok(executed)
        })
    }

    /// Calls `Execute` and waits for the operation to end.
    async fn execute(
        &self,
        action_digest: &re::Digest,
        timeout: Duration,
    ) -> Result<re::ExecuteResponse, ExecError> {
        let r = &self.reapi;
        // Queueing and the engine's own overhead on top of the run.
        let limit = timeout + r.timeout;
        let failed = |call: &'static str| {
            move |s: tonic::Status| ExecError::Call {
                call,
                code: s.code(),
                message: s.message().to_string(),
            }
        };
        let call = async {
            let mut stream = r
                .execution_client()
                .execute(re::ExecuteRequest {
                    instance_name: r.settings.instance.clone(),
                    action_digest: Some(action_digest.clone()),
                    ..Default::default()
                })
                .await
                .map_err(failed("Execute"))?
                .into_inner();
            // The operation's name, to take it up again (`WaitExecution`)
            // when a stream ends early: engines and proxies end long
            // streams.
            let mut name = String::new();
            let mut resumed = 0;
            loop {
                let Some(op) = stream.message().await.map_err(failed("Execute"))? else {
                    if name.is_empty() || resumed == MAX_RESUMES {
                        return Err(ExecError::Call {
                            call: "Execute",
                            code: tonic::Code::Unavailable,
                            message: "the stream ended before the action did".into(),
                        });
                    }
                    resumed += 1;
                    stream = r
                        .execution_client()
                        .wait_execution(re::WaitExecutionRequest { name: name.clone() })
                        .await
                        .map_err(failed("WaitExecution"))?
                        .into_inner();
                    continue;
                };
                if !op.name.is_empty() {
                    name = op.name.clone();
                }
                if !op.done {
                    continue;
                }
                return crate::exec::finished(op);
            }
        };
        match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => Err(ExecError::Timeout {
                call: "Execute",
                seconds: limit.as_secs(),
            }),
        }
    }

    /// The result, with stdout, stderr and the output files read.
    async fn fetch_result(&self, response: re::ExecuteResponse) -> Result<Executed, ExecError> {
        let cached = response.cached_result;
        let result = response
            .result
            .ok_or_else(|| ExecError::Result("no ActionResult".into()))?;
        let mut wanted: Vec<re::Digest> = result
            .output_files
            .iter()
            .filter_map(|f| f.digest.clone())
            .collect();
        wanted.extend(result.stdout_digest.clone());
        wanted.extend(result.stderr_digest.clone());
        let blobs = self.reapi.read_many(&wanted).await?;
        let downloaded = blobs.values().map(|b| b.len() as u64).sum();
        let take = |d: &Option<re::Digest>, raw: Vec<u8>| -> Vec<u8> {
            if !raw.is_empty() {
                return raw;
            }
            d.as_ref()
                .and_then(|d| blobs.get(&d.hash).cloned())
                .unwrap_or_default()
        };
        let stdout = take(&result.stdout_digest, result.stdout_raw);
        let stderr = take(&result.stderr_digest, result.stderr_raw);
        let outputs = result
            .output_files
            .iter()
            .filter_map(|f| {
                let d = f.digest.as_ref()?;
                Some((f.path.clone(), blobs.get(&d.hash)?.clone()))
            })
            .collect::<HashMap<_, _>>();
        let meta = result.execution_metadata.unwrap_or_default();
        Ok(Executed {
            exit_code: result.exit_code,
            stdout,
            stderr,
            outputs,
            worker: meta.worker.clone(),
            queued: crate::exec::between(&meta.queued_timestamp, &meta.worker_start_timestamp),
            executing: crate::exec::between(
                &meta.execution_start_timestamp,
                &meta.execution_completed_timestamp,
            ),
            uploaded: 0,
            downloaded,
            cached,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_blob_in_flight_is_uploaded_once_and_waited_for() {
        let f = Arc::new(Uploading::default());
        let (mine, theirs) = f.claim(["a".to_string(), "b".to_string()].into_iter());
        assert_eq!((mine.hashes.len(), theirs.len()), (2, 0));
        let (mine2, theirs2) = f.claim(["b".to_string(), "c".to_string()].into_iter());
        assert_eq!(mine2.hashes, ["c"]);
        assert_eq!(theirs2, ["b"]);
        // "c" done, "b" not: a waiter gives up at its limit.
        drop(mine2);
        assert!(!f.wait_for(&theirs2, Duration::from_millis(50)));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let f = f.clone();
            std::thread::spawn(move || tx.send(f.wait_for(&theirs2, Duration::from_secs(60))))
        };
        // A panic while uploading releases the claim too.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = mine;
            panic!("upload failed");
        }));
        assert!(panicked.is_err());
        assert!(rx.recv().unwrap());
        waiter.join().unwrap().unwrap();
        assert!(f.hashes.lock().unwrap().is_empty());
    }

    #[test]
    fn engine_failures_pause_and_local_ones_do_not() {
        let call = |code| ExecError::Call {
            call: "Execute",
            code,
            message: String::new(),
        };
        assert_eq!(
            call(tonic::Code::Unavailable).failure(),
            Failure::Unavailable
        );
        assert_eq!(
            call(tonic::Code::FailedPrecondition).failure(),
            Failure::MissingBlob
        );
        assert_eq!(
            call(tonic::Code::PermissionDenied).failure(),
            Failure::Rejected
        );
        assert!(call(tonic::Code::Unavailable).engine_side());
        assert!(!ExecError::Changed(PathBuf::from("/x")).engine_side());
    }
}
