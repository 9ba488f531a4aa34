//! The cache key of a gcc or clang compile.
//!
//! Two lookup modes, as in ccache:
//!
//! * **Direct mode** (the default) never runs the compiler on a lookup.
//!   Part A is computed from the command line and environment; it names a
//!   list of manifests, each listing the source and every header an earlier
//!   compile read (from its dependency file, with content digests). The
//!   manifest that still matches names the entry (part B), exactly as for
//!   rustc ([`crate::manifest`]).
//! * **Preprocessor mode** runs `-E` and keys the entry by part A and the
//!   preprocessed text. It is used when direct mode cannot decide: the
//!   dependency file would leave out system headers (`-MMD`), or a file
//!   the compile read uses `__DATE__`, `__TIME__` or `__TIMESTAMP__`
//!   (their value changes while the files do not).
//!
//! | input | in the key? | how, and why |
//! |---|---|---|
//! | key format version | A | bumped whenever an input changes meaning |
//! | the compiler | A | family, every predefined macro (version, target, defaults) and the digest of its binary |
//! | the driver mode of its name | A | `clang++`, `g++` and `c++` compile a `.c` file as C++; `clang` and `clang++` are one binary |
//! | language | A | `-x` or the source's extension |
//! | arguments | A | as written, in order, with base directories replaced by tokens in the values of path options (`-I`, `-isystem`, `-include`, `--sysroot`, prefix maps, …) only: any other value (`-DDIR="/src/data"`) is embedded as written; the object path, `-MF` path and the source are left out (they are where files go, not what they are) |
//! | `-march=native`, `-mtune=native`, `-mcpu=native` | A | besides the option as written, what it expands to on this machine: `native-cpu` and `native-features` (gcc: the `-m…` options and `--param`s of its `cc1` line under `-v`; clang: `-target-cpu`, `-tune-cpu` and the `-target-feature`s of `-###`), asked once per compiler and set of options (see [`crate::native`]). Another machine's `native` gives code this one may not run. A compile whose question fails or times out is not cached |
//! | the source path | A | base-relative: it is what `__FILE__` and the dependency file name |
//! | the object path | A, only with split DWARF, coverage or profiling code | the object embeds the `.dwo` name or the `.gcda` path |
//! | the working directory | A, with profiling code (`-fprofile-generate[=DIR]`, `-fprofile-arcs`, `-fprofile-instr-generate`) | gcc makes a relative `DIR` absolute from it and embeds the `.gcda` path |
//! | the object path, base-relative | A, only with a dependency file and no `-MT`/`-MQ` | it is the dependency file's target |
//! | the working directory, and `$PWD` | A, when coverage notes embed it, or debug info does under the exact path policy, and no `-fdebug-prefix-map`/`-ffile-prefix-map`/`-fdebug-compilation-dir` covers it | it is in `DW_AT_comp_dir` and the `.gcno` notes; gcc writes `$PWD` there when it names the same directory through a symbolic link. Under the default policy (share) debug info's directory comes from the build that stored the entry, as for rustc |
//! | every base directory's absolute path | A, under the exact path policy only (`CACHEPOT_PATH_POLICY=exact`) | a hit then names this checkout's own paths |
//! | profiles and precompiled headers named by options (`-fprofile-use=`, `-include-pch`) | A | by content: the dependency file does not list them |
//! | `CPATH`, `C_INCLUDE_PATH`, `CPLUS_INCLUDE_PATH`, `OBJC_INCLUDE_PATH`, `OBJCPLUS_INCLUDE_PATH`, `SOURCE_DATE_EPOCH`, `GCC_EXEC_PREFIX`, `COMPILER_PATH`, `GCC_COMPARE_DEBUG`, `CCC_OVERRIDE_OPTIONS`, `SDKROOT`, `*_DEPLOYMENT_TARGET` | A | the compiler reads them; path values are base-relative |
//! | `LANG`, `LC_ALL`, `LC_CTYPE`, `LC_MESSAGES` | A | the language of the diagnostics that a hit replays (ccache does the same) |
//! | `CACHEPOT_C_CUSTOM_CACHE_BUSTER` (or `SCCACHE_C_CUSTOM_CACHE_BUSTER`) | A | lets a user force distinct keys |
//! | the source and every header read | B (direct) | path (base-relative) and content digest, from the dependency file |
//! | the preprocessed text | P (preprocessor) | with base directories replaced by tokens in line markers only |
//!
//! A limit of direct mode, shared with ccache: a header that would now be
//! found earlier in the include path (a new file shadowing a recorded one)
//! is not noticed, because the manifest checks the files it recorded.
//!
//! Left out on purpose under the default path policy (share), as for
//! rustc: absolute paths under base directories that end up in the object
//! (`__FILE__`, debug info's directory and source names) come from the
//! build that stored the entry; `-ffile-prefix-map` makes them identical
//! everywhere, and the exact policy keys them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::args::CCompile;
use super::content::has_time_macros;
use crate::digest::{Digest, FileDigester};
use crate::key::{env_value, Key, KeyBuilder};
use crate::native::NativeCpu;
use crate::paths::{find_target_dir, standard_bases, BaseDirs, PathPolicy};
use crate::rust::Uncacheable;

/// Variables the compiler reads itself; path values are base-relative.
pub const C_ENV: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "OBJCPLUS_INCLUDE_PATH",
    "SOURCE_DATE_EPOCH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "GCC_COMPARE_DEBUG",
    "CCC_OVERRIDE_OPTIONS",
    "SDKROOT",
    "MACOSX_DEPLOYMENT_TARGET",
    "IPHONEOS_DEPLOYMENT_TARGET",
    "TVOS_DEPLOYMENT_TARGET",
    "WATCHOS_DEPLOYMENT_TARGET",
    "XROS_DEPLOYMENT_TARGET",
    "DRIVERKIT_DEPLOYMENT_TARGET",
    "DEVELOPER_DIR",
    "RC_DEBUG_OPTIONS",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
];

/// Variables that make the compiler write a dependency file of its own.
const C_ENV_REFUSED: &[&str] = &["DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES"];

/// The user's switch for distinct keys, and sccache's name for it.
pub const CACHE_BUSTER: [&str; 2] = [
    "CACHEPOT_C_CUSTOM_CACHE_BUSTER",
    "SCCACHE_C_CUSTOM_CACHE_BUSTER",
];

/// Everything part A needs besides the compile itself.
pub struct CKeyContext<'a> {
    /// The working directory.
    pub cwd: &'a Path,
    /// The compile's environment.
    pub env: &'a [(OsString, OsString)],
    /// The compiler's identity digest.
    pub compiler: &'a Digest,
    /// The name the compiler was run by (`clang++` is clang in C++ mode:
    /// the same binary, another behaviour).
    pub invoked_as: &'a str,
    /// Base directories for path independence.
    pub bases: &'a BaseDirs,
    /// File digests.
    pub digester: &'a dyn FileDigester,
    /// What the compile's `native` options expand to, when it has some
    /// (see [`crate::native`]).
    pub native_cpu: Option<&'a NativeCpu>,
}

fn no(reason: &str, detail: impl Into<String>) -> Uncacheable {
    Uncacheable {
        reason: reason.to_string(),
        detail: detail.into(),
    }
}

/// The base directories of a C compile: the working directory, `CARGO_HOME`
/// (build scripts compile crates' C sources from the registry), cargo's
/// target directory when the compile runs under a build script (`OUT_DIR`),
/// and the configured ones.
pub fn base_dirs(cwd: &Path, env: &[(OsString, OsString)], configured: &[PathBuf]) -> BaseDirs {
    let target = env_value(env, "OUT_DIR").and_then(|d| find_target_dir(&cwd.join(d)));
    standard_bases(cwd, env, target, configured)
}

/// Options whose value is a path: only these have base directories
/// replaced by tokens. Any other value (`-DDATA_DIR="/src/data"`) is kept
/// exactly, because the compiler embeds it as written.
const PATH_OPTIONS: &[&str] = &[
    "-I",
    "-iquote",
    "-isystem",
    "-idirafter",
    "-include",
    "-imacros",
    "-include-pch",
    "-isysroot",
    "--sysroot=",
    "--sysroot",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-fdebug-prefix-map=",
    "-ffile-prefix-map=",
    "-fmacro-prefix-map=",
    "-fprofile-use=",
    "-fprofile-instr-use=",
    "-fprofile-sample-use=",
    "-fauto-profile=",
    "-MT",
    "-MQ",
];

/// The key arguments, with base directories replaced by tokens in path
/// values (`-I/src/include`, `-I /src/include`, `-ffile-prefix-map=/src=.`).
fn normalized_args(bases: &BaseDirs, args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut value_is_path = false;
    for a in args {
        if std::mem::take(&mut value_is_path) {
            out.push(bases.normalize_str(a));
            continue;
        }
        if PATH_OPTIONS.contains(&a.as_str()) {
            value_is_path = true;
            out.push(a.clone());
            continue;
        }
        match PATH_OPTIONS.iter().find(|o| a.starts_with(*o)) {
            Some(o) => out.push(format!("{o}{}", bases.normalize_str(&a[o.len()..]))),
            None => out.push(a.clone()),
        }
    }
    out
}

/// Whether an argument uses a time macro (`-DBUILT=__DATE__`): direct mode
/// cannot see its value change.
pub fn args_use_time_macros(c: &CCompile) -> bool {
    c.key_args.iter().any(|a| has_time_macros(a.as_bytes()))
}

/// The driver mode a compiler's name selects: gcc and clang compile a `.c`
/// file as C++ when run as `g++`, `c++` or `clang++`.
pub fn driver_mode(invoked_as: &str) -> &'static str {
    let name = Path::new(invoked_as)
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if name.contains("++") {
        "c++"
    } else if name.contains("cpp") {
        "cpp"
    } else {
        "c"
    }
}

/// The directory gcc names as the working directory in debug info: `$PWD`
/// when it is the working directory (reached through a symbolic link, it
/// is spelled differently), else the real path.
fn debug_dir(cwd: &Path, env: &[(OsString, OsString)]) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match env_value(env, "PWD").map(PathBuf::from) {
        Some(pwd) if pwd.is_absolute() && id(&pwd).is_some() && id(&pwd) == id(cwd) => pwd,
        _ => cwd.to_path_buf(),
    }
}

/// Computes part A.
pub fn key_a(c: &CCompile, ctx: &CKeyContext<'_>) -> Result<Key, Uncacheable> {
    for name in C_ENV_REFUSED {
        if env_value(ctx.env, name).is_some() {
            return Err(no("dependency output through the environment", *name));
        }
    }
    let mut k = KeyBuilder::new("c-a");
    k.add_digest("compiler", ctx.compiler);
    k.add("driver", driver_mode(ctx.invoked_as).as_bytes());
    k.add("language", format!("{:?}", c.language).as_bytes());
    for a in normalized_args(ctx.bases, &c.key_args) {
        k.add("arg", a.as_bytes());
    }
    if !c.native_args.is_empty() {
        let Some(native) = ctx.native_cpu else {
            return Err(no("native CPU unknown", c.native_args.join(" ")));
        };
        native.add_to(&mut k);
    }
    k.add("input", ctx.bases.normalize_str(&c.input).as_bytes());
    if c.split_dwarf || c.coverage || c.profile_generate {
        let out = ctx.cwd.join(&c.output);
        k.add("output", out.to_string_lossy().as_bytes());
        if c.profile_generate {
            k.add("profile-cwd", ctx.cwd.to_string_lossy().as_bytes());
        }
    } else if c.depfile.is_some()
        && !c
            .key_args
            .iter()
            .any(|a| a.starts_with("-MT") || a.starts_with("-MQ"))
    {
        // The dependency file's target is the object path as written.
        k.add(
            "depfile-target",
            ctx.bases.normalize_str(&c.output).as_bytes(),
        );
    }
    let dir = debug_dir(ctx.cwd, ctx.env);
    if c.embeds_cwd(&dir) && (c.coverage || ctx.bases.policy() == PathPolicy::Exact) {
        k.add("cwd", dir.to_string_lossy().as_bytes());
    }
    ctx.bases.key_exact_paths(&mut k);
    for f in &c.extra_inputs {
        let path = ctx.cwd.join(f);
        let d = ctx.digester.digest(&path).map_err(|e| {
            no(
                "unreadable profile or precompiled header",
                format!("{f}: {e}"),
            )
        })?;
        k.add_digest(&format!("file:{}", ctx.bases.normalize_str(f)), &d);
    }
    for inc in &c.forced_includes {
        for ext in ["gch", "pch"] {
            let pch = ctx.cwd.join(format!("{inc}.{ext}"));
            if pch.exists() {
                return Err(no("precompiled header use", pch.display().to_string()));
            }
        }
    }
    for name in C_ENV.iter().chain(CACHE_BUSTER.iter()) {
        if let Some(v) = env_value(ctx.env, name) {
            let v = ctx.bases.normalize_str(&v.to_string_lossy());
            k.add(&format!("env:{name}"), v.as_bytes());
        }
    }
    Ok(k.finish())
}

/// The preprocessor-mode key: part A and the preprocessed text, with base
/// directories replaced by tokens in line markers (`# 12 "/src/a.h" 2`)
/// only; a path in code (`__FILE__`, a `-D` value) stays as written,
/// because the object embeds it.
pub fn preprocessed_key(a: &Digest, preprocessed: &[u8], bases: &BaseDirs) -> Key {
    let mut hasher = blake3::Hasher::new();
    for line in preprocessed.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"# ") || line.starts_with(b"#line ") {
            hasher.update(&bases.normalize(line));
        } else {
            hasher.update(line);
        }
    }
    let mut k = KeyBuilder::new("c-p");
    k.add_digest("a", a);
    k.add_digest("preprocessed", &Digest(*hasher.finalize().as_bytes()));
    k.finish()
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
