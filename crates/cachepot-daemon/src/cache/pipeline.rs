//! The lookup written once for every kind of cached work: each kind
//! (rustc, a C compiler; build scripts and remote execution later) works
//! out its key, outputs and base directories into a [`Plan`], and the
//! pipeline looks the key up, restores a hit, waits for another build's
//! compile of the same key, and counts hits and misses.

use std::time::Duration;

use cachepot_compiler::digest::Digest;
use cachepot_compiler::BaseDirs;

use super::storage::{entry_key, hit_by_key, lookup_manifests, manifest_key};
use super::{Compile, Dest, Replay};
use crate::inflight::{Claim, Turn};
use crate::prefetch;
use crate::stats::{Event, Work};
use crate::Shared;

/// How a plan's entry is found.
#[derive(Clone, Copy, Debug)]
pub(super) enum Keyed {
    /// Part A names a list of manifests; the one that matches names the
    /// entry (rustc, C direct mode).
    Manifests(Digest),
    /// The key names the entry itself (C preprocessor mode).
    Plain(Digest),
}

impl Keyed {
    fn digest(&self) -> &Digest {
        match self {
            Keyed::Manifests(d) | Keyed::Plain(d) => d,
        }
    }
}

/// What one compile asks of the pipeline.
pub(super) struct Plan<'a> {
    /// What its hits and misses count under.
    pub work: Work<'a>,
    /// What the logs call the unit.
    pub label: &'a str,
    pub keyed: Keyed,
    /// Where a hit's files go.
    pub dest: &'a Dest,
    pub bases: &'a BaseDirs,
    /// Whether a fresh compile gives the same bytes (not for incremental
    /// compiles, coverage or profiling objects): only then can a hit be
    /// verified.
    pub verifiable: bool,
}

/// What a lookup found.
pub(super) enum Looked {
    /// The outputs were restored.
    Hit(Replay, Digest),
    /// A C part A's marker (see `StoreJob::Marker`): not to be served by
    /// manifests.
    Marker(String),
    /// Nothing usable (also under `CACHEPOT_RECACHE`).
    Nothing,
}

/// Looks the plan's key up and restores a hit (not counted: see
/// [`hit`]). `CACHEPOT_RECACHE` looks nothing up.
pub(super) fn look(shared: &std::sync::Arc<Shared>, c: &Compile, plan: &Plan<'_>) -> Looked {
    if c.recache {
        return Looked::Nothing;
    }
    match plan.keyed {
        Keyed::Manifests(key_a) => {
            // Build records and prefetch need a local tier in front of a
            // remote one.
            let ws = prefetch::workspace(plan.bases).filter(|_| shared.storage.can_prefetch());
            if let Some(ws) = &ws {
                prefetch::on_compile(shared, ws, c.ppid);
            }
            let found = lookup_manifests(shared, c, &key_a, plan.dest, plan.bases);
            if let Some(ws) = &ws {
                let entry = found.hit.as_ref().map(|(_, b)| entry_key(b));
                let keys = std::iter::once(manifest_key(&key_a)).chain(entry);
                shared.builds.record(ws, keys.flatten());
            }
            match (found.hit, found.marker) {
                (Some((replay, key_b)), _) => Looked::Hit(replay, key_b),
                (None, Some(m)) => Looked::Marker(m),
                (None, None) => Looked::Nothing,
            }
        }
        Keyed::Plain(key) => match hit_by_key(shared, &key, plan.dest, plan.bases) {
            Some(replay) => Looked::Hit(replay, key),
            None => Looked::Nothing,
        },
    }
}

/// Counts and logs a hit; `how` says how it was found.
pub(super) fn hit(
    shared: &Shared,
    plan: &Plan<'_>,
    key: &Digest,
    how: &str,
    replay: Replay,
) -> Replay {
    shared.stats.count_work(plan.work, Event::Hit);
    tracing::debug!(unit = plan.label, key = %key, how, "hit");
    replay
}

/// What the pipeline decided for a compile.
pub(super) enum Found {
    /// Restored and counted.
    Hit(Replay),
    /// A miss, counted: the compile runs, holding this turn on its key
    /// (none when another build's compile of it outlasted the wait).
    Miss(Option<Claim>),
    /// A hit picked by `CACHEPOT_VERIFY`, counted as a hit: the compile
    /// runs all the same, and its outputs are compared with this entry.
    Verify(Digest),
}

/// How a hit is served.
pub(super) enum Served {
    /// Its restored outputs stand.
    Hit(Replay),
    /// `CACHEPOT_VERIFY` picked it: compiled again and compared with the
    /// entry under this key.
    Verify(Digest),
}

impl From<Served> for Found {
    fn from(s: Served) -> Found {
        match s {
            Served::Hit(replay) => Found::Hit(replay),
            Served::Verify(key) => Found::Verify(key),
        }
    }
}

/// Counts a hit, and decides whether `CACHEPOT_VERIFY` picks it.
pub(super) fn hit_or_verify(
    shared: &Shared,
    plan: &Plan<'_>,
    key: &Digest,
    how: &str,
    replay: Replay,
) -> Served {
    let replay = hit(shared, plan, key, how, replay);
    if !picked(shared.config.verify, key) {
        return Served::Hit(replay);
    }
    if plan.verifiable {
        tracing::debug!(unit = plan.label, key = %key, "hit picked for verifying");
        Served::Verify(*key)
    } else {
        shared.stats.count(Event::VerifyUnverifiable);
        Served::Hit(replay)
    }
}

/// Whether a hit of `key` is verified when `share` of hits are: chosen by
/// the key, so the same units are verified in every build.
fn picked(share: f64, key: &Digest) -> bool {
    if share <= 0.0 {
        return false;
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&key.0[..8]);
    (u64::from_le_bytes(head) as f64) < share * (u64::MAX as f64)
}

/// After a lookup found nothing: the turn to compile the plan's key,
/// after waiting for another build's compile of it if there is one (then
/// the key is looked up once more, and its hit returned).
pub(super) fn take_turn(shared: &std::sync::Arc<Shared>, c: &Compile, plan: &Plan<'_>) -> Found {
    let key = *plan.keyed.digest();
    let claim = match shared
        .inflight
        .claim_or_wait(key, shared.config.compile_wait)
    {
        Turn::Mine(claim) => Some(claim),
        Turn::TimedOut => {
            tracing::info!(key = %key, "another compile of this key is still running; compiling too");
            None
        }
        Turn::Waited => {
            if let Looked::Hit(replay, key) = look(shared, c, plan) {
                return Found::Hit(hit(shared, plan, &key, "after waiting", replay));
            }
            match shared.inflight.claim_or_wait(key, Duration::ZERO) {
                Turn::Mine(claim) => Some(claim),
                _ => None,
            }
        }
    };
    shared.stats.count_work(plan.work, Event::Miss);
    tracing::debug!(unit = plan.label, key = %key, "miss");
    Found::Miss(claim)
}

/// The whole lookup of a plan: a hit, or a miss with its turn.
pub(super) fn find(shared: &std::sync::Arc<Shared>, c: &Compile, plan: &Plan<'_>) -> Found {
    match look(shared, c, plan) {
        Looked::Hit(replay, key) => hit_or_verify(shared, plan, &key, "found", replay).into(),
        Looked::Marker(_) | Looked::Nothing => take_turn(shared, c, plan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_keys_is_picked_the_same_way_every_time() {
        let keys: Vec<Digest> = (0..1000u32).map(|i| Digest::of(&i.to_le_bytes())).collect();
        let count = |share: f64| keys.iter().filter(|k| picked(share, k)).count();
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 1000);
        let tenth = count(0.1);
        assert!((60..=140).contains(&tenth), "{tenth}");
        assert_eq!(count(0.1), tenth);
    }
}
