//! Build-script runs, the third kind of cached work. Cargo runs a build
//! script's binary directly; cachepot compiled that binary, and left a
//! launcher in its place (see [`launcher`]) that asks the daemon first.
//! A hit writes the stored run's `OUT_DIR` files back and replays its
//! output; a miss runs the real binary in the wrapper (cargo's
//! environment, working directory and jobserver untouched) and stores
//! what it left, keyed as `cachepot_compiler::script` describes.
//!
//! A run is stored only when its `OUT_DIR` was empty before it ran (what
//! it left is then all its own), it succeeded, its package directory is
//! as it was (it wrote nowhere else that cachepot can see), and every file
//! in `OUT_DIR` is a plain file, directory or symbolic link.

pub(super) mod launcher;
pub(super) mod out_dir;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cachepot_compiler::digest::{Digest, FileDigester};
use cachepot_compiler::paths::{find_target_dir, standard_bases};
use cachepot_compiler::rust::Role;
use cachepot_compiler::script::{self, directives, tree, RunKey};
use cachepot_storage::Entry;

use super::pipeline::{self, Found, Keyed, Plan};
use super::{changed_during, Compile, Dest, Lookup, Pending, PendingKind, StoreJob, Verify};
use crate::explain::UnitInputs;
use crate::memo::resolve_program;
use crate::stats::Work;
use crate::Shared;

/// The language name explanations give build-script runs.
const LANGUAGE: &str = "build-script";

/// Programs of [`script::TOOLS`] that are C compilers, keyed by what they
/// are (version, target, defaults) rather than by their binary.
const C_COMPILERS: &[&str] = &["cc", "c++", "gcc", "g++", "clang", "clang++"];

/// What a missed run keeps until it is done.
pub(super) struct ScriptPending {
    key_a: Digest,
    out_dir: PathBuf,
    /// Whether `OUT_DIR` was empty before the run (else it is not stored).
    out_dir_was_empty: bool,
    /// The package directory's stamp before the run, to see whether it
    /// wrote there.
    package_stamp: Option<Digest>,
}

/// Why a run is not looked up or stored: counted by reason.
fn not_cached(shared: &Shared, reason: &str, detail: impl std::fmt::Display) -> Lookup {
    tracing::debug!(reason, %detail, "build script run not cached");
    shared.stats.script_not_cached(reason);
    Lookup::Uncacheable
}

/// Looks a build script's run up and, on a hit, writes its `OUT_DIR`.
pub(super) fn lookup(shared: &Arc<Shared>, c: &Compile) -> Lookup {
    if !shared.config.build_scripts.enabled {
        return Lookup::Uncacheable;
    }
    let package = c
        .env("CARGO_PKG_NAME")
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    if shared.config.build_scripts.skip.contains(&package) {
        return not_cached(shared, "turned off for the package", &package);
    }
    let Some(out_dir) = c
        .env("OUT_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    else {
        return not_cached(shared, "no OUT_DIR", &package);
    };
    let started = SystemTime::now();
    let timer = std::time::Instant::now();
    let binary = match shared.digests.digest(&c.compiler) {
        Ok(d) => d,
        Err(e) => return not_cached(shared, "build script unreadable", e),
    };
    let bases = standard_bases(
        &c.cwd,
        &c.env,
        find_target_dir(&out_dir),
        &shared.config.basedirs,
    )
    .with_policy(shared.config.path_policy);
    let rustc = match rustc_identity(shared, c) {
        Ok(d) => d,
        Err(e) => return not_cached(shared, "RUSTC unknown", e),
    };
    let tools = tools(shared, c);
    let key = script::key_a(&RunKey {
        binary: &binary,
        args: &c.args,
        env: &c.env,
        bases: &bases,
        rustc: rustc.as_ref(),
        tools: &tools,
        key_env: &shared.config.key_env,
    });
    let out_dir_was_empty = std::fs::read_dir(&out_dir).map_or(true, |mut d| d.next().is_none());
    let dest = Dest {
        out_dir: Some(out_dir.clone()),
        ..Dest::default()
    };
    let plan = Plan {
        work: Work::BuildScript,
        label: &package,
        keyed: Keyed::Manifests(key.digest),
        dest: &dest,
        bases: &bases,
        verifiable: true,
    };
    let found = pipeline::find(shared, c, &plan);
    tracing::debug!(
        package,
        key_us = timer.elapsed().as_micros(),
        "build script run looked up"
    );
    let (claim, verify) = match found {
        Found::Hit(replay) => return Lookup::Hit(replay),
        Found::Miss(claim) => (claim, None),
        Found::Verify(key) => {
            // The real run starts from an empty OUT_DIR, as it would in a
            // fresh target directory, not from the restored files.
            if let Err(e) = empty_dir(&out_dir) {
                tracing::warn!(error = %e, "emptying OUT_DIR to verify a build script failed");
                return Lookup::Uncacheable;
            }
            (None, Some(Verify { key, dest }))
        }
    };
    let version = c
        .env("CARGO_PKG_VERSION")
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    Lookup::Miss(Box::new(Pending {
        kind: PendingKind::Script(Box::new(ScriptPending {
            key_a: key.digest,
            out_dir,
            out_dir_was_empty: out_dir_was_empty || verify.is_some(),
            package_stamp: tree::stamp(&c.cwd).ok(),
        })),
        cwd: c.cwd.clone(),
        env: c.env.clone(),
        bases,
        started,
        extra_args: Vec::new(),
        claim,
        unit: UnitInputs {
            unit: format!("build-script {package} {version}"),
            language: LANGUAGE.into(),
            inputs: key.inputs,
        },
        verify,
    }))
}

/// The identity of the toolchain `RUSTC` names (build scripts ask it for
/// its version); `None` when cargo gave no `RUSTC`.
fn rustc_identity(shared: &Shared, c: &Compile) -> Result<Option<Digest>, String> {
    let Some(rustc) = c.env("RUSTC") else {
        return Ok(None);
    };
    let path = resolve_program(Path::new(rustc), &c.cwd, c.env("PATH"))
        .ok_or_else(|| format!("{} not found", rustc.to_string_lossy()))?;
    let toolchain = shared
        .toolchains
        .probe(&path, &c.cwd, &c.env)
        .map_err(|e| e.to_string())?;
    shared
        .toolchains
        .identity(&toolchain, None, shared.digests.as_ref())
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Every program a build script may run by name, with its identity here.
fn tools(shared: &Shared, c: &Compile) -> Vec<(String, Option<Digest>)> {
    let mut names: Vec<String> = script::TOOLS.iter().map(|t| (*t).to_string()).collect();
    let named = script::named_programs(&c.env);
    for n in &named {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let path =
                resolve_program(Path::new(&name), &c.cwd, c.env("PATH")).filter(|p| p.is_file());
            let id = path.and_then(|p| {
                let compiler = C_COMPILERS.contains(&name.as_str()) || named.contains(&name);
                let probed = compiler
                    .then(|| shared.c_compilers.probe(&p, &c.cwd, &c.env).ok())
                    .flatten();
                match probed {
                    Some(t) => Some(t.identity),
                    None => shared.digests.digest(&p).ok(),
                }
            });
            (name, id)
        })
        .collect()
}

/// Removes everything inside a directory, keeping it.
fn empty_dir(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// After a successful run: what to store, or `None` (with the reason
/// counted) when the run cannot be replayed exactly.
pub(super) fn prepare_store(
    shared: &Arc<Shared>,
    p: &Pending,
    sp: &ScriptPending,
    stdout: &[u8],
    stderr: &[u8],
) -> io::Result<Option<StoreJob>> {
    let skip = |reason: &str| {
        tracing::debug!(unit = %p.unit.unit, reason, "build script run not stored");
        shared.stats.script_not_cached(reason);
        Ok(None)
    };
    if !sp.out_dir_was_empty {
        return skip("OUT_DIR not empty before the run");
    }
    if sp.package_stamp.is_none() || tree::stamp(&p.cwd).ok() != sp.package_stamp {
        return skip("wrote into its package directory");
    }
    let d = directives::parse(stdout);
    let manifest = match script::manifest(
        &d,
        &p.cwd,
        &sp.out_dir,
        &p.env,
        &p.bases,
        shared.digests.as_ref(),
    ) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "a declared input is unreadable");
            return skip("declared input unreadable");
        }
    };
    let existing: Vec<PathBuf> = manifest
        .paths(&p.cwd, &p.bases)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    if changed_during(shared, &existing, p.started)? {
        return Ok(None);
    }
    let read = match out_dir::read(shared, &sp.out_dir, &p.bases) {
        Ok(r) => r,
        Err(out_dir::ReadError::Unsupported(what)) => {
            tracing::debug!(file = %what.display(), "not a file, directory or link");
            return skip("special file in OUT_DIR");
        }
        Err(out_dir::ReadError::Io(e)) => return Err(e),
    };
    let mut meta = super::output_meta(&p.bases, stdout, stderr);
    meta.push(("build-script".into(), p.unit.unit.clone().into_bytes()));
    meta.extend(read.digests);
    meta.push(super::bases_meta(&p.bases));
    Ok(Some(StoreJob::Manifest {
        key_a: sp.key_a,
        manifest,
        entry: Entry {
            files: read.files,
            meta,
        },
    }))
}

/// The `cargo:` lines of a run's output, in order: what cargo reads of it
/// (other lines, such as `make`'s, may come in any order).
pub(super) fn directives_of(stdout: &[u8]) -> Vec<&[u8]> {
    stdout
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"cargo:"))
        .collect()
}

/// What `CACHEPOT_VERIFY` compares besides the files: a replayed run's
/// directives must be the real run's.
pub(super) fn directives_differ(entry: &Entry, p: &Pending, stdout: &[u8]) -> bool {
    let fresh = p.bases.normalize(stdout);
    directives_of(entry.meta("stdout").unwrap_or_default()) != directives_of(&fresh)
}

impl ScriptPending {
    /// The run's `OUT_DIR`.
    pub(super) fn out_dir(&self) -> &Path {
        &self.out_dir
    }
}

/// Files in `OUT_DIR` after a verified run that the entry does not hold.
pub(super) fn unexpected_files(entry: &Entry, sp: &ScriptPending) -> Vec<String> {
    let stored: Vec<String> = entry
        .files
        .iter()
        .filter_map(|f| Some(Role::parse(&f.name)?.out_dir_path()?.to_string()))
        .collect();
    out_dir::paths(&sp.out_dir)
        .into_iter()
        .filter(|p| !stored.contains(p))
        .collect()
}
