//! Parsing gcc and clang command lines into a [`CCompile`] or the reason it
//! cannot be cached. One source compiled to one object (`-c`) is cacheable;
//! linking, several sources, preprocessing only, standard input and
//! precompiled-header output are not.

use std::ffi::OsString;
use std::path::Path;

use crate::rust::Uncacheable;

/// The source language, from `-x` or the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// C (`.c`).
    C,
    /// C++ (`.cc`, `.cpp`, `.cxx`, `.C`, `.c++`).
    Cxx,
    /// Assembler that goes through the preprocessor (`.S`, `.sx`).
    AsmPreprocessed,
    /// Assembler (`.s`).
    Asm,
    /// Objective-C (`.m`).
    ObjC,
    /// Objective-C++ (`.mm`).
    ObjCxx,
}

impl Language {
    fn from_extension(path: &str) -> Option<Language> {
        let ext = Path::new(path).extension()?.to_str()?;
        Some(match ext {
            "c" => Language::C,
            "cc" | "cpp" | "cxx" | "C" | "c++" | "cp" => Language::Cxx,
            "S" | "sx" => Language::AsmPreprocessed,
            "s" => Language::Asm,
            "m" => Language::ObjC,
            "mm" | "M" => Language::ObjCxx,
            _ => return None,
        })
    }

    fn from_x(value: &str) -> Option<Language> {
        Some(match value {
            "c" => Language::C,
            "c++" => Language::Cxx,
            "assembler-with-cpp" => Language::AsmPreprocessed,
            "assembler" => Language::Asm,
            "objective-c" => Language::ObjC,
            "objective-c++" => Language::ObjCxx,
            _ => return None,
        })
    }
}

/// What a command line is.
#[derive(Clone, Debug)]
pub enum CParsed {
    /// A compile that is not cached, and why.
    Uncacheable(Uncacheable),
    /// A cacheable compile.
    Cacheable(Box<CCompile>),
}

/// A cacheable C-family compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CCompile {
    /// The language.
    pub language: Language,
    /// The source file, as written.
    pub input: String,
    /// The object file (`-o`, or the source's stem with `.o`).
    pub output: String,
    /// The dependency file (`-MD`/`-MMD`, with `-MF` or the default name).
    pub depfile: Option<String>,
    /// Split DWARF: a `.dwo` beside the object.
    pub split_dwarf: bool,
    /// Coverage notes: a `.gcno` beside the object.
    pub coverage: bool,
    /// Arguments that go into the key, in order, with the source, the
    /// object and the dependency file's path left out.
    pub key_args: Vec<String>,
}

impl CCompile {
    /// Extra files written beside the object, by role.
    pub fn side_outputs(&self) -> Vec<(&'static str, String)> {
        let stem = self
            .output
            .rsplit_once('.')
            .map(|(s, _)| s)
            .unwrap_or(&self.output);
        let mut out = Vec::new();
        if self.split_dwarf {
            out.push(("dwo", format!("{stem}.dwo")));
        }
        if self.coverage {
            out.push(("gcno", format!("{stem}.gcno")));
        }
        if let Some(d) = &self.depfile {
            out.push(("depfile", d.clone()));
        }
        out
    }
}

fn no(reason: &str, detail: impl Into<String>) -> CParsed {
    CParsed::Uncacheable(Uncacheable {
        reason: reason.to_string(),
        detail: detail.into(),
    })
}

/// Options that take a value as the next argument (or attached, for the
/// short ones).
const WITH_VALUE: &[&str] = &[
    "-o",
    "-x",
    "-I",
    "-D",
    "-U",
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-isysroot",
    "--sysroot",
    "-MF",
    "-MT",
    "-MQ",
    "-arch",
    "-target",
    "--target",
    "-Xclang",
    "-Xassembler",
    "-Xpreprocessor",
    "-std",
    "-L",
    "-l",
];

/// Parses a gcc or clang command line (without the compiler itself).
/// `@file` arguments are read relative to `cwd`.
pub fn parse(args: &[OsString], cwd: &Path) -> CParsed {
    let mut strings = Vec::with_capacity(args.len());
    for a in args {
        let Some(s) = a.to_str() else {
            return no("non-utf8 argument", a.to_string_lossy());
        };
        match s.strip_prefix('@') {
            Some(file) if !file.is_empty() => match std::fs::read_to_string(cwd.join(file)) {
                Ok(text) => strings.extend(text.split_whitespace().map(str::to_string)),
                Err(e) => return no("unreadable @file", format!("{file}: {e}")),
            },
            _ => strings.push(s.to_string()),
        }
    }
    parse_strings(&strings)
}

fn parse_strings(args: &[String]) -> CParsed {
    let mut compile_only = false;
    let mut output: Option<String> = None;
    let mut inputs: Vec<String> = Vec::new();
    let mut language: Option<Language> = None;
    let mut depfile_wanted = false;
    let mut depfile: Option<String> = None;
    let mut split_dwarf = false;
    let mut coverage = false;
    let mut key_args: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        let value = |i: &mut usize| -> Option<String> {
            let v = args.get(*i).cloned();
            *i += 1;
            v
        };
        match a {
            "-c" => compile_only = true,
            "-E" => return no("preprocessing only", a),
            "-S" => return no("assembly output", a),
            "-M" | "-MM" => return no("dependency output only", a),
            "-" => return no("stdin input", a),
            "-o" => match value(&mut i) {
                Some(v) => output = Some(v),
                None => return no("missing option value", a),
            },
            "-MD" | "-MMD" => {
                depfile_wanted = true;
                key_args.push(a.to_string());
            }
            "-MF" => match value(&mut i) {
                Some(v) => depfile = Some(v),
                None => return no("missing option value", a),
            },
            "-x" => match value(&mut i) {
                Some(v) if v.ends_with("-header") => return no("precompiled header output", v),
                Some(v) => match Language::from_x(&v) {
                    Some(l) => {
                        language = Some(l);
                        key_args.push(format!("-x{v}"));
                    }
                    None => return no("unsupported language", v),
                },
                None => return no("missing option value", a),
            },
            "-gsplit-dwarf" => {
                split_dwarf = true;
                key_args.push(a.to_string());
            }
            "--coverage" | "-ftest-coverage" => {
                coverage = true;
                key_args.push(a.to_string());
            }
            _ if a.starts_with("-fprofile-generate")
                || a.starts_with("-fprofile-instr-generate") =>
            {
                return no("-fprofile-generate", a)
            }
            _ if a.starts_with("-o") && a.len() > 2 => output = Some(a[2..].to_string()),
            _ if a.starts_with("-MF") && a.len() > 3 => depfile = Some(a[3..].to_string()),
            _ if a.starts_with("-x") && a.len() > 2 => match Language::from_x(&a[2..]) {
                Some(l) => {
                    language = Some(l);
                    key_args.push(a.to_string());
                }
                None => return no("unsupported language", a),
            },
            _ if WITH_VALUE.contains(&a) => match value(&mut i) {
                Some(v) => {
                    key_args.push(a.to_string());
                    key_args.push(v);
                }
                None => return no("missing option value", a),
            },
            _ if a.starts_with('-') => key_args.push(a.to_string()),
            _ => inputs.push(a.to_string()),
        }
    }
    if !compile_only {
        return no("linking", "no -c");
    }
    let input = match inputs.as_slice() {
        [] => return no("no source file", ""),
        [one] => one.clone(),
        _ => return no("several source files", inputs.join(" ")),
    };
    if [".h", ".hh", ".hpp", ".hxx", ".H"]
        .iter()
        .any(|e| input.ends_with(e))
    {
        return no("precompiled header output", input);
    }
    let Some(language) = language.or_else(|| Language::from_extension(&input)) else {
        return no("unknown source type", input);
    };
    let output = output.unwrap_or_else(|| {
        let name = Path::new(&input)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("a");
        format!("{name}.o")
    });
    let depfile = if depfile_wanted {
        Some(depfile.unwrap_or_else(|| {
            let stem = output.rsplit_once('.').map(|(s, _)| s).unwrap_or(&output);
            format!("{stem}.d")
        }))
    } else {
        None
    };
    CParsed::Cacheable(Box::new(CCompile {
        language,
        input,
        output,
        depfile,
        split_dwarf,
        coverage,
        key_args,
    }))
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
