//! rustc's crate types and emit kinds, as types (strings only on the
//! command line).

/// A `--crate-type` value that cachepot caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrateType {
    /// `lib`: the default library kind (an rlib).
    Lib,
    /// `rlib`.
    Rlib,
    /// `staticlib`.
    Staticlib,
    /// `bin`, and what `--test` builds.
    Bin,
    /// `proc-macro`.
    ProcMacro,
    /// `dylib`.
    Dylib,
    /// `cdylib`.
    Cdylib,
}

impl CrateType {
    /// Parses a `--crate-type` value; `None` for kinds that are not cached.
    pub fn parse(text: &str) -> Option<CrateType> {
        Some(match text {
            "lib" => CrateType::Lib,
            "rlib" => CrateType::Rlib,
            "staticlib" => CrateType::Staticlib,
            "bin" => CrateType::Bin,
            "proc-macro" => CrateType::ProcMacro,
            "dylib" => CrateType::Dylib,
            "cdylib" => CrateType::Cdylib,
            _ => return None,
        })
    }

    /// The command line's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CrateType::Lib => "lib",
            CrateType::Rlib => "rlib",
            CrateType::Staticlib => "staticlib",
            CrateType::Bin => "bin",
            CrateType::ProcMacro => "proc-macro",
            CrateType::Dylib => "dylib",
            CrateType::Cdylib => "cdylib",
        }
    }

    /// Whether the system linker writes it (binaries, proc-macros, dylibs,
    /// cdylibs).
    pub fn is_linked(self) -> bool {
        matches!(
            self,
            CrateType::Bin | CrateType::ProcMacro | CrateType::Dylib | CrateType::Cdylib
        )
    }
}

/// An `--emit` kind that cachepot caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmitKind {
    /// `link`: the crate type's output.
    Link,
    /// `metadata`.
    Metadata,
    /// `dep-info`.
    DepInfo,
    /// `llvm-ir` (autocfg's probes).
    LlvmIr,
}

impl EmitKind {
    /// Parses an `--emit` kind; `None` for kinds that are not cached.
    pub fn parse(text: &str) -> Option<EmitKind> {
        Some(match text {
            "link" => EmitKind::Link,
            "metadata" => EmitKind::Metadata,
            "dep-info" => EmitKind::DepInfo,
            "llvm-ir" => EmitKind::LlvmIr,
            _ => return None,
        })
    }

    /// The command line's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EmitKind::Link => "link",
            EmitKind::Metadata => "metadata",
            EmitKind::DepInfo => "dep-info",
            EmitKind::LlvmIr => "llvm-ir",
        }
    }
}
