//! Build-script runs: what keys a run of a build script, and the manifest
//! of what a stored run declared it depends on.
//!
//! Part A of a run's key:
//!
//! | Input | In the key as |
//! |---|---|
//! | the build script binary | its content digest (it pins the script's code and dependencies) |
//! | its arguments (cargo passes none) | exactly |
//! | `TARGET`, `HOST`, `PROFILE`, `OPT_LEVEL`, `DEBUG`, `RUSTC_LINKER`, `CARGO_ENCODED_RUSTFLAGS`, `CARGO_MANIFEST_LINKS`, `CARGO_PKG_*`, `CARGO_FEATURE_*`, `CARGO_CFG_*` | exactly (`env:NAME`) |
//! | `CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH`, `OUT_DIR`, `DEP_*` | base directories as tokens |
//! | compiler and tool variables: [`TOOL_VARS`], also with a `TARGET_` or `HOST_` prefix or a `_<target>` suffix | exactly |
//! | `RUSTC` | the toolchain's identity (`rustc`) |
//! | each program of [`TOOLS`] found in `PATH`, and the program each compiler variable names | its identity (C compilers) or content digest (`tool:NAME`), or absent |
//! | `CACHEPOT_KEY_ENV` variables | exactly (`key-env:NAME`) |
//! | base directories, under `CACHEPOT_PATH_POLICY=exact` | absolute paths |
//!
//! Not keyed: `NUM_JOBS` and the jobserver (`CARGO_MAKEFLAGS`, `MAKEFLAGS`,
//! `MFLAGS`): they change how fast a script runs, not what it makes;
//! `RUSTC_WRAPPER` and `RUSTC_WORKSPACE_WRAPPER` (a wrapper gives the
//! compiler's output); `CARGO`, `RUSTDOC`, `PATH` and the rest of the
//! environment, except as the manifest names them.
//!
//! The manifest (part B) is what the stored run declared, as cargo reads
//! it: each `rerun-if-changed` file with its digest (a directory with the
//! digest of its tree, a missing path as absent), each
//! `rerun-if-env-changed` variable with its value, the whole package
//! directory when the run declared no file, and the system libraries its
//! `rustc-link-lib` lines name (found in its `rustc-link-search`
//! directories or the system's), so that a run that linked a library this
//! machine lacks is not replayed here.

pub mod directives;
pub mod tree;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::depinfo::escape_env_value;
use crate::digest::{Digest, FileDigester};
use crate::key::{env_value, Key, KeyBuilder};
use crate::manifest::{EnvValues, Manifest, ManifestError, ABSENT};
use crate::paths::BaseDirs;

pub use directives::Directives;

/// Variables cargo sets for a build script, keyed exactly.
const EXACT_VARS: &[&str] = &[
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "RUSTC_LINKER",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_MANIFEST_LINKS",
];

/// Prefixes of variables cargo sets, keyed exactly.
const EXACT_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_FEATURE_", "CARGO_CFG_"];

/// Variables that hold paths, keyed with base directories as tokens.
const PATH_VARS: &[&str] = &["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "OUT_DIR"];

/// Variables with which the `cc` and `cmake` crates, pkg-config and
/// bindgen choose compilers, tools and flags.
pub const TOOL_VARS: &[&str] = &[
    "CC",
    "CXX",
    "AR",
    "RANLIB",
    "LD",
    "NM",
    "OBJCOPY",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "ARFLAGS",
    "ASMFLAGS",
    "CXXSTDLIB",
    "CRATE_CC_NO_DEFAULTS",
    "CMAKE",
    "CMAKE_GENERATOR",
    "CMAKE_TOOLCHAIN_FILE",
    "CMAKE_PREFIX_PATH",
    "PKG_CONFIG",
    "PKG_CONFIG_PATH",
    "PKG_CONFIG_LIBDIR",
    "PKG_CONFIG_SYSROOT_DIR",
    "PKG_CONFIG_ALL_STATIC",
    "PKG_CONFIG_ALLOW_CROSS",
    "LIBCLANG_PATH",
    "BINDGEN_EXTRA_CLANG_ARGS",
    "SDKROOT",
];

/// Of [`TOOL_VARS`], those that name a program (first word).
const PROGRAM_VARS: &[&str] = &[
    "CC",
    "CXX",
    "AR",
    "RANLIB",
    "LD",
    "NM",
    "OBJCOPY",
    "CMAKE",
    "PKG_CONFIG",
];

/// Programs build scripts run by name, keyed as `PATH` resolves them.
pub const TOOLS: &[&str] = &[
    "cc",
    "c++",
    "gcc",
    "g++",
    "clang",
    "clang++",
    "ar",
    "ranlib",
    "ld",
    "make",
    "gmake",
    "cmake",
    "ninja",
    "pkg-config",
    "perl",
    "python3",
    "nasm",
    "yasm",
    "autoconf",
    "automake",
    "libtool",
    "m4",
];

/// Variables not keyed though they look like tool variables.
const NOT_KEYED: &[&str] = &["CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS", "NUM_JOBS"];

/// How a variable is keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyedAs {
    Exact,
    Path,
}

/// The tool variable a name is a spelling of (`CC`, `TARGET_CC`,
/// `CC_x86_64-unknown-linux-gnu`, `CC_x86_64_unknown_linux_gnu`).
fn tool_var(name: &str) -> Option<&'static str> {
    let bare = name
        .strip_prefix("TARGET_")
        .or_else(|| name.strip_prefix("HOST_"))
        .unwrap_or(name);
    TOOL_VARS.iter().copied().find(|v| {
        bare == *v
            || name
                .strip_prefix(v)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|t| t.contains('-') || t.matches('_').count() >= 2)
    })
}

fn keyed_as(name: &str) -> Option<KeyedAs> {
    if NOT_KEYED.contains(&name) {
        return None;
    }
    if PATH_VARS.contains(&name) || name.starts_with("DEP_") {
        return Some(KeyedAs::Path);
    }
    if EXACT_VARS.contains(&name)
        || EXACT_PREFIXES.iter().any(|p| name.starts_with(p))
        || tool_var(name).is_some()
    {
        return Some(KeyedAs::Exact);
    }
    None
}

/// The programs the compiler and tool variables name (their first word),
/// for keying by identity.
pub fn named_programs(env: &[(OsString, OsString)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, v) in env {
        let Some(var) = k.to_str().and_then(tool_var) else {
            continue;
        };
        if !PROGRAM_VARS.contains(&var) {
            continue;
        }
        let value = v.to_string_lossy();
        // `cachepot gcc`, `ccache cc`: the compiler is the last word that
        // is not an option before the first option.
        let words: Vec<&str> = value
            .split_whitespace()
            .take_while(|w| !w.starts_with('-'))
            .collect();
        if let Some(program) = words.last() {
            if !out.iter().any(|p| p == program) {
                out.push((*program).to_string());
            }
        }
    }
    out.sort();
    out
}

/// What part A of a run is computed from, besides the environment.
pub struct RunKey<'a> {
    /// The build script binary's content digest.
    pub binary: &'a Digest,
    /// Its arguments.
    pub args: &'a [OsString],
    /// Its environment.
    pub env: &'a [(OsString, OsString)],
    /// The run's base directories.
    pub bases: &'a BaseDirs,
    /// The identity of the toolchain `RUSTC` names, when it has one.
    pub rustc: Option<&'a Digest>,
    /// Programs by name with their identity (`None`: not found).
    pub tools: &'a [(String, Option<Digest>)],
    /// `CACHEPOT_KEY_ENV`.
    pub key_env: &'a [String],
}

/// Computes part A of a run's key (see the table at the top).
pub fn key_a(k: &RunKey<'_>) -> Key {
    let mut b = KeyBuilder::new("build-script-a");
    b.add_digest("binary", k.binary);
    for a in k.args {
        b.add("arg", &k.bases.normalize(a.as_encoded_bytes()));
    }
    let mut vars: Vec<(&str, &OsString)> = k
        .env
        .iter()
        .filter_map(|(n, v)| Some((n.to_str()?, v)))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(b.0));
    vars.dedup_by(|later, earlier| {
        // The last setting of a name wins.
        if later.0 == earlier.0 {
            *earlier = *later;
            true
        } else {
            false
        }
    });
    for (name, value) in vars {
        match keyed_as(name) {
            Some(KeyedAs::Exact) => b.add(&format!("env:{name}"), value.as_encoded_bytes()),
            Some(KeyedAs::Path) => {
                b.add(
                    &format!("env:{name}"),
                    &k.bases.normalize(value.as_encoded_bytes()),
                );
            }
            None => {}
        }
    }
    match k.rustc {
        Some(d) => b.add_digest("rustc", d),
        None => b.add("rustc", b"unknown"),
    }
    for (name, id) in k.tools {
        match id {
            Some(d) => b.add_digest(&format!("tool:{name}"), d),
            None => b.add(&format!("tool:{name}"), b"absent"),
        }
    }
    for name in k.key_env {
        if let Some(v) = env_value(k.env, name) {
            b.add(&format!("key-env:{name}"), v.as_encoded_bytes());
        }
    }
    k.bases.key_exact_paths(&mut b);
    b.finish()
}

/// Where the system keeps libraries (searched after a run's own
/// `rustc-link-search` directories).
const SYSTEM_LIB_DIRS: &[&str] = &[
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/lib64",
    "/lib",
];

/// The system libraries (outside every base directory) that a run's
/// `rustc-link-lib` lines name, as the linker would find them.
pub fn system_libraries(d: &Directives, bases: &BaseDirs) -> Vec<PathBuf> {
    let under_base = |p: &Path| {
        let text = p.to_string_lossy();
        bases
            .iter()
            .any(|(_, b)| text.starts_with(b) && text[b.len()..].starts_with('/'))
    };
    let dirs: Vec<PathBuf> = d
        .link_search
        .iter()
        .map(PathBuf::from)
        .chain(SYSTEM_LIB_DIRS.iter().map(PathBuf::from))
        .collect();
    let mut found = Vec::new();
    for lib in &d.link_libs {
        let hit = dirs.iter().find_map(|dir| {
            [format!("lib{lib}.so"), format!("lib{lib}.a")]
                .into_iter()
                .map(|f| dir.join(f))
                .find(|p| p.is_file())
        });
        if let Some(p) = hit.filter(|p| !under_base(p)) {
            if !found.contains(&p) {
                found.push(p);
            }
        }
    }
    found
}

/// The manifest of a finished run (see the table at the top). `cwd` is
/// the run's working directory (its package directory); paths under
/// `out_dir` are outputs, not inputs, and are left out.
pub fn manifest(
    d: &Directives,
    cwd: &Path,
    out_dir: &Path,
    env: &[(OsString, OsString)],
    bases: &BaseDirs,
    digester: &dyn FileDigester,
) -> Result<Manifest, ManifestError> {
    let mut files: Vec<(String, Digest)> = Vec::new();
    let mut add = |text: &str, path: PathBuf| -> Result<(), ManifestError> {
        if text.contains('\n') {
            return Err(ManifestError::Newline(text.to_string()));
        }
        let (name, digest) = if path.is_dir() {
            let d = tree::digest(&path, digester)
                .map_err(|source| ManifestError::Read { path, source })?;
            (
                format!("{}/", bases.normalize_str(text.trim_end_matches('/'))),
                d,
            )
        } else {
            let d = match digester.digest(&path) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => ABSENT,
                Err(source) => return Err(ManifestError::Read { path, source }),
            };
            (bases.normalize_str(text), d)
        };
        if !files.iter().any(|(n, _)| *n == name) {
            files.push((name, digest));
        }
        Ok(())
    };
    let declared: Vec<&String> = d
        .rerun_if_changed
        .iter()
        .filter(|p| !cwd.join(p).starts_with(out_dir))
        .collect();
    if d.rerun_if_changed.is_empty() {
        add(".", cwd.to_path_buf())?;
    }
    for p in declared {
        add(p, cwd.join(p))?;
    }
    for lib in system_libraries(d, bases) {
        add(&lib.to_string_lossy(), lib.clone())?;
    }
    let mut env_deps: Vec<(String, Option<String>)> = Vec::new();
    for name in &d.rerun_if_env_changed {
        if env_deps.iter().any(|(n, _)| n == name) {
            continue;
        }
        let value = env_value(env, name)
            .map(|v| bases.normalize_str(&escape_env_value(&v.to_string_lossy())));
        env_deps.push((name.clone(), value));
    }
    Ok(Manifest {
        files,
        env: env_deps,
        env_values: EnvValues::BaseRelative,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
