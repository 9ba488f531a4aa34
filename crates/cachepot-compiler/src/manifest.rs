//! Manifests: the files (with digests) and `env-dep` variables (with
//! values) that an earlier compile read, as its dependency file recorded
//! them. A key's part A names a list of manifests; the manifest that still
//! matches the files on disk names the entry (part B). rustc and the C
//! compilers share this format; C manifests have no `env-dep` lines.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::depinfo::{escape_env_value, DepInfo};
use crate::digest::{Digest, FileDigester};
use crate::key::{env_value, Key, KeyBuilder};
use crate::paths::BaseDirs;

/// `env-dep` variables whose value is compared relative to the base
/// directories (see the table at the top).
const BASE_RELATIVE_ENV_DEPS: &[&str] = &["OUT_DIR"];

/// An `env-dep` value as the manifest keeps it: exact, except for
/// [`BASE_RELATIVE_ENV_DEPS`].
fn env_dep_value(name: &str, value: &str, bases: &BaseDirs) -> String {
    if BASE_RELATIVE_ENV_DEPS.contains(&name) {
        bases.normalize_str(value)
    } else {
        value.to_string()
    }
}

/// The digest a manifest records for a path that did not exist (a build
/// script's `rerun-if-changed` may name one): it matches while the path
/// is still missing.
pub const ABSENT: Digest = Digest([0; 32]);

/// The digest of a manifest path as it is now: a path ending in `/` is a
/// directory tree (see [`crate::script::tree`]), a missing file is
/// [`ABSENT`].
pub fn digest_now(
    path: &str,
    cwd: &Path,
    bases: &BaseDirs,
    digester: &dyn FileDigester,
) -> Option<Digest> {
    let tree = path.strip_suffix('/');
    let full = bases.restore_path(tree.unwrap_or(path), cwd)?;
    if tree.is_some() {
        return crate::script::tree::digest(&full, digester).ok();
    }
    match digester.digest(&full) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(ABSENT),
        Err(_) => None,
    }
}

/// The inputs an earlier compile read, as its dep-info recorded them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Normalised path (relative paths stay relative to the working
    /// directory) and content digest.
    pub files: Vec<(String, Digest)>,
    /// `env-dep` name and value as rustc escaped it.
    pub env: Vec<(String, Option<String>)>,
    /// How the values in `env` are compared.
    pub env_values: EnvValues,
}

/// How a manifest's variables are compared with a compile's environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EnvValues {
    /// Exactly, but `OUT_DIR` base-relative (rustc's `env-dep`: a value
    /// may be embedded in the output and used at run time).
    #[default]
    Exact,
    /// Every value base-relative (a build script's `rerun-if-env-changed`:
    /// its directives and text outputs are restored for each checkout).
    BaseRelative,
}

impl EnvValues {
    /// A value as the manifest keeps it.
    fn keep(self, name: &str, value: &str, bases: &BaseDirs) -> String {
        match self {
            EnvValues::Exact => env_dep_value(name, value, bases),
            EnvValues::BaseRelative => bases.normalize_str(value),
        }
    }
}

/// Why a manifest could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A listed file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A path holds a newline, which the manifest format cannot store.
    #[error("path with a newline: {0:?}")]
    Newline(String),
    /// Stored text that is not a manifest.
    #[error("malformed manifest")]
    Malformed,
}

impl Manifest {
    /// Builds a manifest from the dep-info a compile wrote.
    pub fn from_depinfo(
        info: &DepInfo,
        cwd: &Path,
        bases: &BaseDirs,
        digester: &dyn FileDigester,
    ) -> Result<Manifest, ManifestError> {
        let mut files = Vec::with_capacity(info.files.len());
        for f in &info.files {
            if f.contains('\n') {
                return Err(ManifestError::Newline(f.clone()));
            }
            let path = cwd.join(f);
            let d = digester
                .digest(&path)
                .map_err(|source| ManifestError::Read { path, source })?;
            files.push((bases.normalize_str(f), d));
        }
        Ok(Manifest {
            files,
            env: info
                .env
                .iter()
                .map(|(n, v)| (n.clone(), v.as_ref().map(|v| env_dep_value(n, v, bases))))
                .collect(),
            env_values: EnvValues::Exact,
        })
    }

    /// The files this manifest names, as paths of this compile (a
    /// directory without its trailing `/`).
    pub fn paths(&self, cwd: &Path, bases: &BaseDirs) -> Option<Vec<PathBuf>> {
        self.files
            .iter()
            .map(|(p, _)| bases.restore_path(p.strip_suffix('/').unwrap_or(p), cwd))
            .collect()
    }

    /// Whether this compile's files and environment are those recorded.
    pub fn matches(
        &self,
        cwd: &Path,
        bases: &BaseDirs,
        env: &[(OsString, OsString)],
        digester: &dyn FileDigester,
    ) -> bool {
        if !self.env_matches(env, bases) {
            return false;
        }
        self.files
            .iter()
            .all(|(p, d)| digest_now(p, cwd, bases, digester) == Some(*d))
    }

    /// Whether every recorded `env-dep` variable has its recorded value.
    pub fn env_matches(&self, env: &[(OsString, OsString)], bases: &BaseDirs) -> bool {
        self.env.iter().all(|(name, recorded)| {
            let now = env_value(env, name).map(|v| {
                self.env_values
                    .keep(name, &escape_env_value(&v.to_string_lossy()), bases)
            });
            now == *recorded
        })
    }

    /// Part B: the entry's key.
    pub fn key_b(&self, a: &Digest) -> Key {
        let mut b = KeyBuilder::new("rust-b");
        b.add_digest("a", a);
        for (p, d) in &self.files {
            b.add_digest(&format!("file:{p}"), d);
        }
        for (n, v) in &self.env {
            b.add(
                &format!("env-dep:{n}"),
                v.as_deref().unwrap_or("\0unset").as_bytes(),
            );
        }
        if self.env_values == EnvValues::BaseRelative {
            b.add("env-values", b"base-relative");
        }
        b.finish()
    }
}

/// A manifest in a part-A list, with the time it was stored (seconds since
/// the epoch), so that lists read from several tiers or machines merge
/// newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The manifest.
    pub manifest: Manifest,
    /// When it was stored.
    pub at: u64,
}

/// Serialises a list of manifests (one text block each, headed by
/// `manifest <time>`).
pub fn encode_list(list: &[Stored]) -> String {
    let mut s = String::new();
    for Stored { manifest: m, at } in list {
        let _ = writeln!(s, "manifest {at}");
        if m.env_values == EnvValues::BaseRelative {
            let _ = writeln!(s, "env base-relative");
        }
        for (p, d) in &m.files {
            let _ = writeln!(s, "f {} {p}", d.to_hex());
        }
        for (n, v) in &m.env {
            match v {
                Some(v) => {
                    let _ = writeln!(s, "e {n}={v}");
                }
                None => {
                    let _ = writeln!(s, "u {n}");
                }
            }
        }
    }
    s
}

/// Parses what [`encode_list`] wrote.
pub fn decode_list(text: &str) -> Result<Vec<Stored>, ManifestError> {
    let mut out: Vec<Stored> = Vec::new();
    for line in text.lines() {
        if let Some(at) = line.strip_prefix("manifest ") {
            out.push(Stored {
                manifest: Manifest {
                    files: Vec::new(),
                    env: Vec::new(),
                    env_values: EnvValues::Exact,
                },
                at: at.parse().map_err(|_| ManifestError::Malformed)?,
            });
            continue;
        }
        let m = &mut out.last_mut().ok_or(ManifestError::Malformed)?.manifest;
        if let Some(rest) = line.strip_prefix("f ") {
            let (hex, path) = rest.split_once(' ').ok_or(ManifestError::Malformed)?;
            let d = Digest::from_hex(hex).ok_or(ManifestError::Malformed)?;
            m.files.push((path.to_string(), d));
        } else if let Some(rest) = line.strip_prefix("e ") {
            let (n, v) = rest.split_once('=').ok_or(ManifestError::Malformed)?;
            m.env.push((n.to_string(), Some(v.to_string())));
        } else if let Some(n) = line.strip_prefix("u ") {
            m.env.push((n.to_string(), None));
        } else if line == "env base-relative" {
            m.env_values = EnvValues::BaseRelative;
        } else {
            return Err(ManifestError::Malformed);
        }
    }
    Ok(out)
}

/// Merges manifest lists (from the tiers, and a new manifest): each
/// manifest once, at its newest time, newest first, `keep` at most.
/// Merging instead of overwriting is what lets two machines that store
/// for one key keep both manifests, and repairs a list that lost one to a
/// concurrent write the next time the loser stores.
pub fn merge_lists(lists: impl IntoIterator<Item = Vec<Stored>>, keep: usize) -> Vec<Stored> {
    let mut all: Vec<Stored> = lists.into_iter().flatten().collect();
    // Newest first; the sort is stable, so equal times keep list order.
    all.sort_by_key(|s| std::cmp::Reverse(s.at));
    let mut out: Vec<Stored> = Vec::with_capacity(keep.min(all.len()));
    for s in all {
        if out.len() == keep {
            break;
        }
        if !out.iter().any(|o| o.manifest == s.manifest) {
            out.push(s);
        }
    }
    out
}
