//! What a C compiler is, found by asking it rather than trusting its name:
//! `cc`, `c++`, `x86_64-linux-gnu-gcc-12` and `clang-14` are all told apart
//! by the macros they predefine.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::digest::{digest_file, Digest};
use crate::key::KeyBuilder;
use crate::toolchain::{run, ToolchainError};

/// The compiler family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// GNU gcc/g++.
    Gcc,
    /// LLVM clang/clang++ (including Apple's).
    Clang,
}

/// A C-family compiler, identified.
#[derive(Clone, Debug)]
pub struct CToolchain {
    /// gcc or clang.
    pub family: Family,
    /// The binary, with symbolic links resolved.
    pub binary: PathBuf,
    /// What goes into every key of this compiler: its family, every macro
    /// it predefines (version, target, defaults) and its binary's digest.
    pub identity: Digest,
}

impl CToolchain {
    /// Runs `compiler -E -dM -x c /dev/null` once and digests the binary.
    /// A program that is neither gcc nor clang is an error.
    pub fn probe(
        compiler: &Path,
        cwd: &Path,
        env: &[(OsString, OsString)],
    ) -> Result<CToolchain, ToolchainError> {
        let args = ["-E", "-dM", "-x", "c", "/dev/null"];
        let macros = run(compiler, &args, cwd, env)?;
        let defined = |name: &str| {
            macros
                .lines()
                .any(|l| l.strip_prefix("#define ").and_then(|r| r.split(' ').next()) == Some(name))
        };
        let family = if defined("__clang__") {
            Family::Clang
        } else if defined("__GNUC__") {
            Family::Gcc
        } else {
            return Err(ToolchainError::Unexpected {
                program: compiler.to_path_buf(),
                args: args.join(" "),
                output: "neither gcc nor clang (no __GNUC__ or __clang__)".into(),
            });
        };
        let binary = std::fs::canonicalize(compiler).unwrap_or_else(|_| compiler.to_path_buf());
        let digest = digest_file(&binary).map_err(|source| ToolchainError::Spawn {
            program: binary.clone(),
            args: "(reading the binary)".into(),
            source,
        })?;
        let mut sorted: Vec<&str> = macros.lines().collect();
        sorted.sort_unstable();
        let mut k = KeyBuilder::new("c-toolchain");
        k.add("family", format!("{family:?}").as_bytes());
        k.add("macros", sorted.join("\n").as_bytes());
        k.add_digest("binary", &digest);
        Ok(CToolchain {
            family,
            binary,
            identity: k.finish().digest,
        })
    }
}
