//! gcc and clang compiles: direct mode (manifests of the headers read last
//! time, from the dependency file), with preprocessor mode (`-E`) when
//! direct mode cannot decide. See `cachepot_compiler::c::key`.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use cachepot_compiler::c::{self as cc, CCompile, CKeyContext, CParsed, ContentFlags, Language};
use cachepot_compiler::depinfo;
use cachepot_compiler::digest::Digest;
use cachepot_compiler::manifest::Manifest;
use cachepot_compiler::output::{Output, Role};
use cachepot_compiler::BaseDirs;
use cachepot_storage::Entry;

use super::pipeline::{self, Found, Keyed, Looked, Plan, Served};
use super::remote::{kept_local_c, KeptLocal};
use super::{
    changed_during, invalid, private_temp, read_outputs, Compile, Dest, Lookup, Pending,
    PendingKind, StoreJob, Verify,
};
use crate::explain::UnitInputs;
use crate::memo::resolve_program;
use crate::stats::{Event, Work};
use crate::Shared;

/// How a C miss will be stored.
enum Mode {
    /// Under a manifest of part A, from the dependency file.
    Direct { key_a: Digest },
    /// Under the key of the preprocessed text; `inputs` are the files the
    /// preprocessor read (from its line markers).
    Preprocessor { key: Digest, inputs: Vec<PathBuf> },
}

/// What a C miss keeps until the compile is done.
pub(super) struct CPending {
    pub(super) compile: CCompile,
    mode: Mode,
    /// The dependency file the cache asked for (`-MD -MF` added to the
    /// compile), removed once read.
    pub(super) own_depfile: Option<PathBuf>,
    /// With remote execution on: whether the compile may run on the
    /// engine, or why not.
    pub(super) remote: Option<Result<(), KeptLocal>>,
    /// The compiler as found in `PATH`, and the arguments as the wrapper
    /// got them (a remote action's command).
    pub(super) compiler: PathBuf,
    pub(super) family: cachepot_compiler::c::Family,
    pub(super) args: Vec<OsString>,
}

impl CPending {
    pub(super) fn cleanup(&self) {
        if let Some(p) = &self.own_depfile {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The language name in statistics.
fn lang_name(l: Language) -> &'static str {
    match l {
        Language::C => "c",
        Language::Cxx => "c++",
        Language::AsmPreprocessed | Language::Asm => "asm",
        Language::ObjC => "objective-c",
        Language::ObjCxx => "objective-c++",
    }
}

/// The files a compile writes, by role.
fn outputs(c: &CCompile, cwd: &Path) -> Vec<Output> {
    let mut out = vec![Output {
        role: Role::Object,
        path: cwd.join(&c.output),
        optional: false,
    }];
    for (role, path) in c.side_outputs() {
        out.push(Output {
            role,
            path: cwd.join(path),
            optional: false,
        });
    }
    out
}

/// Looks a gcc or clang compile up and, on a hit, writes its outputs.
pub(super) fn lookup(shared: &Arc<Shared>, c: &Compile) -> Lookup {
    shared.stats.count(Event::Request);
    let started = SystemTime::now();
    let uncacheable = |lang: Option<&str>, reason: &str, detail: String| {
        tracing::debug!(reason, detail, "not cacheable");
        match lang {
            Some(l) => shared.stats.non_cacheable_in(l, reason),
            None => shared.stats.non_cacheable(reason),
        }
        Lookup::Uncacheable
    };
    let Some(compiler) = resolve_program(&c.compiler, &c.cwd, c.env("PATH")) else {
        return uncacheable(None, "compiler not found", c.compiler.display().to_string());
    };
    // clang-cl takes MSVC's options, which this parser does not know.
    let name = c
        .compiler
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if name.ends_with("-cl") || name == "cl" || name == "cl.exe" {
        return uncacheable(None, "unsupported compiler", name.into_owned());
    }
    // What the binary says it is, not its name: anything but gcc or clang
    // (an assembler, nvcc, a linker) is passed through.
    let toolchain = match shared.c_compilers.probe(&compiler, &c.cwd, &c.env) {
        Ok(t) => t,
        Err(e) => return uncacheable(None, "unsupported compiler", e.to_string()),
    };
    let compile = match cc::parse(&c.args, &c.cwd) {
        CParsed::Uncacheable(u) => return uncacheable(None, &u.reason, u.detail),
        CParsed::Cacheable(b) => *b,
    };
    let lang = lang_name(compile.language);
    // gcc reads a `NAME.gch` beside a header without naming it in the
    // dependency file (or in `-E` output): never cache near one.
    if let Some(dir) = compile
        .search_dirs()
        .into_iter()
        .map(|d| c.cwd.join(d))
        .find(|d| shared.c_compilers.has_precompiled_header(d))
    {
        return uncacheable(
            Some(lang),
            "precompiled header use",
            dir.display().to_string(),
        );
    }
    // `-march=native` and friends: keyed by what they expand to here.
    let native_cpu = if compile.native_args.is_empty() {
        None
    } else {
        match shared.c_compilers.native_cpu(
            &toolchain,
            &compiler,
            &compile.native_args,
            &c.cwd,
            &c.env,
        ) {
            Ok(n) => Some(n),
            Err(e) => return uncacheable(Some(lang), "native CPU unknown", e),
        }
    };
    let bases = cc::base_dirs(&c.cwd, &c.env, &shared.config.basedirs)
        .with_policy(shared.config.path_policy);
    let ctx = CKeyContext {
        cwd: &c.cwd,
        env: &c.env,
        compiler: &toolchain.identity,
        invoked_as: &c.compiler.to_string_lossy(),
        bases: &bases,
        digester: shared.digests.as_ref(),
        native_cpu: native_cpu.as_deref(),
    };
    let (key_a, a_inputs) = match cc::key_a(&compile, &ctx) {
        Ok(k) => (k.digest, k.inputs),
        Err(u) => return uncacheable(Some(lang), &u.reason, u.detail),
    };
    let outputs = outputs(&compile, &c.cwd);
    // Outputs go where the compiler would write them, or the compiler runs:
    // never over a device (`-o /dev/null`) or into a directory it would
    // not find.
    for out in &outputs {
        if let Err(why) = writable_place(&out.path) {
            return uncacheable(Some(lang), why, out.path.display().to_string());
        }
    }
    // Direct mode needs a dependency file with system headers (plain
    // assembler has none), and no time macro on the command line.
    let direct_possible = !compile.deps_user_only
        && compile.language != Language::Asm
        && !cc::args_use_time_macros(&compile);
    let mut direct = direct_possible;
    let dest = Dest {
        outputs: outputs.clone(),
        ..Dest::default()
    };
    let mut plan = Plan {
        work: Work::Compile(lang),
        label: &compile.input,
        keyed: Keyed::Manifests(key_a),
        dest: &dest,
        bases: &bases,
        // gcc stamps coverage and profiling objects with the time.
        verifiable: !compile.coverage && !compile.profile_generate,
    };
    // A hit picked by CACHEPOT_VERIFY: compiled again and compared.
    let mut verify = None;
    if direct_possible {
        match pipeline::look(shared, c, &plan) {
            Looked::Hit(replay, key) => {
                match pipeline::hit_or_verify(shared, &plan, &key, "direct", replay) {
                    Served::Verify(key) => verify = Some(key),
                    Served::Hit(replay) => return Lookup::Hit(replay),
                }
            }
            Looked::Marker(m) if m == NEVER => {
                return uncacheable(
                    Some(lang),
                    "assembler includes files",
                    compile.input.clone(),
                );
            }
            Looked::Marker(_) => direct = false,
            Looked::Nothing => {}
        }
    }
    let mode = if direct {
        Mode::Direct { key_a }
    } else {
        // With remote execution on, cargo runs many compiles at once:
        // the preprocessor waits for a core (see `slots`).
        let slot = shared.local_slots.as_ref().map(|s| s.take());
        let preprocessed = preprocess(&compiler, &compile, c);
        drop(slot);
        let (text, inputs) = match preprocessed {
            Ok(t) => t,
            Err(e) => return uncacheable(Some(lang), "preprocessor failed", e.to_string()),
        };
        let key = cc::preprocessed_key(&key_a, &text, &bases).digest;
        plan.keyed = Keyed::Plain(key);
        if let Looked::Hit(replay, key) = pipeline::look(shared, c, &plan) {
            match pipeline::hit_or_verify(shared, &plan, &key, "preprocessor", replay) {
                Served::Verify(key) => verify = Some(key),
                Served::Hit(replay) => return Lookup::Hit(replay),
            }
        }
        Mode::Preprocessor { key, inputs }
    };
    // Another build compiling this very source: wait for its entry.
    let claim = if verify.is_some() {
        None
    } else {
        match pipeline::take_turn(shared, c, &plan) {
            Found::Hit(replay) => return Lookup::Hit(replay),
            Found::Miss(claim) => claim,
            Found::Verify(_) => None,
        }
    };
    // The cache's own dependency file goes to the daemon's private
    // directory, never beside the object.
    let (own_depfile, extra_args) = match (&mode, &compile.depfile) {
        (Mode::Direct { .. }, None) => {
            let tmp = private_temp(shared, "d");
            let extra = vec!["-MD".into(), "-MF".into(), tmp.clone().into_os_string()];
            (Some(tmp), extra)
        }
        _ => (None, Vec::<OsString>::new()),
    };
    let unit = UnitInputs {
        unit: format!(
            "c {}",
            bases.normalize_str(&compile.input).replace('\0', "$")
        ),
        language: lang.into(),
        inputs: a_inputs,
    };
    let remote = shared.remote.as_ref().map(|_| {
        match kept_local_c(&compile, toolchain.family, &c.args, &c.cwd, &c.env) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    });
    Lookup::Miss(Box::new(Pending {
        kind: PendingKind::C(Box::new(CPending {
            args: if remote.is_some() {
                c.args.clone()
            } else {
                Vec::new()
            },
            compile,
            mode,
            own_depfile,
            remote,
            compiler,
            family: toolchain.family,
        })),
        cwd: c.cwd.clone(),
        env: c.env.clone(),
        bases,
        started,
        extra_args,
        claim,
        unit,
        verify: verify.map(|key| Verify { key, dest }),
    }))
}

/// The marker that turns C compiles of a part A away for good (their
/// files make the assembler read files no one names).
pub(super) const NEVER: &str = "never";

/// Why an output cannot go where the compile asks, if it cannot.
fn writable_place(path: &Path) -> Result<(), &'static str> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => return Err("output is not a regular file"),
        _ => {}
    }
    match path.parent() {
        Some(dir) if dir.is_dir() => Ok(()),
        _ => Err("output directory missing"),
    }
}

/// Runs the preprocessor (or, for plain assembler, reads the source) and
/// returns its text and the files it read.
fn preprocess(
    compiler: &Path,
    compile: &CCompile,
    c: &Compile,
) -> io::Result<(Vec<u8>, Vec<PathBuf>)> {
    let source = c.cwd.join(&compile.input);
    if compile.language == Language::Asm {
        let text = std::fs::read(&source)?;
        let flags = ContentFlags::of(&text);
        if flags.asm_include || flags.incbin {
            return Err(invalid("assembler that includes files"));
        }
        return Ok((text, vec![source]));
    }
    let out = Command::new(compiler)
        .args(compile.preprocess_args())
        .current_dir(&c.cwd)
        .env_clear()
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(invalid(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    // Inline asm's `.incbin` reads a file that nothing names.
    let flags = ContentFlags::of(&out.stdout);
    if flags.incbin || (compile.language == Language::AsmPreprocessed && flags.asm_include) {
        return Err(invalid("assembler that includes files"));
    }
    let inputs = line_marker_files(&out.stdout, &c.cwd);
    Ok((out.stdout, inputs))
}

/// The files named by the preprocessor's line markers (`# 12 "file" 2`).
fn line_marker_files(text: &[u8], cwd: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let Some(rest) = line.strip_prefix(b"# ") else {
            continue;
        };
        let Some(start) = rest.iter().position(|b| *b == b'"') else {
            continue;
        };
        let name = &rest[start + 1..];
        let Some(end) = name.iter().position(|b| *b == b'"') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&name[..end]) else {
            continue;
        };
        if name.starts_with('<') {
            continue; // <built-in>, <command-line>
        }
        let path = cwd.join(name);
        if !files.contains(&path) && path.is_file() {
            files.push(path);
        }
    }
    files
}

/// Reads a finished C compile's outputs and, in direct mode, its
/// dependency file.
pub(super) fn prepare_store(
    shared: &Arc<Shared>,
    p: &Pending,
    cp: &CPending,
    stdout: &[u8],
    stderr: &[u8],
) -> io::Result<Option<StoreJob>> {
    let outputs = outputs(&cp.compile, &p.cwd);
    let read = read_outputs(shared, &outputs, &p.bases, p.started)?;
    let mut meta = super::output_meta(&p.bases, stdout, stderr);
    meta.push((
        "source".into(),
        p.bases.normalize(cp.compile.input.as_bytes()),
    ));
    meta.extend(read.digests);
    meta.push(super::bases_meta(&p.bases));
    let entry = Entry {
        files: read.files,
        meta,
    };
    match &cp.mode {
        Mode::Preprocessor { key, inputs } => {
            if changed_during(shared, inputs, p.started)? {
                return Ok(None);
            }
            Ok(Some(StoreJob::Plain { key: *key, entry }))
        }
        Mode::Direct { key_a } => {
            let depfile = match (&cp.own_depfile, &cp.compile.depfile) {
                (Some(own), _) => own.clone(),
                (None, Some(user)) => p.cwd.join(user),
                (None, None) => return Err(invalid("no dependency file")),
            };
            let text = String::from_utf8_lossy(&std::fs::read(&depfile)?).replace("$$", "$");
            let asm = cp.compile.language == Language::AsmPreprocessed;
            let manifest = match direct_manifest(shared, &text, &p.cwd, &p.bases, asm)? {
                DirectResult::Manifest(m) => m,
                DirectResult::Off => {
                    tracing::debug!(input = %cp.compile.input, "time macros: direct mode off");
                    return Ok(Some(StoreJob::Marker {
                        key_a: *key_a,
                        marker: "off",
                    }));
                }
                DirectResult::Never => {
                    tracing::debug!(input = %cp.compile.input, "assembler includes files: not cached");
                    return Ok(Some(StoreJob::Marker {
                        key_a: *key_a,
                        marker: NEVER,
                    }));
                }
            };
            if let Some(paths) = manifest.paths(&p.cwd, &p.bases) {
                if changed_during(shared, &paths, p.started)? {
                    return Ok(None);
                }
            }
            Ok(Some(StoreJob::Manifest {
                key_a: *key_a,
                manifest,
                entry,
            }))
        }
    }
}

/// What a direct-mode miss can store.
enum DirectResult {
    /// The manifest of the files read.
    Manifest(Manifest),
    /// A file uses time macros: direct mode off for this part A.
    Off,
    /// A file makes the assembler read files no one names: never cache.
    Never,
}

/// The manifest of a dependency file, unless a file it lists rules direct
/// mode out.
fn direct_manifest(
    shared: &Shared,
    depfile_text: &str,
    cwd: &Path,
    bases: &BaseDirs,
    asm: bool,
) -> io::Result<DirectResult> {
    let info = depinfo::parse(depfile_text);
    if info.files.is_empty() {
        return Err(invalid("the dependency file names no source"));
    }
    let manifest = Manifest::from_depinfo(&info, cwd, bases, shared.digests.as_ref())
        .map_err(|e| invalid(e.to_string()))?;
    let mut off = false;
    for (file, (_, digest)) in info.files.iter().zip(&manifest.files) {
        let flags = shared.c_compilers.content_flags(&cwd.join(file), digest)?;
        if flags.incbin || (asm && flags.asm_include) {
            return Ok(DirectResult::Never);
        }
        off |= flags.time_macros;
    }
    Ok(if off {
        DirectResult::Off
    } else {
        DirectResult::Manifest(manifest)
    })
}
