//! rustc (and clippy-driver) compiles: direct mode only, never running the
//! compiler on a lookup.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cachepot_compiler::depinfo;
use cachepot_compiler::digest::Digest;
use cachepot_compiler::digest::FileDigester;
use cachepot_compiler::key::env_value;
use cachepot_compiler::rust::link::link_inputs;
use cachepot_compiler::rust::linker::{fuse_ld, linker_program};
use cachepot_compiler::rust::{
    self as rustc, KeyContext, Manifest, Output, Parsed, Role, RustCompile,
};
use cachepot_storage::Entry;

use super::pipeline::{self, Found, Keyed, Plan};
use super::remote::{is_plain_rustc, kept_local, KeptLocal, IDENTITY_REMAP};
use super::script::launcher::{self, is_cached_script, script_binary};
use super::{
    changed_during, invalid, is_clippy, is_rustc, private_temp, read_family, read_outputs, Compile,
    Dest, Lookup, Pending, PendingKind, ReadOutputs, StoreJob, Verify,
};
use crate::explain::UnitInputs;
use crate::memo::resolve_program;
use crate::stats::{Event, Work};
use crate::Shared;

/// The language name in statistics.
const LANG: &str = "rust";

/// What a rustc miss keeps until the compile is done.
pub(super) struct RustPending {
    pub(super) compile: RustCompile,
    key_a: Digest,
    /// For a linked crate: where rustc prints the link command
    /// (`--print=link-args=FILE`, added to the compile), removed once read.
    link_args_file: Option<PathBuf>,
    /// The toolchain's sysroot: its files are keyed by its identity.
    pub(super) sysroot: PathBuf,
    /// The dep-info the cache asked for (`--emit=dep-info=FILE`, added to
    /// a compile that did not ask for one), removed once read.
    pub(super) own_depinfo: Option<PathBuf>,
    /// The arguments as the wrapper got them (a remote action's command).
    pub(super) args: Vec<OsString>,
    /// With remote execution on: the target whose standard library goes
    /// to the engine, or why this compile runs here.
    pub(super) remote: Option<Result<String, KeptLocal>>,
}

impl RustPending {
    pub(super) fn cleanup(&self) {
        for p in [&self.link_args_file, &self.own_depinfo]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Looks a rustc compile up and, on a hit, writes its outputs.
pub(super) fn lookup(shared: &Arc<Shared>, c: &Compile) -> Lookup {
    // `cargo clippy` runs `clippy-driver /path/to/rustc ARGS…`; clippy-driver
    // drops that first argument, and so does the parser.
    let args = match c.args.split_first() {
        Some((first, rest)) if is_clippy(&c.compiler) && is_rustc(Path::new(first)) => rest,
        _ => &c.args[..],
    };
    let mut compile = match rustc::parse(args, &c.cwd) {
        Parsed::NotACompile => return Lookup::NotACompile,
        Parsed::Uncacheable(u) => {
            shared.stats.count(Event::Request);
            tracing::debug!(reason = %u.reason, detail = %u.detail, "not cacheable");
            shared.stats.non_cacheable_in(LANG, &u.reason);
            return Lookup::Uncacheable;
        }
        Parsed::Cacheable(rc) => *rc,
    };
    shared.stats.count(Event::Request);
    let started = SystemTime::now();
    let timer = std::time::Instant::now();
    let uncacheable = |reason: &str, detail: String| {
        tracing::debug!(reason, detail, "not cacheable");
        shared.stats.non_cacheable_in(LANG, reason);
        Lookup::Uncacheable
    };
    let Some(compiler) = resolve_program(&c.compiler, &c.cwd, c.env("PATH")) else {
        return uncacheable("compiler not found", c.compiler.display().to_string());
    };
    let toolchain = match shared.toolchains.probe(&compiler, &c.cwd, &c.env) {
        Ok(t) => t,
        Err(e) => return uncacheable("unknown compiler", e.to_string()),
    };
    let identity = match shared.toolchains.identity(
        &toolchain,
        compile.target.as_deref(),
        shared.digests.as_ref(),
    ) {
        Ok(d) => d,
        Err(e) => return uncacheable("unknown compiler", e.to_string()),
    };
    // `-C target-cpu=native`: keyed by what it is on this machine. For
    // another target rustc would still name the host's CPU.
    let native_cpu = if compile.native_cpu() {
        if let Some(t) = compile.target.as_deref().filter(|t| *t != toolchain.host) {
            return uncacheable("-C target-cpu=native for another target", t.to_string());
        }
        match shared.toolchains.native_cpu(
            &toolchain,
            &identity,
            compile.target.as_deref(),
            &c.cwd,
            &c.env,
        ) {
            Ok(n) => Some(n),
            Err(e) => return uncacheable("native CPU unknown", e),
        }
    } else {
        None
    };
    // A linked crate's inputs come from `--print=link-args=FILE`, which
    // rustc writes to a file since 1.74 (rust-lang/rust#114183).
    if compile.is_linked() && !release_at_least(&toolchain.version, 1, 75) {
        return uncacheable(
            "rustc too old to report link inputs",
            toolchain.version.clone(),
        );
    }
    // Outputs are named as on Linux (`.so`, no `.exe`).
    if compile.is_linked()
        && compile
            .target
            .as_deref()
            .is_some_and(|t| !t.contains("-linux"))
    {
        return uncacheable(
            "linked output for a non-Linux target",
            compile.target.clone().unwrap_or_default(),
        );
    }
    // Linker search paths the identity does not follow.
    if let Some(a) = compile
        .link_args
        .iter()
        .find(|a| a.starts_with("-B") || a.starts_with("--ld-path"))
    {
        return uncacheable("linker search path in link arguments", a.clone());
    }
    let linker = if compile.is_linked() {
        let program = linker_program(compile.linker.as_deref());
        let Some(path) = resolve_program(Path::new(program), &c.cwd, c.env("PATH")) else {
            return uncacheable("linker not found", program.to_string());
        };
        match shared
            .linkers
            .identity(&path, fuse_ld(&compile.link_args), &c.cwd, &c.env)
        {
            Ok(d) => Some(d),
            Err(e) => return uncacheable("linker unknown", e.to_string()),
        }
    } else {
        None
    };
    // A compile that may run on the engine is keyed, and compiled here,
    // with the identity path mapping (see `remote`).
    let remote_kind = shared.remote.as_ref().map(|_| {
        match kept_local(
            &compile,
            args,
            is_clippy(&c.compiler),
            in_build_script(&c.env),
        ) {
            Some(why) => Err(why),
            None if !is_plain_rustc(&compiler, &toolchain.sysroot.join("bin/rustc")) => {
                Err(KeptLocal::CompilerWrapper)
            }
            None => Ok(()),
        }
    });
    if let Some(Ok(())) = remote_kind {
        let mut with: Vec<OsString> = args.to_vec();
        with.push(IDENTITY_REMAP.into());
        match rustc::parse(&with, &c.cwd) {
            Parsed::Cacheable(rc) => compile = *rc,
            _ => {
                return uncacheable(
                    "path mapping for remote execution refused",
                    IDENTITY_REMAP.into(),
                )
            }
        }
    }
    let bases = rustc::base_dirs(&compile, &c.cwd, &c.env, &shared.config.basedirs)
        .with_policy(shared.config.path_policy);
    let stdin = c.stdin.as_deref().map(Digest::of);
    let ctx = KeyContext {
        cwd: &c.cwd,
        env: &c.env,
        toolchain: &identity,
        bases: &bases,
        digester: shared.digests.as_ref(),
        clippy: is_clippy(&c.compiler),
        linker: linker.as_ref(),
        stdin: stdin.as_ref(),
        native_cpu: native_cpu.as_deref(),
        key_env: &shared.config.key_env,
    };
    let (key_a, a_inputs) = match rustc::key_a(&compile, &ctx) {
        Ok(k) => (k.digest, k.inputs),
        Err(u) => return uncacheable(&u.reason, u.detail),
    };
    let outputs = kept_outputs(&compile, &c.cwd);
    let dwo = compile.dwo_files(&c.cwd);
    let dest = Dest {
        outputs,
        families: dwo.into_iter().collect(),
        out_dir: None,
    };
    let keyed = timer.elapsed();
    let plan = Plan {
        work: Work::Compile(LANG),
        label: &compile.crate_name,
        keyed: Keyed::Manifests(key_a),
        dest: &dest,
        bases: &bases,
        verifiable: compile.incremental.is_none(),
    };
    let found = pipeline::find(shared, c, &plan);
    tracing::debug!(
        crate_name = %compile.crate_name,
        key_us = keyed.as_micros(),
        total_us = timer.elapsed().as_micros(),
        "looked up"
    );
    let (claim, verify) = match found {
        Found::Hit(replay) => {
            if is_cached_script(shared, &compile, &c.env) {
                if let Some(bin) = script_binary(&dest.outputs) {
                    launcher::install(shared, &bin);
                }
            }
            return Lookup::Hit(replay);
        }
        Found::Miss(claim) => (claim, None),
        Found::Verify(key) => (None, Some(Verify { key, dest })),
    };
    let unit = UnitInputs {
        unit: format!(
            "rust {} {}{}{} {}",
            unit_name(&compile),
            compile
                .crate_types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(","),
            if compile.test { " test" } else { "" },
            if is_clippy(&c.compiler) {
                " clippy"
            } else {
                ""
            },
            bases.normalize_str(&compile.input).replace('\0', "$"),
        ),
        language: LANG.into(),
        inputs: a_inputs,
    };
    // A linked crate: rustc tells what the link read.
    let mut extra_args = Vec::new();
    if let Some(Ok(())) = remote_kind {
        extra_args.push(IDENTITY_REMAP.into());
    }
    let remote = remote_kind.map(|k| {
        k.map(|()| {
            compile
                .target
                .clone()
                .unwrap_or_else(|| toolchain.host.clone())
        })
    });
    let link_args_file = compile.is_linked().then(|| {
        let file = private_temp(shared, "link");
        let mut arg = OsString::from("--print=link-args=");
        arg.push(&file);
        extra_args.push(arg);
        file
    });
    // What the compile read, when it did not ask for dep-info itself.
    let own_depinfo = (!compile.emits_depinfo()).then(|| {
        let file = private_temp(shared, "d");
        let mut arg = OsString::from("--emit=dep-info=");
        arg.push(&file);
        extra_args.push(arg);
        file
    });
    Lookup::Miss(Box::new(Pending {
        kind: PendingKind::Rust(Box::new(RustPending {
            compile,
            key_a,
            link_args_file,
            sysroot: toolchain.sysroot.clone(),
            own_depinfo,
            args: if remote.is_some() {
                args.to_vec()
            } else {
                Vec::new()
            },
            remote,
        })),
        cwd: c.cwd.clone(),
        env: c.env.clone(),
        bases,
        started,
        extra_args,
        claim,
        unit,
        verify,
    }))
}

/// After a successful compile of a build script: its launcher (see
/// `script::launcher`).
pub(super) fn install_launcher(
    shared: &Shared,
    r: &RustPending,
    cwd: &Path,
    env: &[(OsString, OsString)],
) {
    if !is_cached_script(shared, &r.compile, env) {
        return;
    }
    if let Some(bin) = script_binary(&kept_outputs(&r.compile, cwd)) {
        launcher::install(shared, &bin);
    }
}

/// Reads a finished rustc compile's outputs and dep-info.
pub(super) fn prepare_store(
    shared: &Arc<Shared>,
    p: &Pending,
    r: &RustPending,
    stdout: &[u8],
    stderr: &[u8],
) -> io::Result<Option<StoreJob>> {
    let outputs = kept_outputs(&r.compile, &p.cwd);
    // LLVM IR is written under the expected name only when the crate has
    // one codegen unit; an older file of that name is not this compile's.
    for o in outputs.iter().filter(|o| o.role == Role::LlvmIr) {
        let written = std::fs::metadata(&o.path).and_then(|m| m.modified())?;
        if written < p.started {
            return Err(invalid("the LLVM IR file is not this compile's"));
        }
    }
    let mut read = read_outputs(shared, &outputs, &p.bases, p.started)?;
    if let Some(dwo) = r.compile.dwo_files(&p.cwd) {
        read.files.extend(read_family(shared, &dwo, p.started)?);
    }
    let depinfo_path = depinfo_path(r, &outputs).ok_or_else(|| invalid("no dep-info output"))?;
    let depinfo_text = String::from_utf8_lossy(&std::fs::read(depinfo_path)?).into_owned();
    let info = depinfo::parse(&depinfo_text);
    let mut manifest = Manifest::from_depinfo(&info, &p.cwd, &p.bases, shared.digests.as_ref())
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(file) = &r.link_args_file {
        let text = std::fs::read_to_string(file)?;
        let produced: Vec<PathBuf> = outputs.iter().map(|o| o.path.clone()).collect();
        if !text.contains('"') {
            return Err(invalid("rustc printed no link command"));
        }
        let library_path: Vec<PathBuf> = env_value(&p.env, "LIBRARY_PATH")
            .map(|v| std::env::split_paths(&v).collect())
            .unwrap_or_default();
        let inputs = link_inputs(
            &text,
            &p.cwd,
            std::slice::from_ref(&r.sysroot),
            &produced,
            &library_path,
        );
        for path in inputs {
            let d = shared.digests.digest(&path)?;
            manifest
                .files
                .push((p.bases.normalize_str(&path.to_string_lossy()), d));
        }
    }
    finish_job(shared, p, r, manifest, read, stdout, stderr, None)
}

/// The store job of a finished compile, unless a file it read changed
/// while it ran or an `env-dep` value is not this compile's.
#[allow(clippy::too_many_arguments)]
fn finish_job(
    shared: &Shared,
    p: &Pending,
    r: &RustPending,
    manifest: Manifest,
    read: ReadOutputs,
    stdout: &[u8],
    stderr: &[u8],
    exit_code: Option<&[u8]>,
) -> io::Result<Option<StoreJob>> {
    if let Some(paths) = manifest.paths(&p.cwd, &p.bases) {
        if changed_during(shared, &paths, p.started)? {
            return Ok(None);
        }
    }
    if !manifest.env_matches(&p.env, &p.bases) {
        return Ok(None);
    }
    // A probe's messages are replayed under another random crate name.
    if let Some(uuid) = r.compile.autocfg_probe() {
        let names = |b: &[u8]| b.windows(uuid.len()).any(|w| w == uuid.as_bytes());
        if names(stdout) || names(stderr) {
            return Ok(None);
        }
    }
    let mut meta = super::output_meta(&p.bases, stdout, stderr);
    meta.push(("crate".into(), unit_name(&r.compile).into_bytes()));
    if let Some(code) = exit_code {
        meta.push(("exit_code".into(), code.to_vec()));
    }
    meta.extend(read.digests);
    meta.push(super::bases_meta(&p.bases));
    Ok(Some(StoreJob::Manifest {
        key_a: r.key_a,
        manifest,
        entry: Entry {
            files: read.files,
            meta,
        },
    }))
}

/// Whether a compile is a build script's probe: its source is standard
/// input (autocfg), or it runs in a build script's environment (cargo sets
/// `CARGO_CFG_*` for build scripts only; anyhow, thiserror and proc-macro2
/// compile their probes from there). Only those have their errors cached:
/// a developer's compile error is usually fixed by creating a file that the
/// failed compile's dep-info could not name.
fn is_probe(c: &RustCompile, p: &Pending) -> bool {
    c.reads_stdin() || in_build_script(&p.env)
}

/// Whether a compile runs in a build script's environment (cargo sets
/// `CARGO_CFG_*` for build scripts only).
fn in_build_script(env: &[(OsString, OsString)]) -> bool {
    env.iter().any(|(k, _)| k == "CARGO_CFG_TARGET_ARCH")
}

/// After a compile error (exit code 1) of a build script's probe: the
/// error is as reproducible as a success when rustc got as far as writing
/// its dep-info (the files and `env!` variables it read), so it is stored
/// with that dep-info and replayed with exit code 1. Not stored: linked
/// crates (a link error depends on the system: a missing library), and
/// errors before the dep-info was written (a missing file, a bad option).
/// Build scripts' feature probes (anyhow, thiserror, proc-macro2) fail on
/// stable on purpose; a warm build then runs no compiler for them either.
/// Other compile errors are not stored (see [`is_probe`]).
pub(super) fn prepare_failure(
    shared: &Arc<Shared>,
    p: &Pending,
    r: &RustPending,
    stdout: &[u8],
    stderr: &[u8],
) -> io::Result<Option<StoreJob>> {
    if r.compile.is_linked() || !is_probe(&r.compile, p) {
        return Ok(None);
    }
    // Errors that name a missing file or the system are never replayed.
    let text = String::from_utf8_lossy(stderr);
    if [
        "E0583",
        "couldn't read",
        "os error",
        "No space left",
        "panicked",
    ]
    .iter()
    .any(|s| text.contains(s))
    {
        return Ok(None);
    }
    let outputs = kept_outputs(&r.compile, &p.cwd);
    let Some(dep) = depinfo_path(r, &outputs) else {
        return Ok(None);
    };
    // Written by this compile, not left from an earlier one.
    match std::fs::metadata(&dep).and_then(|m| m.modified()) {
        Ok(t) if t >= p.started => {}
        _ => return Ok(None),
    }
    // The user's dep-info is restored with the error; a private one is not.
    let user_dep: Vec<Output> = outputs
        .into_iter()
        .filter(|o| o.role == Role::DepInfo)
        .collect();
    let read = read_outputs(shared, &user_dep, &p.bases, p.started)?;
    let text = String::from_utf8_lossy(&std::fs::read(&dep)?).into_owned();
    let info = depinfo::parse(&text);
    let manifest = Manifest::from_depinfo(&info, &p.cwd, &p.bases, shared.digests.as_ref())
        .map_err(|e| invalid(e.to_string()))?;
    finish_job(shared, p, r, manifest, read, stdout, stderr, Some(b"1"))
}

/// The outputs a hit restores and a miss stores: all of them, but for an
/// autocfg probe, whose `.ll` depends on its random crate name and is
/// deleted unread by autocfg (see `RustCompile::autocfg_probe`): a hit
/// replays the probe's outcome and writes no file it could not reproduce.
pub(super) fn kept_outputs(c: &RustCompile, cwd: &Path) -> Vec<Output> {
    let mut outputs = c.outputs(cwd);
    if c.autocfg_probe().is_some() {
        outputs.retain(|o| o.role != Role::LlvmIr);
    }
    outputs
}

/// The crate name that names the unit in explanations: an autocfg probe's
/// without its random part.
fn unit_name(c: &RustCompile) -> String {
    match c.autocfg_probe() {
        Some(uuid) => c.crate_name.replace(uuid, "{autocfg}"),
        None => c.crate_name.clone(),
    }
}

/// Where this compile's dep-info is: the one the cache asked for, else
/// the compile's own.
fn depinfo_path(r: &RustPending, outputs: &[Output]) -> Option<PathBuf> {
    r.own_depinfo.clone().or_else(|| {
        outputs
            .iter()
            .find(|o| o.role == Role::DepInfo)
            .map(|o| o.path.clone())
    })
}

/// Whether `rustc -vV` output names a release at least `major.minor`.
fn release_at_least(version: &str, major: u32, minor: u32) -> bool {
    let Some(release) = version.lines().find_map(|l| l.strip_prefix("release: ")) else {
        return false;
    };
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::release_at_least;

    #[test]
    fn releases_compare_by_major_and_minor() {
        let v = |r: &str| format!("rustc {r} (x)\nbinary: rustc\nrelease: {r}\n");
        assert!(release_at_least(&v("1.95.0"), 1, 75));
        assert!(release_at_least(&v("1.75.0-nightly"), 1, 75));
        assert!(!release_at_least(&v("1.74.1"), 1, 75));
        assert!(!release_at_least("garbage", 1, 75));
    }
}
