//! `cachepot --check-storage`: writes, reads and deletes a probe entry on
//! each configured storage tier and says what works, and for what fails,
//! the backend's own error and the likely fix.

use std::sync::Arc;

use anyhow::Result;
use cachepot_storage::remote::hint;
use cachepot_storage::{Storage, StorageKey};

use crate::config::Config;
use crate::daemon::Tiers;

/// Probes one tier; returns whether it works.
fn probe(name: &str, storage: &Arc<dyn Storage>) -> bool {
    let info = storage.describe();
    println!("{name}: {} at {}", info.kind, info.location);
    let read_only = info.kind.ends_with("(read-only)");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = match StorageKey::new(format!("probe-{}-{nanos}", std::process::id())) {
        Ok(k) => k,
        Err(e) => {
            println!("  error: {e}");
            return false;
        }
    };
    let value = format!("cachepot storage probe {nanos}").into_bytes();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let text = e.to_string();
        println!("  {what}: FAILED\n    {text}");
        if let Some(h) = hint(&text) {
            println!("    hint: {h}");
        }
        false
    };
    if read_only {
        println!("  write: skipped (read-only)");
        return match storage.get(&key) {
            Ok(_) => {
                println!("  read: ok");
                true
            }
            Err(e) => fail("read", &e),
        };
    }
    if let Err(e) = storage.put(&key, &value) {
        return fail("write", &e);
    }
    println!("  write: ok");
    match storage.get(&key) {
        Ok(Some(v)) if v == value => println!("  read: ok"),
        Ok(Some(_)) => return fail("read", &"the value read back differs from the one written"),
        Ok(None) => return fail("read", &"the value just written is not there"),
        Err(e) => return fail("read", &e),
    }
    if let Err(e) = storage.remove(&key) {
        return fail("delete", &e);
    }
    println!("  delete: ok");
    true
}

/// Runs the check; exit code 0 when every tier works, 1 otherwise.
pub fn run() -> Result<i32> {
    let config = Config::load()?;
    let tiers = Tiers::open(&config)?;
    let mut ok = true;
    if let Some(local) = &tiers.local {
        ok &= probe("local", local);
    }
    if let Some(remote) = &tiers.remote {
        ok &= probe("remote", remote);
    }
    println!(
        "{}",
        if ok {
            "All storage works."
        } else {
            "Some storage does not work (see above)."
        }
    );
    Ok(if ok { 0 } else { 1 })
}
