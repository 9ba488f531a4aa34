//! `CACHEPOT_VERIFY`: a hit compiled again, and every output the entry
//! holds compared with what the compiler just wrote. The fresh outputs are
//! the ones left in place; an entry that differs is counted, logged with
//! the unit and the outputs that differ, and removed from every tier.

use cachepot_compiler::rust::Role;
use cachepot_storage::{Entry, Verdict};

use super::storage::entry_key;
use super::{script, Pending, PendingKind};
use crate::stats::Event;
use crate::Shared;

/// Compares a verified hit's entry with the outputs of its fresh compile
/// (or run: then its standard output too, and no file may be left that
/// the entry lacks).
pub fn verify(shared: &Shared, p: &Pending, stdout: &[u8]) {
    let Some(v) = &p.verify else { return };
    let Ok(key) = entry_key(&v.key) else { return };
    let mut entry = None;
    let read = shared
        .storage
        .get_each(&key, &mut |bytes| match Entry::decode(bytes) {
            Ok(e) => {
                entry = Some(e);
                Verdict::Stop
            }
            Err(_) => Verdict::Pass,
        });
    let Some(entry) = entry else {
        tracing::debug!(key = %key, error = ?read.err(), "entry to verify is gone");
        return;
    };
    let mut differs = Vec::new();
    if let PendingKind::Script(sp) = &p.kind {
        if script::stdout_differs(&entry, p, stdout) {
            differs.push("stdout".to_string());
        }
        for extra in script::unexpected_files(&entry, sp) {
            differs.push(format!("{extra}: not in the entry"));
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
                differs.push(format!("{role}: {e}"));
                continue;
            }
        };
        if fresh != stored {
            differs.push(format!(
                "{role}: {} bytes compiled, {} bytes cached",
                fresh.len(),
                stored.len()
            ));
        }
    }
    if differs.is_empty() {
        shared.stats.count(Event::Verified);
        tracing::debug!(unit = %p.unit.unit, key = %key, "verified");
        return;
    }
    shared.stats.count(Event::VerifyMismatch);
    let inputs: Vec<String> = p
        .unit
        .inputs
        .iter()
        .map(|i| format!("{}={}", i.name, i.value))
        .collect();
    tracing::warn!(
        unit = %p.unit.unit,
        key = %key,
        differs = ?differs,
        inputs = ?inputs,
        "verify: a cached entry differs from a fresh compile; the fresh outputs stay and the entry is removed"
    );
    if let Err(e) = shared.storage.remove(&key) {
        tracing::warn!(key = %key, error = %e, "removing the entry that failed verification");
    }
}
