//! What each output file of a compile is for. A role is a type here and a
//! string only in an entry, where it names the stored file ([`Role::name`]);
//! those names are part of the entry format and never change meaning.

use std::borrow::Cow;
use std::path::PathBuf;

use crate::rust::CrateType;

/// What an output file is for; restores write the role's current path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// rustc's dep-info (`.d`); its paths are stored base-relative.
    DepInfo,
    /// A C compiler's dependency file; its paths are stored base-relative.
    DepFile,
    /// rustc's crate metadata (`.rmeta`).
    Metadata,
    /// A library crate (`.rlib`); named `link` in entries.
    Rlib,
    /// A static library (`.a`).
    Staticlib,
    /// LLVM IR (`.ll`).
    LlvmIr,
    /// What the linker wrote for a linked crate type.
    Linked(CrateType),
    /// The packed split debug info beside a linked output (`.dwp`).
    Dwp(CrateType),
    /// One `.dwo` file of rustc's unpacked split debug info, by file name
    /// (named by rustc, found after the compile).
    Dwo(String),
    /// A C compile's object.
    Object,
    /// A C compile's split DWARF (`-gsplit-dwarf`), beside the object.
    CDwo,
    /// A C compile's coverage notes (`.gcno`).
    Gcno,
    /// A file a build script left in `OUT_DIR`, by its path there.
    OutFile(String),
    /// The same for a text file that names base directories, stored with
    /// them as tokens and restored for this checkout.
    OutText(String),
    /// A directory in `OUT_DIR` (restored even when empty).
    OutDir(String),
    /// A symbolic link in `OUT_DIR`; the stored data is its target.
    OutLink(String),
}

impl Role {
    /// The name the role's file has in an entry.
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            Role::DepInfo => "dep-info".into(),
            Role::DepFile => "depfile".into(),
            Role::Metadata => "metadata".into(),
            Role::Rlib => "link".into(),
            Role::Staticlib => "staticlib".into(),
            Role::LlvmIr => "llvm-ir".into(),
            Role::Linked(t) => t.as_str().into(),
            Role::Dwp(t) => format!("dwp:{}", t.as_str()).into(),
            Role::Dwo(file) => format!("dwo:{file}").into(),
            Role::Object => "object".into(),
            Role::CDwo => "dwo".into(),
            Role::Gcno => "gcno".into(),
            Role::OutFile(p) => format!("out:{p}").into(),
            Role::OutText(p) => format!("out-text:{p}").into(),
            Role::OutDir(p) => format!("out-dir:{p}").into(),
            Role::OutLink(p) => format!("out-link:{p}").into(),
        }
    }

    /// The role an entry's file name stands for (the inverse of
    /// [`Role::name`]); `None` for a name this version does not know.
    pub fn parse(name: &str) -> Option<Role> {
        if let Some(t) = name.strip_prefix("dwp:") {
            return CrateType::parse(t).filter(|t| t.is_linked()).map(Role::Dwp);
        }
        if let Some(file) = name.strip_prefix("dwo:") {
            return Some(Role::Dwo(file.to_string()));
        }
        if let Some((kind, path)) = name.split_once(':') {
            let path = path.to_string();
            match kind {
                "out" => return Some(Role::OutFile(path)),
                "out-text" => return Some(Role::OutText(path)),
                "out-dir" => return Some(Role::OutDir(path)),
                "out-link" => return Some(Role::OutLink(path)),
                _ => {}
            }
        }
        Some(match name {
            "dep-info" => Role::DepInfo,
            "depfile" => Role::DepFile,
            "metadata" => Role::Metadata,
            "link" => Role::Rlib,
            "staticlib" => Role::Staticlib,
            "llvm-ir" => Role::LlvmIr,
            "object" => Role::Object,
            "dwo" => Role::CDwo,
            "gcno" => Role::Gcno,
            other => Role::Linked(CrateType::parse(other).filter(|t| t.is_linked())?),
        })
    }

    /// Whether the file's content names paths, stored with base
    /// directories as tokens (rustc's dep-info, a C dependency file).
    pub fn rewrites_paths(&self) -> bool {
        matches!(self, Role::DepInfo | Role::DepFile | Role::OutText(_))
    }

    /// For a role of a build script's `OUT_DIR`: the path inside it, when
    /// it is a plain relative path (no `..`, not absolute, no NUL).
    pub fn out_dir_path(&self) -> Option<&str> {
        let p = match self {
            Role::OutFile(p) | Role::OutText(p) | Role::OutDir(p) | Role::OutLink(p) => p,
            _ => return None,
        };
        let plain = !p.is_empty()
            && !p.starts_with('/')
            && !p.contains('\0')
            && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        plain.then_some(p.as_str())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// One output file of a compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// What it is for.
    pub role: Role,
    /// Where this compile writes it (absolute).
    pub path: PathBuf,
    /// Written only in some cases (a `.dwp` only with debug info): stored
    /// when this compile wrote it, restored when the entry has it.
    pub optional: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_stay_as_the_format_has_them() {
        let names: Vec<String> = [
            Role::DepInfo,
            Role::DepFile,
            Role::Metadata,
            Role::Rlib,
            Role::Staticlib,
            Role::LlvmIr,
            Role::Linked(CrateType::Bin),
            Role::Linked(CrateType::ProcMacro),
            Role::Dwp(CrateType::Cdylib),
            Role::Dwo("a-1.rcgu.dwo".into()),
            Role::Object,
            Role::CDwo,
            Role::Gcno,
            Role::OutFile("lib/a.a".into()),
            Role::OutText("gen.rs".into()),
            Role::OutDir("lib".into()),
            Role::OutLink("lib/b.so".into()),
        ]
        .iter()
        .map(|r| {
            assert_eq!(Role::parse(&r.name()).as_ref(), Some(r));
            r.name().into_owned()
        })
        .collect();
        assert_eq!(
            names,
            [
                "dep-info",
                "depfile",
                "metadata",
                "link",
                "staticlib",
                "llvm-ir",
                "bin",
                "proc-macro",
                "dwp:cdylib",
                "dwo:a-1.rcgu.dwo",
                "object",
                "dwo",
                "gcno",
                "out:lib/a.a",
                "out-text:gen.rs",
                "out-dir:lib",
                "out-link:lib/b.so"
            ]
        );
        assert_eq!(Role::OutFile("a/b".into()).out_dir_path(), Some("a/b"));
        for bad in ["../x", "/etc/x", "a//b", "a/./b", ""] {
            assert_eq!(Role::OutFile(bad.into()).out_dir_path(), None, "{bad}");
        }
        assert_eq!(Role::Object.out_dir_path(), None);
        assert!(Role::DepFile.rewrites_paths() && !Role::Object.rewrites_paths());
        assert_eq!(Role::parse("lib"), None);
        assert_eq!(Role::parse("dwp:link"), None);
    }
}
