//! `CACHEPOT_VERIFY`: a hit compiled (or a build script run) again, and
//! every output the entry holds compared with what the fresh work wrote.
//! The fresh outputs are the ones left in place; an entry that differs is
//! counted, logged with the unit and the outputs that differ, and removed
//! from every tier.
//!
//! A build script may not give the same files twice (a log that names
//! the compiler's random temporary files, a timestamp). When its run
//! differs from the entry, it runs once more (the first run's `OUT_DIR`
//! set aside): what differs between the two real runs cannot be verified,
//! and only a difference in what the runs agree on is a mismatch.

use std::path::PathBuf;

use cachepot_compiler::rust::Role;
use cachepot_compiler::BaseDirs;
use cachepot_storage::{Entry, StorageKey, Verdict};

use super::storage::entry_key;
use super::{script, Pending, PendingKind};
use crate::stats::Event;
use crate::Shared;

/// One output that differs from the entry.
struct Difference {
    /// The output: its entry name, a path in `OUT_DIR`, or `stdout`.
    what: String,
    /// How it differs.
    how: String,
}

/// What verifying a finished compile or run leaves to do.
pub enum Verified {
    /// Nothing more.
    Done,
    /// A build script's run differs from its entry: it runs once more.
    RunAgain(Box<SecondRun>),
}

/// A build script's run that differed, waiting for its second run.
pub struct SecondRun {
    key: StorageKey,
    entry: Entry,
    /// Where the first run's `OUT_DIR` was moved.
    aside: PathBuf,
    /// The first run's standard output.
    stdout: Vec<u8>,
}

impl SecondRun {
    /// Puts the first run's files back (the second run did not finish).
    pub fn abandon(self, p: &Pending) {
        if let PendingKind::Script(sp) = &p.kind {
            let _ = std::fs::remove_dir_all(sp.out_dir());
            if let Err(e) = std::fs::rename(&self.aside, sp.out_dir()) {
                tracing::warn!(error = %e, "putting a build script's first run back failed");
            }
        }
    }
}

/// Reads the entry a verified hit came from.
fn read_entry(shared: &Shared, key: &StorageKey) -> Option<Entry> {
    let mut entry = None;
    let read = shared
        .storage
        .get_each(key, &mut |bytes| match Entry::decode(bytes) {
            Ok(e) => {
                entry = Some(e);
                Verdict::Stop
            }
            Err(_) => Verdict::Pass,
        });
    if entry.is_none() {
        tracing::debug!(key = %key.as_str(), error = ?read.err(), "entry to verify is gone");
    }
    entry
}

/// Compares a verified hit's entry with the outputs of its fresh compile
/// (or run: then its directives too, and no file may be left that the
/// entry lacks).
pub fn verify(shared: &Shared, p: &Pending, stdout: &[u8]) -> Verified {
    let Some(v) = &p.verify else {
        return Verified::Done;
    };
    let Ok(key) = entry_key(&v.key) else {
        return Verified::Done;
    };
    let Some(entry) = read_entry(shared, &key) else {
        return Verified::Done;
    };
    let differs = differences(&entry, p, stdout);
    if differs.is_empty() {
        shared.stats.count(Event::Verified);
        tracing::debug!(unit = %p.unit.unit, key = %key.as_str(), "verified");
        return Verified::Done;
    }
    if let PendingKind::Script(sp) = &p.kind {
        match set_aside(sp.out_dir()) {
            Ok(aside) => {
                return Verified::RunAgain(Box::new(SecondRun {
                    key,
                    entry,
                    aside,
                    stdout: stdout.to_vec(),
                }))
            }
            Err(e) => tracing::warn!(error = %e, "setting a build script's run aside failed"),
        }
    }
    mismatch(shared, p, &key, &differs);
    Verified::Done
}

/// After a build script's second run: what differs between the two real
/// runs is not verifiable; what differs from the entry besides is a
/// mismatch.
pub fn verify_second(shared: &Shared, p: &Pending, second: SecondRun, stdout: &[u8]) {
    let PendingKind::Script(sp) = &p.kind else {
        return;
    };
    let mut unstable = script::out_dir::differing_paths(&second.aside, sp.out_dir());
    if script::directives_of(&second.stdout) != script::directives_of(stdout) {
        unstable.push("stdout".into());
    }
    let _ = std::fs::remove_dir_all(&second.aside);
    let differs: Vec<Difference> = differences(&second.entry, p, stdout)
        .into_iter()
        .filter(|d| !unstable.contains(&d.what))
        .collect();
    if differs.is_empty() {
        shared.stats.count(Event::VerifyUnverifiable);
        tracing::info!(
            unit = %p.unit.unit,
            unstable = ?unstable,
            "verify: two runs of this build script differ; the replay matched them wherever they agree"
        );
        return;
    }
    mismatch(shared, p, &second.key, &differs);
}

/// Moves a run's `OUT_DIR` aside and leaves it empty.
fn set_aside(out_dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let mut name = out_dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".cachepot-verify-{}", std::process::id()));
    let aside = out_dir.with_file_name(name);
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::rename(out_dir, &aside)?;
    std::fs::create_dir(out_dir)?;
    Ok(aside)
}

/// Counts, logs and removes an entry that differs from the real work.
fn mismatch(shared: &Shared, p: &Pending, key: &StorageKey, differs: &[Difference]) {
    shared.stats.count(Event::VerifyMismatch);
    let inputs: Vec<String> = p
        .unit
        .inputs
        .iter()
        .map(|i| format!("{}={}", i.name, i.value))
        .collect();
    let differs: Vec<String> = differs
        .iter()
        .map(|d| format!("{}: {}", d.what, d.how))
        .collect();
    tracing::warn!(
        unit = %p.unit.unit,
        key = %key.as_str(),
        differs = ?differs,
        inputs = ?inputs,
        "verify: a cached entry differs from a fresh compile; the fresh outputs stay and the entry is removed"
    );
    if let Err(e) = shared.storage.remove(key) {
        tracing::warn!(key = %key.as_str(), error = %e, "removing the entry that failed verification");
    }
}

/// The outputs of the fresh work that differ from the entry.
fn differences(entry: &Entry, p: &Pending, stdout: &[u8]) -> Vec<Difference> {
    let Some(v) = &p.verify else {
        return Vec::new();
    };
    // Under the default path policy an output may embed the storing
    // build's directories (debug info names the target directory of a
    // generated source): outputs are compared with each build's base
    // directories as tokens. An entry that does not record them is
    // compared byte for byte.
    let stored_bases = super::stored_bases(entry);
    let mut differs = Vec::new();
    if let PendingKind::Script(sp) = &p.kind {
        if script::directives_differ(entry, p, stdout) {
            differs.push(Difference {
                what: "stdout".into(),
                how: "other directives".into(),
            });
        }
        for extra in script::unexpected_files(entry, sp) {
            differs.push(Difference {
                what: extra,
                how: "not in the entry".into(),
            });
        }
    }
    for file in &entry.files {
        let Some(role) = Role::parse(&file.name) else {
            continue;
        };
        let path = v.dest.path_of(&role);
        let (Some(path), Some(stored)) = (path, file.data.bytes()) else {
            continue;
        };
        // A file of `OUT_DIR` is named by its path there, as the two runs
        // of a build script are compared.
        let what = role
            .out_dir_path()
            .map_or_else(|| role.to_string(), str::to_string);
        let fresh = match &role {
            Role::OutDir(_) if path.is_dir() => continue,
            Role::OutLink(_) => std::fs::read_link(&path).map(|t| {
                p.bases
                    .normalize(std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str()))
            }),
            _ => std::fs::read(&path),
        };
        let fresh = match fresh {
            Ok(b) if role.rewrites_paths() => p.bases.normalize(&b),
            Ok(b) => b,
            Err(e) => {
                differs.push(Difference {
                    what,
                    how: e.to_string(),
                });
                continue;
            }
        };
        if !same(&fresh, stored, &role, &p.bases, stored_bases.as_ref()) {
            differs.push(Difference {
                what,
                how: format!(
                    "{} bytes made now, {} bytes cached",
                    fresh.len(),
                    stored.len()
                ),
            });
        }
    }
    differs
}

/// Whether fresh bytes are the stored ones, up to the base directories of
/// each build when the entry records its own.
fn same(
    fresh: &[u8],
    stored: &[u8],
    role: &Role,
    bases: &BaseDirs,
    stored_bases: Option<&BaseDirs>,
) -> bool {
    if fresh == stored {
        return true;
    }
    match stored_bases {
        Some(b) if !role.rewrites_paths() => bases.normalize(fresh) == b.normalize(stored),
        _ => false,
    }
}
