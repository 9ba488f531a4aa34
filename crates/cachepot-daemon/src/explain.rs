//! Why did this miss? For every compile stored, the daemon keeps the key's
//! named inputs in an index entry per unit (a crate, a C source), so that a
//! later miss of the same unit (in this build, another one, or on another
//! machine sharing the storage) can name the inputs that differ from the
//! closest one stored, with old and new values.

use std::ffi::OsString;
use std::sync::Mutex;

use cachepot_compiler::depinfo::escape_env_value;
use cachepot_compiler::key::{env_value, KeyInput};
use cachepot_compiler::manifest::Manifest;
use cachepot_compiler::BaseDirs;
use cachepot_storage::{Entry, StorageKey};
use serde::{Deserialize, Serialize};

use crate::Shared;

/// How an unset `env-dep` variable is shown.
const UNSET: &str = "(unset)";

/// How many stored input lists one unit's index keeps (newest first).
const RECORDS_KEPT: usize = 4;
/// How many explained misses the daemon keeps (the oldest are dropped).
const EXPLAINED_KEPT: usize = 2000;

/// One explained miss.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Explained {
    /// The unit: `rust <crate> <source>` or `c <source>`.
    pub unit: String,
    /// `rust`, `c`, `c++`, …
    pub language: String,
    /// Whether anything was stored for this unit before.
    pub stored_before: bool,
    /// The inputs that differ from the closest stored compile of the unit.
    pub differences: Vec<Difference>,
}

/// One input that differs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Difference {
    /// What the input is: `arg`, `env:CARGO_PKG_VERSION`, `file:src/lib.rs`,
    /// `toolchain`, `extern:0:serde`, …
    pub input: String,
    /// Its value in the closest stored compile (`None`: it had no such input).
    pub stored: Option<String>,
    /// Its value now (`None`: this compile has no such input).
    pub now: Option<String>,
}

/// What a miss keeps to be explained and, once stored, remembered.
#[derive(Clone, Debug, Default)]
pub struct UnitInputs {
    /// The unit's name.
    pub unit: String,
    /// Its language.
    pub language: String,
    /// Part A's named inputs.
    pub inputs: Vec<KeyInput>,
}

/// The explained misses of the current statistics period.
#[derive(Default)]
pub(crate) struct Explanations {
    list: Mutex<Vec<Explained>>,
}

impl Explanations {
    fn push(&self, e: Explained) {
        if let Ok(mut l) = self.list.lock() {
            if l.len() >= EXPLAINED_KEPT {
                l.remove(0);
            }
            l.push(e);
        }
    }

    /// A copy of the list.
    pub fn all(&self) -> Vec<Explained> {
        self.list.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Forgets every explained miss (with the statistics).
    pub fn clear(&self) {
        if let Ok(mut l) = self.list.lock() {
            l.clear();
        }
    }
}

fn index_key(unit: &str) -> Option<StorageKey> {
    let d = cachepot_compiler::Digest::of(unit.as_bytes());
    StorageKey::for_entry("x", &d.to_hex()).ok()
}

fn read_records(shared: &Shared, unit: &str) -> Vec<Vec<KeyInput>> {
    let Some(key) = index_key(unit) else {
        return Vec::new();
    };
    let Ok(Some(bytes)) = shared.storage.get(&key) else {
        return Vec::new();
    };
    Entry::decode(&bytes)
        .ok()
        .and_then(|e| e.meta("records").map(<[u8]>::to_vec))
        .and_then(|m| serde_json::from_slice(&m).ok())
        .unwrap_or_default()
}

/// The inputs a stored compile had: part A's, and each manifest file with
/// its digest.
fn stored_inputs(u: &UnitInputs, manifest: Option<&Manifest>) -> Vec<KeyInput> {
    let mut all = u.inputs.clone();
    if let Some(m) = manifest {
        all.extend(m.files.iter().map(|(p, d)| KeyInput {
            name: format!("file:{}", p.replace('\0', "$")),
            value: format!("blake3:{}", d.to_hex()),
        }));
        all.extend(m.env.iter().map(|(n, v)| KeyInput {
            name: format!("env-dep:{n}"),
            value: v.clone().unwrap_or_else(|| UNSET.into()),
        }));
    }
    all
}

/// After a store: adds the compile's inputs to its unit's index.
pub(crate) fn remember(shared: &Shared, u: &UnitInputs, manifest: Option<&Manifest>) {
    let Some(key) = index_key(&u.unit) else {
        return;
    };
    let record = stored_inputs(u, manifest);
    let mut records = read_records(shared, &u.unit);
    records.retain(|r| *r != record);
    records.insert(0, record);
    records.truncate(RECORDS_KEPT);
    let Ok(json) = serde_json::to_vec(&records) else {
        return;
    };
    let entry = Entry {
        files: Vec::new(),
        meta: vec![("records".into(), json)],
    };
    let result = entry
        .encode()
        .map_err(|e| e.to_string())
        .and_then(|b| shared.storage.put(&key, &b).map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::debug!(unit = %u.unit, error = %e, "explain index not written");
    }
}

/// After a miss: compares the compile with the closest stored one of its
/// unit. Source files are compared by their digest now, through the
/// paths the stored compile recorded.
pub(crate) fn explain_miss(
    shared: &Shared,
    u: &UnitInputs,
    cwd: &std::path::Path,
    bases: &BaseDirs,
    env: &[(OsString, OsString)],
) {
    let records = read_records(shared, &u.unit);
    // An `env-dep` value as a manifest keeps it (see `Manifest::from_depinfo`).
    let env_now = |name: &str| -> String {
        match env_value(env, name) {
            None => UNSET.into(),
            Some(v) => {
                let v = escape_env_value(&v.to_string_lossy());
                if name == "OUT_DIR" {
                    bases.normalize_str(&v)
                } else {
                    v
                }
            }
        }
    };
    let digest_now = |name: &str| -> Option<String> {
        let path = name.strip_prefix("file:")?.replace('$', "\0");
        Some(
            match cachepot_compiler::manifest::digest_now(
                &path,
                cwd,
                bases,
                shared.digests.as_ref(),
            ) {
                Some(d) => format!("blake3:{}", d.to_hex()),
                None => "(missing)".into(),
            },
        )
    };
    let best = records
        .iter()
        .map(|stored| {
            let mut now = u.inputs.clone();
            for i in stored {
                let value = if i.name.starts_with("file:") {
                    digest_now(&i.name).unwrap_or_default()
                } else if let Some(n) = i.name.strip_prefix("env-dep:") {
                    env_now(n)
                } else {
                    continue;
                };
                now.push(KeyInput {
                    name: i.name.clone(),
                    value,
                });
            }
            differences(stored, &now)
        })
        .min_by_key(Vec::len);
    shared.explanations.push(Explained {
        unit: u.unit.clone(),
        language: u.language.clone(),
        stored_before: best.is_some(),
        differences: best.unwrap_or_default(),
    });
}

/// The inputs that differ between two lists. A name that occurs once on
/// each side is compared by value; repeated names (`arg`) are compared as
/// lists, each value missing on one side named.
pub fn differences(stored: &[KeyInput], now: &[KeyInput]) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut names: Vec<&str> = stored.iter().chain(now).map(|i| i.name.as_str()).collect();
    names.dedup();
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let values = |list: &[KeyInput]| -> Vec<String> {
            list.iter()
                .filter(|i| i.name == name)
                .map(|i| i.value.clone())
                .collect()
        };
        let (old, new) = (values(stored), values(now));
        if old == new {
            continue;
        }
        if old.len() <= 1 && new.len() <= 1 {
            out.push(Difference {
                input: name.to_string(),
                stored: old.first().cloned(),
                now: new.first().cloned(),
            });
            continue;
        }
        for v in old.iter().filter(|v| !new.contains(v)) {
            out.push(Difference {
                input: name.to_string(),
                stored: Some(v.clone()),
                now: None,
            });
        }
        for v in new.iter().filter(|v| !old.contains(v)) {
            out.push(Difference {
                input: name.to_string(),
                stored: None,
                now: Some(v.clone()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(name: &str, value: &str) -> KeyInput {
        KeyInput {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn single_inputs_by_value_and_repeated_ones_as_lists() {
        let stored = [
            i("toolchain", "a"),
            i("arg", "-O"),
            i("arg", "--cfg=x"),
            i("env:V", "1"),
            i("file:src/a.rs", "d1"),
        ];
        let now = [
            i("toolchain", "a"),
            i("arg", "-O"),
            i("arg", "--cfg=y"),
            i("env:W", "2"),
            i("file:src/a.rs", "d2"),
        ];
        let d = differences(&stored, &now);
        let shown: Vec<String> = d
            .iter()
            .map(|d| format!("{} {:?} {:?}", d.input, d.stored, d.now))
            .collect();
        assert_eq!(
            shown,
            [
                "arg Some(\"--cfg=x\") None",
                "arg None Some(\"--cfg=y\")",
                "env:V Some(\"1\") None",
                "file:src/a.rs Some(\"d1\") Some(\"d2\")",
                "env:W None Some(\"2\")",
            ]
        );
        assert!(differences(&now, &now).is_empty());
    }
}
