//! Counters kept by the daemon and reported by `--show-stats`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// How many hit times are kept for the median.
const HIT_TIMES_KEPT: usize = 10_000;

/// A copy of the statistics, as sent to `--show-stats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Compiles seen (queries such as `rustc -vV` are not compiles).
    pub compile_requests: u64,
    /// Compiles answered from the cache.
    pub cache_hits: u64,
    /// Cacheable compiles not found in the cache.
    pub cache_misses: u64,
    /// Compiles that cannot be cached (see `non_cacheable_reasons`).
    pub non_cacheable: u64,
    /// Storage read or write failures, corrupt entries and failed restores.
    pub cache_errors: u64,
    /// Corrupt entries found (and removed); also counted in `cache_errors`.
    pub corrupt_entries: u64,
    /// Compiles that failed (their result is never cached).
    pub compile_failures: u64,
    /// Entries written.
    pub cache_writes: u64,
    /// Entries not written because a source changed during the compile.
    pub cache_writes_skipped: u64,
    /// Entries not written to a backend whose item limit they exceed.
    #[serde(default)]
    pub cache_writes_too_large: u64,
    /// Entries of another format version passed over (a miss; they are
    /// left in place for the clients that wrote them).
    #[serde(default)]
    pub other_version_entries: u64,
    /// Stores dropped because the write queue was full (the build went on
    /// without waiting for the cache).
    #[serde(default)]
    pub cache_writes_dropped: u64,
    /// Panics caught in the daemon's connection and writer threads (each
    /// one a compile that ran uncached or an entry not stored).
    #[serde(default)]
    pub panics: u64,
    /// Entries and manifest lists copied into the local tier by build-level
    /// prefetch before a compile asked for them.
    #[serde(default)]
    pub prefetched: u64,
    /// Hits compiled again under `CACHEPOT_VERIFY` whose outputs matched
    /// the entry byte for byte.
    #[serde(default)]
    pub verified: u64,
    /// Hits whose fresh compile differed from the entry (the entry was
    /// removed; the fresh outputs stay).
    #[serde(default)]
    pub verify_mismatches: u64,
    /// Hits picked for verifying whose outputs are not deterministic
    /// (incremental compiles, coverage and profiling objects): served as
    /// hits, not compared.
    #[serde(default)]
    pub verify_unverifiable: u64,
    /// Why compiles were not cacheable, with counts.
    pub non_cacheable_reasons: BTreeMap<String, u64>,
    /// Median time of a hit, measured inside the wrapper, in microseconds.
    pub hit_time_median_us: Option<u64>,
    /// 90th percentile of the same.
    pub hit_time_p90_us: Option<u64>,
    /// Cache location.
    pub cache_location: String,
    /// Bytes stored.
    pub cache_size_bytes: u64,
    /// Size limit.
    pub cache_max_size_bytes: u64,
    /// Entries stored.
    pub cache_entries: u64,
    /// The daemon's log file, if it logs to one.
    pub log_file: Option<String>,
    /// The daemon's process id.
    pub daemon_pid: u32,
    /// Writes queued in the background and not yet done.
    #[serde(default)]
    pub pending_writes: u64,
    /// Hits, misses and non-cacheable compiles by language (`rust`, `c`,
    /// `c++`, `asm`, …).
    #[serde(default)]
    pub languages: BTreeMap<String, LanguageStats>,
    /// Each storage backend: hits, misses, errors, bytes, latency.
    #[serde(default)]
    pub backends: Vec<cachepot_storage::metered::BackendStats>,
    /// Build-script runs, counted apart from compiles.
    #[serde(default)]
    pub build_scripts: ScriptStats,
    /// Compiles run on the REAPI engine (`CACHEPOT_REAPI_EXECUTE`).
    #[serde(default)]
    pub remote_executions: u64,
    /// Compiles sent to the engine that ran here after all.
    #[serde(default)]
    pub remote_execution_failures: u64,
    /// The rest of remote execution's figures.
    #[serde(default)]
    pub remote_execution: RemoteStats,
}

/// Remote execution's figures beyond the two counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteStats {
    /// Why compiles sent to the engine ran here, by reason.
    pub failure_reasons: BTreeMap<String, u64>,
    /// Why missed compiles were not sent at all (linked crates, …).
    pub kept_local: BTreeMap<String, u64>,
    /// Bytes uploaded (inputs the engine lacked) and downloaded.
    pub bytes_uploaded: u64,
    pub bytes_downloaded: u64,
    /// Time the actions spent queued and executing, per the engine.
    pub queued_ms: u64,
    pub executing_ms: u64,
    /// Time from building the action to its outputs written here: what
    /// the compiles cost in all (beyond `executing_ms`: uploads, queueing,
    /// the worker's input fetch, downloads).
    #[serde(default)]
    pub wall_ms: u64,
}

/// The counts of build-script runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScriptStats {
    /// Runs replayed from the cache.
    pub hits: u64,
    /// Runs not found, which ran.
    pub misses: u64,
    /// Runs that failed (never stored).
    pub failed: u64,
    /// Runs not looked up or not stored, by reason.
    pub not_cached: BTreeMap<String, u64>,
}

/// What kind of work a hit or miss is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work<'a> {
    /// A compile, in its language (`rust`, `c`, `c++`, `asm`, …).
    Compile(&'a str),
    /// A build script's run.
    BuildScript,
}

/// The counts of one language.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LanguageStats {
    /// Compiles answered from the cache.
    pub hits: u64,
    /// Cacheable compiles not found.
    pub misses: u64,
    /// Compiles that cannot be cached.
    pub non_cacheable: u64,
}

/// What the daemon counts; the storage figures are filled in at snapshot time.
#[derive(Default)]
pub struct Stats {
    inner: Mutex<(StatsSnapshot, Vec<u32>)>,
}

/// One countable event.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A compile was requested.
    Request,
    /// A hit.
    Hit,
    /// A miss.
    Miss,
    /// A storage or restore error.
    Error,
    /// A corrupt entry.
    Corrupt,
    /// An entry of another format version.
    OtherVersion,
    /// A store dropped at a full write queue.
    WriteDropped,
    /// A panic caught in a daemon thread.
    Panic,
    /// A value prefetched into the local tier.
    Prefetched,
    /// A hit verified.
    Verified,
    /// A verified hit that differed.
    VerifyMismatch,
    /// A hit picked for verifying that cannot be.
    VerifyUnverifiable,
    /// A failed compile.
    CompileFailure,
    /// An entry written.
    Write,
    /// A write skipped because a source changed during the compile.
    WriteSkipped,
    /// A write refused as too large for a backend.
    TooLarge,
}

impl Stats {
    fn with<R>(&self, f: impl FnOnce(&mut (StatsSnapshot, Vec<u32>)) -> R) -> R {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g)
    }

    /// Counts an event.
    pub fn count(&self, e: Event) {
        self.with(|(s, _)| {
            let c = match e {
                Event::Request => &mut s.compile_requests,
                Event::Hit => &mut s.cache_hits,
                Event::Miss => &mut s.cache_misses,
                Event::Error => &mut s.cache_errors,
                Event::Corrupt => {
                    s.cache_errors += 1;
                    &mut s.corrupt_entries
                }
                Event::CompileFailure => &mut s.compile_failures,
                Event::Write => &mut s.cache_writes,
                Event::WriteSkipped => &mut s.cache_writes_skipped,
                Event::TooLarge => &mut s.cache_writes_too_large,
                Event::OtherVersion => &mut s.other_version_entries,
                Event::WriteDropped => &mut s.cache_writes_dropped,
                Event::Panic => &mut s.panics,
                Event::Prefetched => &mut s.prefetched,
                Event::Verified => &mut s.verified,
                Event::VerifyMismatch => &mut s.verify_mismatches,
                Event::VerifyUnverifiable => &mut s.verify_unverifiable,
            };
            *c += 1;
        });
    }

    /// Counts a hit or miss of one language (and in the totals).
    pub fn count_in(&self, lang: &str, e: Event) {
        self.count(e);
        self.with(|(s, _)| {
            let l = s.languages.entry(lang.to_string()).or_default();
            match e {
                Event::Hit => l.hits += 1,
                Event::Miss => l.misses += 1,
                _ => {}
            }
        });
    }

    /// Counts a hit or miss of a kind of work: a compile's in its
    /// language and the totals, a build script's apart.
    pub fn count_work(&self, work: Work<'_>, e: Event) {
        match work {
            Work::Compile(lang) => self.count_in(lang, e),
            Work::BuildScript => self.with(|(s, _)| match e {
                Event::Hit => s.build_scripts.hits += 1,
                Event::Miss => s.build_scripts.misses += 1,
                Event::CompileFailure => s.build_scripts.failed += 1,
                _ => {}
            }),
        }
    }

    /// Counts a build-script run that was not looked up or not stored.
    pub fn script_not_cached(&self, reason: &str) {
        self.with(|(s, _)| {
            *s.build_scripts
                .not_cached
                .entry(reason.to_string())
                .or_default() += 1;
        });
    }

    /// Counts a non-cacheable compile of one language with its reason.
    pub fn non_cacheable_in(&self, lang: &str, reason: &str) {
        self.non_cacheable(reason);
        self.with(|(s, _)| {
            s.languages
                .entry(lang.to_string())
                .or_default()
                .non_cacheable += 1;
        });
    }

    /// Counts a non-cacheable compile with its reason.
    pub fn non_cacheable(&self, reason: &str) {
        self.with(|(s, _)| {
            s.non_cacheable += 1;
            *s.non_cacheable_reasons
                .entry(reason.to_string())
                .or_default() += 1;
        });
    }

    /// Records the wrapper-measured time of a hit.
    pub fn hit_time(&self, micros: u64) {
        self.with(|(_, times)| {
            if times.len() >= HIT_TIMES_KEPT {
                times.remove(0);
            }
            times.push(u32::try_from(micros).unwrap_or(u32::MAX));
        });
    }

    /// A compile ran on the engine.
    pub fn remote_done(
        &self,
        uploaded: u64,
        downloaded: u64,
        queued: Option<std::time::Duration>,
        executing: Option<std::time::Duration>,
        wall: std::time::Duration,
    ) {
        let ms = |d: Option<std::time::Duration>| {
            d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        self.with(|(s, _)| {
            s.remote_executions += 1;
            let r = &mut s.remote_execution;
            r.bytes_uploaded += uploaded;
            r.bytes_downloaded += downloaded;
            r.queued_ms += ms(queued);
            r.executing_ms += ms(executing);
            r.wall_ms += ms(Some(wall));
        });
    }

    /// A compile sent to the engine runs here.
    pub fn remote_failed(&self, reason: &str) {
        self.with(|(s, _)| {
            s.remote_execution_failures += 1;
            *s.remote_execution
                .failure_reasons
                .entry(reason.to_string())
                .or_default() += 1;
        });
    }

    /// A missed compile of a kind that is not sent to the engine.
    pub fn kept_local(&self, reason: &str) {
        self.with(|(s, _)| {
            *s.remote_execution
                .kept_local
                .entry(reason.to_string())
                .or_default() += 1;
        });
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.with(|(s, times)| {
            let mut out = s.clone();
            let mut sorted = times.clone();
            sorted.sort_unstable();
            if !sorted.is_empty() {
                out.hit_time_median_us = Some(u64::from(sorted[sorted.len() / 2]));
                out.hit_time_p90_us = Some(u64::from(sorted[sorted.len() * 9 / 10]));
            }
            out
        })
    }

    /// Resets every counter.
    pub fn zero(&self) {
        self.with(|(s, times)| {
            *s = StatsSnapshot::default();
            times.clear();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reasons_and_hit_time_percentiles() {
        let s = Stats::default();
        s.count(Event::Request);
        s.count(Event::Corrupt);
        s.non_cacheable("crate-type bin");
        s.non_cacheable("crate-type bin");
        for t in [5, 1, 3, 2, 4] {
            s.hit_time(t);
        }
        let snap = s.snapshot();
        assert_eq!(snap.compile_requests, 1);
        assert_eq!((snap.cache_errors, snap.corrupt_entries), (1, 1));
        assert_eq!(snap.non_cacheable_reasons["crate-type bin"], 2);
        assert_eq!(snap.hit_time_median_us, Some(3));
        s.count_in("c", Event::Hit);
        s.count_in("c", Event::Miss);
        s.non_cacheable_in("c", "linking");
        let snap = s.snapshot();
        assert_eq!(snap.cache_hits, 1);
        assert_eq!(snap.non_cacheable_reasons["linking"], 1);
        assert_eq!(
            snap.languages["c"],
            LanguageStats {
                hits: 1,
                misses: 1,
                non_cacheable: 1
            }
        );
        s.zero();
        assert_eq!(s.snapshot().non_cacheable, 0);
        assert_eq!(s.snapshot().hit_time_median_us, None);
    }
}
