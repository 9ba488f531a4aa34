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

/// `cachepot --check-remote`: the REAPI engine's capabilities, a probe of
/// its store, and one tiny action executed end to end when it executes;
/// exit code 0 when all of that works.
pub fn run_remote() -> Result<i32> {
    let config = Config::load()?;
    let Some(settings) = config.reapi.clone() else {
        println!("No REAPI engine configured: set CACHEPOT_REAPI_ENDPOINT (grpc://HOST:PORT).");
        return Ok(1);
    };
    let instance = if settings.instance.is_empty() {
        "(empty)".to_string()
    } else {
        settings.instance.clone()
    };
    println!("engine: {}, instance {instance}", settings.endpoint);
    let platform = settings.platform.clone();
    let reapi = match cachepot_dist::Reapi::new(settings, config.remote_timeout) {
        Ok(r) => r,
        Err(e) => {
            println!("  FAILED: {e}");
            return Ok(1);
        }
    };
    let failed = |e: &cachepot_dist::CallError| {
        println!("  FAILED\n    {e}");
        if let Some(h) = e.hint {
            println!("    hint: {h}");
        }
        Ok(1)
    };
    let caps = match reapi.capabilities() {
        Ok(c) => c,
        Err(e) => {
            println!("capabilities:");
            return failed(&e);
        }
    };
    println!(
        "capabilities: API {}, digests {}, batch limit {} bytes, compressors {}, execution {}",
        caps.api,
        caps.digest_functions.join(" "),
        caps.max_batch_total_size_bytes,
        if caps.compressors.is_empty() {
            "none".to_string()
        } else {
            caps.compressors.join(" ")
        },
        if caps.execution { "yes" } else { "no" }
    );
    if !caps.digest_functions.iter().any(|d| d == "SHA256") {
        println!("  FAILED: the engine's CAS does not take SHA-256 digests, which cachepot uses");
        return Ok(1);
    }
    let reapi = Arc::new(reapi);
    let storage: Arc<dyn Storage> = reapi.clone();
    if !probe("store", &storage) {
        return Ok(1);
    }
    if !caps.execution {
        println!(
            "execution: not offered (a cache-only engine): remote execution cannot be used here."
        );
        println!("The engine works as a store.");
        return Ok(0);
    }
    println!(
        "execution: /bin/sh -c 'echo {}'",
        cachepot_dist::CHECK_OUTPUT
    );
    match reapi.execute_check(&platform) {
        Ok(run) if run.exit_code == 0 && run.stdout.trim() == cachepot_dist::CHECK_OUTPUT => {
            let ms = |d: Option<std::time::Duration>| {
                d.map_or("?".to_string(), |d| format!("{} ms", d.as_millis()))
            };
            println!(
                "  ok: on worker {:?}, {} queued, {} executing",
                run.worker,
                ms(run.queued),
                ms(run.executing)
            );
            println!("The engine works as a store and executes actions.");
            Ok(0)
        }
        Ok(run) => {
            println!(
                "  FAILED: exit code {}, output {:?}",
                run.exit_code, run.stdout
            );
            Ok(1)
        }
        Err(e) => failed(&e),
    }
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
