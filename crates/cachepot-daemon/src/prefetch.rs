//! Build-level prefetch: the storage keys a build of a workspace looked up
//! are remembered in the store (`w2-<workspace>`, every tier), and when
//! the next build of that workspace starts (a new cargo process asks for
//! its first compile), the keys the local tier lacks are fetched from the
//! remote one in parallel before cargo asks for them. On a runner with an
//! empty local tier, a warm build's lookups then find their manifest lists
//! and entries locally instead of paying two remote round trips each.
//!
//! A workspace is named by the directory that holds its target directory
//! (normally the repository's checkout, named alike on every machine), so
//! laptops and CI runners share records. Two projects in directories of the
//! same name share one record: the cost is fetching keys nobody asks for,
//! bounded by [`KEYS_KEPT`].

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cachepot_compiler::{BaseDirs, Digest};
use cachepot_storage::{Entry, StorageKey, Verdict};

use crate::stats::Event;
use crate::Shared;

/// Keys one workspace's record keeps, most recently used first.
pub const KEYS_KEPT: usize = 4096;

/// A workspace's new build starts a prefetch at most this often.
const PREFETCH_EVERY: Duration = Duration::from_secs(10);

/// The workspace of a compile: the name of the directory holding its
/// target directory, when the compile has one.
pub(crate) fn workspace(bases: &BaseDirs) -> Option<String> {
    let (_, target) = bases.iter().find(|(name, _)| *name == "target")?;
    let parent = std::path::Path::new(target).parent()?;
    Some(parent.file_name()?.to_string_lossy().into_owned())
}

fn record_key(ws: &str) -> Option<StorageKey> {
    StorageKey::for_entry("w", &Digest::of(ws.as_bytes()).to_hex()).ok()
}

#[derive(Default)]
struct Workspace {
    /// Keys looked up or stored since the last flush, in order.
    new: Vec<StorageKey>,
    seen: HashSet<StorageKey>,
    /// The cargo process of the build seen last.
    cargo: u32,
    prefetched_at: Option<Instant>,
}

/// What the daemon knows of the builds it serves.
#[derive(Default)]
pub(crate) struct Builds {
    workspaces: Mutex<HashMap<String, Workspace>>,
    running: Mutex<usize>,
    done: Condvar,
}

impl Builds {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Workspace>> {
        self.workspaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a compile of `ws` run by cargo process `ppid`; true when it is
    /// the first of a new build, whose keys should be prefetched.
    fn begins_build(&self, ws: &str, ppid: u32) -> bool {
        let mut all = self.lock();
        let w = all.entry(ws.to_string()).or_default();
        if w.cargo == ppid {
            return false;
        }
        w.cargo = ppid;
        let due = w
            .prefetched_at
            .is_none_or(|t| t.elapsed() >= PREFETCH_EVERY);
        if due {
            w.prefetched_at = Some(Instant::now());
        }
        due
    }

    /// Remembers that a build of `ws` used `keys`.
    pub(crate) fn record(&self, ws: &str, keys: impl IntoIterator<Item = StorageKey>) {
        let mut all = self.lock();
        let w = all.entry(ws.to_string()).or_default();
        for k in keys {
            if w.seen.insert(k.clone()) {
                w.new.push(k);
            }
        }
    }

    /// Whether keys wait to be written.
    pub(crate) fn dirty(&self) -> bool {
        self.lock().values().any(|w| !w.new.is_empty())
    }

    /// Takes the keys recorded since the last flush, by workspace.
    fn take_new(&self) -> Vec<(String, Vec<StorageKey>)> {
        let mut all = self.lock();
        all.iter_mut()
            .filter(|(_, w)| !w.new.is_empty())
            .map(|(ws, w)| {
                w.seen.clear();
                (ws.clone(), std::mem::take(&mut w.new))
            })
            .collect()
    }

    /// Waits (up to `limit`) until no prefetch is running, so statistics
    /// taken after a build include its prefetch.
    pub(crate) fn wait_idle(&self, limit: Duration) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .done
            .wait_timeout_while(running, limit, |n| *n > 0)
            .map_err(|e| e.into_inner());
    }
}

/// The keys a workspace's record holds in every tier, merged, most recent
/// first.
fn read_record(shared: &Shared, key: &StorageKey) -> Vec<StorageKey> {
    let mut lists: Vec<Vec<StorageKey>> = Vec::new();
    let result = shared.storage.get_each(key, &mut |bytes| {
        let Ok(entry) = Entry::decode(bytes) else {
            return Verdict::Corrupt;
        };
        let text = entry
            .meta("keys")
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        lists.push(
            text.lines()
                .filter_map(|k| StorageKey::new(k).ok())
                .collect(),
        );
        Verdict::Pass
    });
    if let Err(e) = result {
        tracing::debug!(error = %e, "reading a build record failed");
    }
    merge(lists)
}

fn merge(lists: impl IntoIterator<Item = Vec<StorageKey>>) -> Vec<StorageKey> {
    let mut seen = HashSet::new();
    lists
        .into_iter()
        .flatten()
        .filter(|k| seen.insert(k.clone()))
        .take(KEYS_KEPT)
        .collect()
}

/// Writes the keys recorded since the last flush into each workspace's
/// record (merged with what the tiers hold, new keys first).
pub(crate) fn flush(shared: &Shared) {
    for (ws, new) in shared.builds.take_new() {
        let Some(key) = record_key(&ws) else { continue };
        let keys = merge([new, read_record(shared, &key)]);
        let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
        let entry = Entry {
            files: Vec::new(),
            meta: vec![("keys".into(), text.into_bytes())],
        };
        let result = entry
            .encode()
            .map_err(|e| e.to_string())
            .and_then(|b| shared.storage.put(&key, &b).map_err(|e| e.to_string()));
        match result {
            Ok(()) => tracing::debug!(workspace = %ws, keys = keys.len(), "build record written"),
            Err(e) => tracing::warn!(workspace = %ws, error = %e, "build record not written"),
        }
    }
}

/// At a compile of `ws` by cargo process `ppid`: when it starts a new
/// build, fetches the workspace's recorded keys into the local tier in
/// the background.
pub(crate) fn on_compile(shared: &std::sync::Arc<Shared>, ws: &str, ppid: u32) {
    let parallel = shared.config.prefetch;
    if parallel == 0 || !shared.builds.begins_build(ws, ppid) {
        return;
    }
    let Some(key) = record_key(ws) else { return };
    let running = Running::start(shared.clone());
    let ws = ws.to_string();
    let spawned = std::thread::Builder::new()
        .name("prefetch".into())
        .spawn(move || {
            let s = &running.0;
            let started = Instant::now();
            let keys = read_record(s, &key);
            let fetched = s.storage.prefetch(&keys, parallel);
            for _ in 0..fetched.entries {
                s.stats.count(Event::Prefetched);
            }
            tracing::info!(
                workspace = %ws,
                recorded = keys.len(),
                fetched = fetched.entries,
                bytes = fetched.bytes,
                ms = started.elapsed().as_millis(),
                "prefetch done"
            );
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start a prefetch");
    }
}

/// A running prefetch, counted until it is dropped (also when its thread
/// panics or never starts), so that [`Builds::wait_idle`] never waits for
/// one that is gone.
struct Running(std::sync::Arc<Shared>);

impl Running {
    fn start(shared: std::sync::Arc<Shared>) -> Running {
        *shared
            .builds
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
        Running(shared)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let builds = &self.0.builds;
        let mut n = builds.running.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        builds.done.notify_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn k(n: u32) -> StorageKey {
        StorageKey::new(format!("e2-{n}")).unwrap()
    }

    #[test]
    fn a_new_cargo_process_starts_a_prefetch_once() {
        let b = Builds::default();
        assert!(b.begins_build("proj", 10));
        assert!(!b.begins_build("proj", 10), "same build");
        assert!(!b.begins_build("proj", 11), "too soon after the last");
        assert!(b.begins_build("other", 11));
    }

    #[test]
    fn records_keep_each_key_once_newest_first() {
        let b = Builds::default();
        b.record("proj", [k(1), k(2), k(1)]);
        assert!(b.dirty());
        let taken = b.take_new();
        assert_eq!(taken, vec![("proj".to_string(), vec![k(1), k(2)])]);
        assert!(!b.dirty());
        assert_eq!(
            merge([vec![k(3), k(1)], vec![k(1), k(2)]]),
            vec![k(3), k(1), k(2)]
        );
    }

    #[test]
    fn the_workspace_is_the_directory_holding_the_target_directory() {
        let bases = BaseDirs::new([
            ("cwd", std::path::Path::new("/home/me/proj/app")),
            ("target", std::path::Path::new("/home/me/proj/target")),
        ]);
        assert_eq!(workspace(&bases).as_deref(), Some("proj"));
        let none = BaseDirs::new([("cwd", std::path::Path::new("/w"))]);
        assert_eq!(workspace(&none), None);
    }
}
