//! The cache key of a rustc compile.
//!
//! Lookups never run the compiler ("direct mode"). A compile's key has two
//! parts:
//!
//! * **Part A** is computed from the command line and environment before
//!   compiling. It names a list of manifests.
//! * A **manifest** lists the source files (with digests) and `env-dep`
//!   variables (with values) that an earlier compile with the same part A
//!   read, as its dep-info file recorded them. When every recorded file still
//!   has its digest and every variable its value, the manifest names the
//!   entry: **part B** = hash(A, manifest).
//!
//! | input | in the key? | how, and why |
//! |---|---|---|
//! | key format version | A | bumped whenever an input changes meaning |
//! | toolchain | A | `rustc -vV` (version, commit hash, host, LLVM) and the digest of every file in the target's `lib/rustlib/<target>/lib` (std and friends) |
//! | crate name, types, edition, `--cfg`, `--check-cfg`, `-C` options, lints (`-A/-W/-D/-F`, `--cap-lints`), `--target`, `-Z`, `--remap-path-prefix`, `-g`, `-O`, `--test`, `-L` and `-l` | A | as written, in order, with base directories replaced by tokens |
//! | `--error-format`, `--json`, `--color`, `--diagnostic-width` | A | they shape the stderr that a hit replays |
//! | `--emit` kinds | A | which files are produced |
//! | `-C incremental` | A, without its directory | incremental compiles split code into other units than non-incremental ones; the session directory is where rustc keeps state, not an input of the outputs (a hit leaves it alone, and rustc validates it on the next compile) |
//! | `--emit` paths, `--out-dir` | no | where outputs go, not what they are; a hit writes them where this compile asks |
//! | `--extern` files | A | replaced by the digest of their content, so a rebuilt but identical dependency still hits. Never by anything looser: rustc records each dependency's crate hash (SVH) in a crate's metadata, and that hash depends on where the dependency was built (its working directory is a tracked option). A crate compiled against one checkout's proc-macro and restored next to another checkout's rebuild of it breaks the build further down ("can't find crate"); a test pins this |
//! | static native libraries (`-l static=…`, found through `-L`) | A | by content, because rustc bundles them into the rlib |
//! | the source read from standard input (`-`, as in autocfg's probes) | A | its digest (the wrapper reads standard input and passes it on to rustc) |
//! | the 16 random hex digits of an autocfg probe's crate name (`autocfg_<hex>_<N>`, source on standard input, `--emit=llvm-ir` only) | no | drawn anew by every build script run; the probe's outcome (exit code, messages) does not depend on them, and it is all that is cached: the `.ll`, which autocfg deletes unread, does depend on them and is never restored. Messages that name the crate are not stored |
//! | the source file path | A | as written (cargo writes it relative to the workspace root for local crates) |
//! | source files the compile read (`mod`, `include!`, `include_bytes!`, …) | B | path (base-relative) and content digest, from the dep-info of the compile that stored the entry |
//! | `env-dep` variables (`env!`, `option_env!`) | B | name and exact value: a value may be embedded in the output and used at run time (`env!("CARGO_MANIFEST_DIR")` to find test data) |
//! | the `env-dep` value of `OUT_DIR` | B | base-relative: crates such as serde and thiserror `include!(concat!(env!("OUT_DIR"), …))` build-script output, which only names a source file (whose content is in the manifest); compared exactly, every crate below them would miss in another checkout. Its string is then as embedded as a `file!()` path (see below) |
//! | `CARGO_*` variables that cargo sets for rustc (`CARGO_PKG_*`, `CARGO_CRATE_NAME`, `CARGO_MANIFEST_DIR`, …) and `OUT_DIR` | A | proc-macros may read them without rustc knowing; path values are base-relative |
//! | `CARGO_MAKEFLAGS`, `CARGO` and cargo's own configuration variables (`CARGO_HOME`, `CARGO_TARGET_*`, `CARGO_BUILD_*`, `CARGO_TERM_*`, `CARGO_NET_*`, `CARGO_HTTP_*`, `CARGO_REGISTRIES_*`, `CARGO_REGISTRY_*`, `CARGO_PROFILE_*`, `CARGO_INCREMENTAL`, `CARGO_LOG`, `CARGO_ENCODED_RUSTFLAGS`, …) | no | jobserver file descriptors, the cargo binary's location, and settings cargo applies itself (their effect reaches rustc as arguments); some hold secrets |
//! | `RUSTC_BOOTSTRAP`, `RUST_TARGET_PATH`, `RUSTC_FORCE_RUSTC_VERSION`, `*_DEPLOYMENT_TARGET` | A | rustc reads them itself |
//! | `CLIPPY_ARGS`, `CLIPPY_CONF_DIR` | A, clippy-driver only | clippy-driver reads them (it also lists `clippy.toml` in the dep-info); rustc does not, so `cargo clippy` and `cargo check` share dependencies |
//! | the linker, for binaries, tests, proc-macros, dylibs and cdylibs | A | `-C linker` (else `cc`) found in `PATH`: its binary, `--version`, the `ld` it runs (or `-fuse-ld=`'s) and the C runtime files it adds (`crt1.o`, `libgcc.a`, `libc_nonshared.a`, …), by content |
//! | `-C link-arg(s)` of a linked crate | A | exactly as written (a path in `-rpath` ends up in the binary) |
//! | what the link read | B | every file named by rustc's `--print link-args` (asked for on a miss): every crate linked in, dependencies of dependencies too, native libraries found through `-L`, linker scripts, by path (base-relative) and content; the toolchain's own files are covered by its identity |
//! | `-C target-cpu=native` (the last `target-cpu` given) | A | besides the argument as written, what `native` is on this machine: `native-cpu` (the CPU rustc names for the host) and `native-features` (the `target_feature` list of `rustc -C target-cpu=native --print cfg`), asked once per toolchain and target (see [`crate::native`]). Another machine's `native` would give code this one cannot run (AVX-512 on a CPU without it: SIGILL), and `cfg(target_feature)` differs even in `cargo check`. Not cached: `native` with a `--target` other than the host (rustc would resolve the host's CPU for it), and a compile whose probe fails or times out |
//! | variables named in `CACHEPOT_KEY_ENV` (or the config file's `key_env`) | A | `key-env:NAME`: `=<value>` exactly, or `(unset)` (an empty value is not an unset one), in every Rust compile: a proc-macro reads variables that rustc never hears of (they are in no dep-info) |
//! | the variables of well-known proc-macro crates (table below), when an `--extern` names the crate | A | `key-env:NAME`, as above |
//! | other environment variables | no | rustc does not read them; anything the crate reads with `env!` is an `env-dep`, and a proc-macro's `std::env::var` is unknowable unless named above |
//! | absolute paths under base directories (working directory, `CARGO_HOME`, the target directory, `CACHEPOT_BASEDIRS`) | A, B | replaced by a token naming the base, so another checkout hits |
//! | every base directory's absolute path | A, under `CACHEPOT_PATH_POLICY=exact` only | the paths an output embeds are then this checkout's own |
//!
//! Well-known proc-macro crates and the variables they read at expansion
//! time, keyed when a compile's `--extern` names the crate (by its name
//! on the command line or the crate name in its file's name, so a renamed
//! dependency counts too). Only crates whose variables are known exactly
//! are listed; anything else goes in `CACHEPOT_KEY_ENV`.
//!
//! | crate | variables |
//! |---|---|
//! | `sqlx`, `sqlx_macros` | `DATABASE_URL`, `SQLX_OFFLINE`, `SQLX_OFFLINE_DIR` |
//!
//! What stays unknowable: files a proc-macro reads without telling rustc
//! (sqlx's `.env` and `.sqlx/` query files, templates read with
//! `std::fs`): they are in no dep-info, so a change to them alone does
//! not miss; variables read by a proc-macro that reaches a crate through
//! a re-export (the crate's `--extern` names the re-exporting crate only),
//! or that sqlx reads under another name (`database_url_var` in
//! `sqlx.toml`), unless listed in `CACHEPOT_KEY_ENV`.
//!
//! Left out on purpose under the default path policy (share), and what it
//! costs: the absolute paths that rustc embeds in debug info and in
//! `file!()` for crates outside the working directory come from the build
//! that stored the entry. This is what sccache's and ccache's base
//! directories do too; `--remap-path-prefix` in `RUSTFLAGS` makes those
//! paths identical everywhere. Under `CACHEPOT_PATH_POLICY=exact` every
//! base directory's absolute path is in part A (`path:<name>`), so a hit
//! names this checkout's own paths. Crates found
//! through `-L dependency=` without `--extern` (dependencies of
//! dependencies) are not hashed: they are pinned by the metadata of the
//! `--extern` crates, which is hashed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::args::{RustCompile, Uncacheable};
use crate::digest::{Digest, FileDigester};
use crate::key::{env_value, Key, KeyBuilder};
use crate::native::NativeCpu;
use crate::paths::{find_target_dir, standard_bases, BaseDirs};

/// Environment variables outside `CARGO_*` that rustc reads itself.
const RUSTC_ENV: &[&str] = &[
    "OUT_DIR",
    "RUSTC_BOOTSTRAP",
    "RUST_TARGET_PATH",
    "RUSTC_FORCE_RUSTC_VERSION",
];

/// Proc-macro crates that read environment variables rustc never hears of,
/// and those variables (see the table above).
pub const MACRO_ENV: &[(&str, &[&str])] = &[
    (
        "sqlx",
        &["DATABASE_URL", "SQLX_OFFLINE", "SQLX_OFFLINE_DIR"],
    ),
    (
        "sqlx_macros",
        &["DATABASE_URL", "SQLX_OFFLINE", "SQLX_OFFLINE_DIR"],
    ),
];

/// Variables clippy-driver reads; in the key of clippy-driver compiles only,
/// so that `cargo clippy` shares its dependencies' entries with `cargo check`.
const CLIPPY_ENV: &[&str] = &["CLIPPY_ARGS", "CLIPPY_CONF_DIR"];

/// `CARGO_*` variables left out of the key (see the table above).
const CARGO_ENV_LEFT_OUT: &[&str] = &[
    "CARGO",
    "CARGO_MAKEFLAGS",
    "CARGO_HOME",
    "CARGO_INCREMENTAL",
    "CARGO_LOG",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
];

/// Prefixes of cargo's own configuration variables, left out of the key.
const CARGO_ENV_LEFT_OUT_PREFIXES: &[&str] = &[
    "CARGO_BUILD_",
    "CARGO_TERM_",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRIES_",
    "CARGO_REGISTRY_",
    "CARGO_PROFILE_",
    "CARGO_CACHE_",
    "CARGO_ALIAS_",
    "CARGO_UNSTABLE_",
    "CARGO_FUTURE_INCOMPAT_",
    "CARGO_CARGO_NEW_",
    "CARGO_INSTALL_",
    "CARGO_SOURCE_",
    "CARGO_LOG_",
];

/// Whether an environment variable goes into part A.
pub fn env_in_key(name: &str) -> bool {
    if RUSTC_ENV.contains(&name) || name.ends_with("_DEPLOYMENT_TARGET") {
        return true;
    }
    if !name.starts_with("CARGO_") && name != "CARGO" {
        return false;
    }
    if name == "CARGO_TARGET_TMPDIR" {
        return true;
    }
    if name.starts_with("CARGO_TARGET_") || CARGO_ENV_LEFT_OUT.contains(&name) {
        return false;
    }
    !CARGO_ENV_LEFT_OUT_PREFIXES
        .iter()
        .any(|p| name.starts_with(p))
}

/// What the key needs besides the command line.
pub struct KeyContext<'a> {
    /// The compile's working directory.
    pub cwd: &'a Path,
    /// The compile's environment.
    pub env: &'a [(OsString, OsString)],
    /// Toolchain identity (see [`crate::toolchain`]).
    pub toolchain: &'a Digest,
    /// Base directories of this compile.
    pub bases: &'a BaseDirs,
    /// Where file digests come from.
    pub digester: &'a dyn FileDigester,
    /// The compiler is clippy-driver.
    pub clippy: bool,
    /// The identity of the linker, for a linked crate (see
    /// [`super::linker`]).
    pub linker: Option<&'a Digest>,
    /// The digest of standard input, when the wrapper read it for a source
    /// given as `-`.
    pub stdin: Option<&'a Digest>,
    /// What `native` is on this machine, for a compile with
    /// `-C target-cpu=native` (see [`crate::native`]).
    pub native_cpu: Option<&'a NativeCpu>,
    /// The variables configured to be keyed (`CACHEPOT_KEY_ENV`); their
    /// values come from `env`.
    pub key_env: &'a [String],
}

/// The crate an `--extern` brings in, by the name on the command line
/// (`noprelude:foo=…` is `foo`) and by the crate name in its file's name
/// (`libfoo-<hash>.rlib`), which stays when a dependency is renamed.
fn extern_crate_names(spec: &str, path: Option<&str>) -> [Option<String>; 2] {
    let given = spec.rsplit(':').next().map(str::to_string);
    let from_file = path
        .and_then(|p| Path::new(p).file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("lib"))
        .and_then(|n| n.split(['-', '.']).next())
        .map(str::to_string);
    [given, from_file]
}

/// The variables whose values go into this compile's key: the configured
/// ones, and those of the well-known proc-macro crates it uses; sorted,
/// each once.
pub fn keyed_env_names(c: &RustCompile, configured: &[String]) -> Vec<String> {
    let mut names: Vec<String> = configured.to_vec();
    for e in &c.externs {
        for name in extern_crate_names(&e.spec, e.path.as_deref())
            .into_iter()
            .flatten()
        {
            if let Some((_, vars)) = MACRO_ENV.iter().find(|(k, _)| *k == name) {
                names.extend(vars.iter().map(|v| v.to_string()));
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The base directories of a rustc compile: the working directory,
/// `CARGO_HOME`, the target directory (found from `--out-dir` by cargo's
/// `CACHEDIR.TAG`) and the configured ones, named `base0`, `base1`, ….
pub fn base_dirs(
    c: &RustCompile,
    cwd: &Path,
    env: &[(OsString, OsString)],
    configured: &[PathBuf],
) -> BaseDirs {
    let target_dir = c
        .out_dir
        .as_ref()
        .and_then(|d| find_target_dir(&cwd.join(d)));
    standard_bases(cwd, env, target_dir, configured)
}

/// Computes part A.
pub fn key_a(c: &RustCompile, ctx: &KeyContext<'_>) -> Result<Key, Uncacheable> {
    let bases = ctx.bases;
    let mut b = KeyBuilder::new("rust-a");
    b.add_digest("toolchain", ctx.toolchain);
    // An autocfg probe's crate name is random per build script run (see
    // `RustCompile::autocfg_probe`); its random part is left out.
    let probe = c.autocfg_probe();
    for a in &c.key_args {
        match probe {
            Some(uuid) if a.contains(uuid) => {
                b.add(
                    "arg",
                    &bases.normalize(a.replace(uuid, "{autocfg}").as_bytes()),
                );
            }
            _ => b.add("arg", &bases.normalize(a.as_bytes())),
        }
    }
    if c.reads_stdin() {
        let Some(d) = ctx.stdin else {
            return Err(Uncacheable {
                reason: "stdin input".into(),
                detail: "source read from standard input".into(),
            });
        };
        b.add_digest("stdin", d);
    }
    if c.is_linked() {
        let Some(linker) = ctx.linker else {
            return Err(Uncacheable {
                reason: "linker unknown".into(),
                detail: c.linker.clone().unwrap_or_else(|| "cc".into()),
            });
        };
        b.add_digest("linker", linker);
        // A link argument can end up in the binary (`-Wl,-rpath,/src/lib`):
        // kept exactly, not base-relative.
        for a in &c.link_args {
            b.add("link-arg", a.as_bytes());
        }
        // ld reads these: library search directories, and a run path it
        // writes into the binary.
        for name in ["LIBRARY_PATH", "LD_RUN_PATH"] {
            if let Some(v) = env_value(ctx.env, name) {
                b.add(&format!("env:{name}"), v.as_encoded_bytes());
            }
        }
    }
    for (i, e) in c.externs.iter().enumerate() {
        let Some(p) = &e.path else { continue };
        let d = ctx
            .digester
            .digest(&ctx.cwd.join(p))
            .map_err(|err| Uncacheable {
                reason: "unreadable --extern".into(),
                detail: format!("{p}: {err}"),
            })?;
        b.add_digest(&format!("extern:{i}:{}", e.spec), &d);
    }
    for lib in c
        .link_libs
        .iter()
        .filter(|l| l.kind.as_deref() == Some("static"))
    {
        let path =
            find_static_lib(c, ctx.cwd, &lib.name, lib.verbatim).ok_or_else(|| Uncacheable {
                reason: "static library not found".into(),
                detail: lib.name.clone(),
            })?;
        let d = ctx.digester.digest(&path).map_err(|err| Uncacheable {
            reason: "unreadable static library".into(),
            detail: format!("{}: {err}", path.display()),
        })?;
        b.add_digest(&format!("static-lib:{}", lib.name), &d);
    }
    if c.native_cpu() {
        let Some(native) = ctx.native_cpu else {
            return Err(Uncacheable {
                reason: "native CPU unknown".into(),
                detail: "-C target-cpu=native".into(),
            });
        };
        native.add_to(&mut b);
    }
    // Read by proc-macros, never by rustc: exact values, and an unset
    // variable is not an empty one.
    for name in keyed_env_names(c, ctx.key_env) {
        match env_value(ctx.env, &name) {
            Some(v) => {
                let mut value = b"=".to_vec();
                value.extend_from_slice(v.as_encoded_bytes());
                b.add(&format!("key-env:{name}"), &value);
            }
            None => b.add(&format!("key-env:{name}"), b"(unset)"),
        }
    }
    // Later definitions win, as in a process environment.
    let mut env: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for (k, v) in ctx.env {
        let Some(k) = k.to_str() else { continue };
        if !(env_in_key(k) || ctx.clippy && CLIPPY_ENV.contains(&k)) {
            continue;
        }
        let v = v.to_str().ok_or_else(|| Uncacheable {
            reason: "non-utf8 environment".into(),
            detail: k.to_string(),
        })?;
        env.insert(k, v);
    }
    for (k, v) in env {
        b.add(&format!("env:{k}"), &bases.normalize(v.as_bytes()));
    }
    bases.key_exact_paths(&mut b);
    Ok(b.finish())
}

/// Finds `lib<name>.a` (or the verbatim name) in the native search paths.
fn find_static_lib(c: &RustCompile, cwd: &Path, name: &str, verbatim: bool) -> Option<PathBuf> {
    let file = if verbatim {
        name.to_string()
    } else {
        format!("lib{name}.a")
    };
    c.search_paths
        .iter()
        .filter(|(kind, _)| kind == "native" || kind == "all")
        .map(|(_, dir)| cwd.join(dir).join(&file))
        .find(|p| p.is_file())
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
