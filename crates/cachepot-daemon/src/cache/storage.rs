//! Reading and writing the store: manifest lists tier by tier (a local
//! list that does not match is followed by the remote one; stores merge
//! the lists of every tier), entries restored as they are read, and what
//! a finished compile leaves to store.

use std::time::SystemTime;

use cachepot_compiler::digest::Digest;
use cachepot_compiler::manifest::{self, Stored};
use cachepot_compiler::BaseDirs;
use cachepot_storage::{
    Entry, EntryError, FileData, StorageError, StorageKey, StreamError, Verdict,
};

use super::{restore, Compile, Dest, Replay, StoreJob, MANIFESTS_KEPT};
use crate::explain::UnitInputs;
use crate::stats::Event;
use crate::Shared;

pub(super) fn manifest_key(a: &Digest) -> Result<StorageKey, StorageError> {
    StorageKey::for_entry("m", &a.to_hex())
}

pub(super) fn entry_key(b: &Digest) -> Result<StorageKey, StorageError> {
    StorageKey::for_entry("e", &b.to_hex())
}

/// A storage key, or `None` counted as an error.
fn valid_key(shared: &Shared, key: Result<StorageKey, StorageError>) -> Option<StorageKey> {
    key.map_err(|e| {
        tracing::warn!(error = %e, "invalid storage key");
        shared.stats.count(Event::Error);
    })
    .ok()
}

/// Counts a failed storage read and tells the build once.
fn read_failed(shared: &Shared, key: &StorageKey, e: &StorageError) {
    tracing::warn!(key = key.as_str(), error = %e, "storage read failed");
    shared.stats.count(Event::Error);
    shared.warnings.storage_error(&e.to_string());
}

/// What a reader says of an entry that does not decode: another format
/// version is passed over (a miss; it stays where it is, for the clients
/// that wrote it), anything else is corrupt (counted, and removed from the
/// tier it was read from by [`cachepot_storage::Storage::get_each`]).
fn undecodable(shared: &Shared, key: &StorageKey, error: &EntryError) -> Verdict {
    if let EntryError::Version { found, .. } = error {
        tracing::debug!(
            key = key.as_str(),
            found,
            "entry of another format version passed over"
        );
        shared.stats.count(Event::OtherVersion);
        return Verdict::Pass;
    }
    tracing::warn!(key = key.as_str(), error = %error, "corrupt entry removed");
    shared.stats.count(Event::Corrupt);
    Verdict::Corrupt
}

/// A part-A value: a manifest list, or a marker (see [`StoreJob::Marker`]).
enum PartA {
    List(Vec<Stored>),
    Marker(String),
}

/// Decodes a part-A value, or says why it is unusable.
fn decode_part_a(shared: &Shared, key: &StorageKey, bytes: &[u8]) -> Result<PartA, Verdict> {
    let entry = Entry::decode(bytes).map_err(|e| undecodable(shared, key, &e))?;
    if let Some(m) = entry.meta("direct") {
        return Ok(PartA::Marker(String::from_utf8_lossy(m).into_owned()));
    }
    let text = entry
        .meta("manifests")
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    manifest::decode_list(&text).map(PartA::List).map_err(|e| {
        tracing::warn!(key = key.as_str(), error = %e, "unreadable manifest list removed");
        shared.stats.count(Event::Corrupt);
        Verdict::Corrupt
    })
}

/// What the manifest lists of a part A gave a lookup.
#[derive(Default)]
pub(super) struct ManifestLookup {
    /// The restored hit and its entry's key.
    pub(super) hit: Option<(Replay, Digest)>,
    /// The marker of a C part A that direct mode must not serve.
    pub(super) marker: Option<String>,
}

/// Looks up part A's manifest lists, nearest tier first: the first
/// manifest whose files and `env-dep` values match this compile names the
/// entry, which is restored. A local list that has no match is followed by
/// the remote one (another machine may have stored this very compile); a
/// hit found there leaves the merged list in the local tier, so the next
/// lookup is local.
pub(super) fn lookup_manifests(
    shared: &Shared,
    c: &Compile,
    key_a: &Digest,
    dest: &Dest,
    bases: &BaseDirs,
) -> ManifestLookup {
    let mut found = ManifestLookup::default();
    let Some(key) = valid_key(shared, manifest_key(key_a)) else {
        return found;
    };
    let mut passed: Vec<Vec<Stored>> = Vec::new();
    let result = shared.storage.get_each(&key, &mut |bytes| {
        let list = match decode_part_a(shared, &key, bytes) {
            Ok(PartA::List(list)) => list,
            Ok(PartA::Marker(m)) => {
                found.marker = Some(m);
                return Verdict::Take;
            }
            Err(verdict) => return verdict,
        };
        for s in &list {
            let m = &s.manifest;
            let seen = passed.iter().flatten().any(|p| p.manifest == *m);
            if seen || !m.matches(&c.cwd, bases, &c.env, shared.digests.as_ref()) {
                continue;
            }
            let key_b = m.key_b(key_a).digest;
            if let Some(replay) = hit_by_key(shared, &key_b, dest, bases) {
                found.hit = Some((replay, key_b));
                if passed.is_empty() {
                    return Verdict::Take;
                }
                let lists = passed.drain(..).chain([list]);
                put_list(
                    shared,
                    &key,
                    manifest::merge_lists(lists, MANIFESTS_KEPT),
                    true,
                );
                return Verdict::Stop;
            }
        }
        passed.push(list);
        Verdict::Pass
    });
    if let Err(e) = result {
        read_failed(shared, &key, &e);
    }
    found
}

/// Every manifest stored for part A in any tier (a marker counts as none).
fn all_manifests(shared: &Shared, key: &StorageKey) -> Vec<Vec<Stored>> {
    let mut lists = Vec::new();
    let result = shared.storage.get_each(key, &mut |bytes| {
        match decode_part_a(shared, key, bytes) {
            Ok(PartA::List(list)) => lists.push(list),
            Ok(PartA::Marker(_)) => {}
            Err(verdict) => return verdict,
        }
        Verdict::Pass
    });
    if let Err(e) = result {
        read_failed(shared, key, &e);
    }
    lists
}

/// Writes a manifest list to every tier, or to the nearest only.
fn put_list(shared: &Shared, key: &StorageKey, list: Vec<Stored>, nearest: bool) {
    let entry = Entry {
        files: Vec::new(),
        meta: vec![(
            "manifests".into(),
            manifest::encode_list(&list).into_bytes(),
        )],
    };
    let result = entry
        .encode()
        .map_err(|e| StorageError::Encode(e.to_string()))
        .and_then(|bytes| {
            if nearest {
                shared.storage.put_nearest(key, &bytes)
            } else {
                shared.storage.put(key, &bytes)
            }
        });
    if let Err(e) = result {
        tracing::warn!(key = key.as_str(), error = %e, "writing a manifest list failed");
        shared.stats.count(Event::Error);
    }
}

/// Reads the entry under `key` (nearest tier first) and restores it.
pub(super) fn hit_by_key(
    shared: &Shared,
    key: &Digest,
    dest: &Dest,
    bases: &BaseDirs,
) -> Option<Replay> {
    let skey = valid_key(shared, entry_key(key))?;
    let mut replay = None;
    let result =
        shared.storage.get_each(
            &skey,
            &mut |bytes| match restore::restore(bytes, dest, bases) {
                Ok((out, written)) => {
                    for w in written {
                        shared.digests.remember(&w.path, &w.meta, w.digest);
                    }
                    replay = Some(out);
                    Verdict::Take
                }
                Err(StreamError::Entry(e)) => undecodable(shared, &skey, &e),
                Err(StreamError::Sink(e)) => {
                    tracing::warn!(key = %key, error = %e, "restore failed");
                    shared.stats.count(Event::Error);
                    Verdict::Stop
                }
            },
        );
    if let Err(e) = result {
        read_failed(shared, &skey, &e);
    }
    replay
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Encodes and writes an entry.
fn put_entry(shared: &Shared, key: &StorageKey, entry: &Entry) -> Result<(), StorageError> {
    let spooled = entry
        .files
        .iter()
        .any(|f| matches!(f.data, FileData::Spooled { .. }));
    if !spooled {
        let bytes = entry
            .encode()
            .map_err(|e| StorageError::Encode(e.to_string()))?;
        return shared.storage.put(key, &bytes);
    }
    // Outputs stream from their spooled copies through the compressor
    // into one more spooled file, which the tiers copy or upload in parts.
    let encoded = entry
        .encode_to_file(&shared.config.spool)
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    shared.storage.put_file(key, encoded.path())
}

/// Writes what a finished compile left to store, and remembers its inputs
/// for explanations and its keys for the workspace's next build.
pub fn store_and_remember(
    shared: &Shared,
    job: StoreJob,
    unit: &UnitInputs,
    workspace: Option<&str>,
) {
    match &job {
        StoreJob::Manifest { manifest, .. } => {
            crate::explain::remember(shared, unit, Some(manifest));
        }
        StoreJob::Plain { .. } => crate::explain::remember(shared, unit, None),
        StoreJob::Marker { .. } => {}
    }
    let written = store(shared, job);
    if let Some(ws) = workspace.filter(|_| shared.storage.can_prefetch()) {
        shared.builds.record(ws, written);
    }
}

/// Writes what a finished compile left to store; returns the keys written.
fn store(shared: &Shared, job: StoreJob) -> Vec<StorageKey> {
    let mut written = Vec::new();
    let (key, result) = match job {
        StoreJob::Manifest {
            key_a,
            manifest,
            entry,
        } => {
            let key_b = manifest.key_b(&key_a).digest;
            let result = entry_key(&key_b).and_then(|e_key| {
                put_entry(shared, &e_key, &entry)?;
                written.push(e_key);
                // Merged with what every tier holds, never overwritten:
                // another machine's manifests for this part A stay.
                let key = manifest_key(&key_a)?;
                let new = Stored {
                    manifest,
                    at: unix_now(),
                };
                let lists = all_manifests(shared, &key);
                let merged =
                    manifest::merge_lists([vec![new]].into_iter().chain(lists), MANIFESTS_KEPT);
                put_list(shared, &key, merged, false);
                written.push(key);
                Ok(())
            });
            (key_b, result)
        }
        StoreJob::Plain { key, entry } => {
            let result = entry_key(&key).and_then(|k| {
                put_entry(shared, &k, &entry)?;
                written.push(k);
                Ok(())
            });
            (key, result)
        }
        StoreJob::Marker { key_a, marker } => {
            let m_entry = Entry {
                files: Vec::new(),
                meta: vec![("direct".into(), marker.as_bytes().to_vec())],
            };
            let result = manifest_key(&key_a).and_then(|k| {
                put_entry(shared, &k, &m_entry)?;
                written.push(k);
                Ok(())
            });
            (key_a, result)
        }
    };
    match result {
        Ok(()) => {
            shared.stats.count(Event::Write);
            tracing::debug!(key = %key, "stored");
        }
        // An entry over a backend's item limit (Memcached's `-I`) is not an
        // error storm: counted apart, no warning.
        Err(StorageError::TooLarge { size, limit }) => {
            shared.stats.count(Event::TooLarge);
            tracing::debug!(key = %key, size, limit, "entry too large for the remote backend");
        }
        Err(e) => {
            shared.stats.count(Event::Error);
            tracing::warn!(error = %e, "storing an entry failed");
            shared.warnings.storage_error(&e.to_string());
        }
    }
    written
}
