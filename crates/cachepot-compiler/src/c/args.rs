//! Parsing gcc and clang command lines into a [`CCompile`] or the reason it
//! cannot be cached. One source compiled to one object (`-c`) is cacheable;
//! linking, several sources, preprocessing only, standard input and
//! precompiled-header output are not.

use crate::output::Role;
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
    /// Profiling code (`-fprofile-arcs`, `-fprofile-generate[=DIR]`,
    /// `-fprofile-instr-generate[=FILE]`, `-fcs-profile-generate`): gcc
    /// embeds the absolute path of the `.gcda` file, which it derives from
    /// the object's path (and `DIR`, made absolute from the working
    /// directory).
    pub profile_generate: bool,
    /// The dependency file leaves out system headers (`-MMD`).
    pub deps_user_only: bool,
    /// Debug information is asked for (`-g…` other than `-g0`).
    pub debug: bool,
    /// Old prefixes of `-fdebug-prefix-map=`/`-ffile-prefix-map=`, and
    /// whether clang's `-fdebug-compilation-dir` is given: what keeps the
    /// working directory out of the debug information.
    pub debug_prefix_maps: Vec<String>,
    /// `-fdebug-compilation-dir`/`-ffile-compilation-dir` is given.
    pub compilation_dir_set: bool,
    /// Files the compile reads that its dependency file does not list:
    /// profiles (`-fprofile-use=`, `-fprofile-instr-use=`,
    /// `-fprofile-sample-use=`), precompiled headers (`-include-pch`).
    pub extra_inputs: Vec<String>,
    /// Headers forced in with `-include` (a `.gch` beside one is a
    /// precompiled header, which the key checks).
    pub forced_includes: Vec<String>,
    /// Arguments that go into the key, in order, with the source, the
    /// object and the dependency file's path left out.
    pub key_args: Vec<String>,
    /// For a compile with `-march=native`, `-mtune=native` or
    /// `-mcpu=native`: the arguments that ask the compiler what `native`
    /// is (those options, and the ones that choose the target: `-m32`,
    /// `--target=`, …), in order; empty otherwise.
    pub native_args: Vec<String>,
}

/// Options that mean "the CPU of this machine" (gcc's
/// `-march=native+nofeature` on Arm too).
const NATIVE_PREFIXES: &[&str] = &["-march=native", "-mtune=native", "-mcpu=native"];

/// Options that choose the target, which `native` is resolved for.
fn chooses_target(a: &str) -> bool {
    matches!(a, "-m32" | "-m64" | "-mx32" | "-m16") || a.starts_with("--target=")
}

/// Options that write files the cache does not know of, read files it
/// cannot see, or change how the compiler finds itself: never cached.
const REFUSED_PREFIXES: &[(&str, &str)] = &[
    ("-save-temps", "writes extra files"),
    ("-fdump-", "writes extra files"),
    ("-fstack-usage", "writes extra files"),
    ("-fcallgraph-info", "writes extra files"),
    ("-aux-info", "writes extra files"),
    ("--serialize-diagnostics", "writes extra files"),
    ("-ftime-trace", "writes extra files"),
    ("-fopt-info", "writes extra files"),
    ("-MJ", "writes extra files"),
    ("-Wp,-M", "dependency output through -Wp"),
    ("-fplugin", "compiler plugin"),
    ("-specs", "spec file"),
    ("--specs", "spec file"),
    ("-B", "compiler search path"),
    ("-wrapper", "compiler wrapper"),
    ("-working-directory", "working directory override"),
    ("-ivfsoverlay", "virtual file system overlay"),
    ("-fmodules", "clang modules"),
    ("-fcxx-modules", "clang modules"),
    ("-fmodule-file", "clang modules"),
    ("-fsyntax-only", "no output"),
    ("-emit-pch", "precompiled header output"),
    ("-fsave-optimization-record", "writes extra files"),
    ("-fdiagnostics-format=sarif-file", "writes extra files"),
    ("--write-dependencies", "dependency output through an alias"),
    (
        "--write-user-dependencies",
        "dependency output through an alias",
    ),
    ("-frecord-command-line", "records the command line"),
    ("-grecord-command-line", "records the command line"),
    ("-frecord-gcc-switches", "records the command line"),
    ("-fbranch-probabilities", "reads profile files"),
    ("-fprofile-remapping-file", "reads profile files"),
    ("-fpass-plugin", "compiler plugin"),
    ("--config", "compiler configuration file"),
    ("-fprebuilt-module-path", "clang modules"),
];

/// Values of `-Xclang` and `-Xpreprocessor` that load plugins, read
/// precompiled headers or write dependency files behind the cache's back.
const REFUSED_PASSED_ON: &[&str] = &[
    "-load",
    "-plugin",
    "-add-plugin",
    "-include-pch",
    "-emit-pch",
    "-fmodule",
    "-M",
    "-dependency-file",
];

impl CCompile {
    /// The arguments of a preprocessor run (`-E`) equivalent to this
    /// compile: its key arguments without the dependency-file options,
    /// and the source.
    pub fn preprocess_args(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.key_args.len() + 2);
        let mut skip_value = false;
        for a in &self.key_args {
            if skip_value {
                skip_value = false;
                continue;
            }
            match a.as_str() {
                "-MD" | "-MMD" | "-MP" => {}
                "-MT" | "-MQ" => skip_value = true,
                _ if a.starts_with("-MT") || a.starts_with("-MQ") => {}
                _ => out.push(a.clone()),
            }
        }
        out.push("-E".into());
        out.push(self.input.clone());
        out
    }

    /// The directories where an `#include` may find a header: the
    /// source's own directory, the working directory, and every `-I`,
    /// `-iquote`, `-isystem` and `-idirafter` directory, as written.
    /// gcc uses a `NAME.gch` found beside a header without listing it in
    /// the dependency file, so the daemon checks these for precompiled
    /// headers.
    pub fn search_dirs(&self) -> Vec<String> {
        let parent = Path::new(&self.input)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".into());
        let mut dirs = vec![parent, ".".to_string()];
        let mut take_next = false;
        for a in &self.key_args {
            if take_next {
                dirs.push(a.clone());
                take_next = false;
                continue;
            }
            for opt in ["-I", "-iquote", "-isystem", "-idirafter"] {
                if a == opt {
                    take_next = true;
                } else if let Some(v) = a.strip_prefix(opt) {
                    if opt != "-I" || !v.starts_with('-') {
                        dirs.push(v.to_string());
                    }
                }
            }
        }
        dirs.dedup();
        dirs
    }

    /// Whether the working directory ends up in the outputs: debug
    /// information or coverage notes, with no prefix map that covers it.
    pub fn embeds_cwd(&self, cwd: &Path) -> bool {
        if !(self.debug || self.coverage) || self.compilation_dir_set {
            return false;
        }
        !self
            .debug_prefix_maps
            .iter()
            .any(|old| !old.is_empty() && cwd.starts_with(old))
    }

    /// Extra files written beside the object, by role.
    pub fn side_outputs(&self) -> Vec<(Role, String)> {
        let beside = |ext: &str| {
            Path::new(&self.output)
                .with_extension(ext)
                .to_string_lossy()
                .into_owned()
        };
        let mut out = Vec::new();
        if self.split_dwarf {
            out.push((Role::CDwo, beside("dwo")));
        }
        if self.coverage {
            out.push((Role::Gcno, beside("gcno")));
        }
        if let Some(d) = &self.depfile {
            out.push((Role::DepFile, d.clone()));
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
            Some(file) if !file.is_empty() => {
                let text = match std::fs::read_to_string(cwd.join(file)) {
                    Ok(text) => text,
                    Err(e) => return no("unreadable @file", format!("{file}: {e}")),
                };
                let Some(words) = super::response::split(&text) else {
                    return no("unclosed quote in @file", file);
                };
                // gcc reads a nested one relative to the working directory,
                // clang relative to the file that names it.
                if let Some(nested) = words.iter().find(|w| w.starts_with('@')) {
                    return no("nested @file", nested.clone());
                }
                strings.extend(words);
            }
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
    let mut profile_generate = false;
    let mut key_args: Vec<String> = Vec::new();
    let mut deps_user_only = false;
    let mut debug = false;
    let mut debug_prefix_maps = Vec::new();
    let mut compilation_dir_set = false;
    let mut extra_inputs = Vec::new();
    let mut forced_includes = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        let value = |i: &mut usize| -> Option<String> {
            let v = args.get(*i).cloned();
            *i += 1;
            v
        };
        if let Some((_, why)) = REFUSED_PREFIXES.iter().find(|(p, _)| a.starts_with(p)) {
            return no(why, a);
        }
        // Values this compile reads or that decide what it embeds; they are
        // also key arguments (below).
        if let Some(map) = a
            .strip_prefix("-fdebug-prefix-map=")
            .or_else(|| a.strip_prefix("-ffile-prefix-map="))
        {
            let old = map.split_once('=').map_or(map, |(o, _)| o);
            debug_prefix_maps.push(old.trim_end_matches('/').to_string());
        }
        if a.starts_with("-fdebug-compilation-dir") || a.starts_with("-ffile-compilation-dir") {
            compilation_dir_set = true;
        }
        for p in [
            "-fprofile-use=",
            "-fprofile-instr-use=",
            "-fprofile-sample-use=",
            "-fauto-profile=",
        ] {
            if let Some(f) = a.strip_prefix(p) {
                extra_inputs.push(f.to_string());
            }
        }
        if a == "--" {
            return no("end-of-options marker", a);
        }
        if matches!(
            a,
            "-fprofile-use" | "-fauto-profile" | "-fprofile-instr-use" | "-fprofile-sample-use"
        ) {
            return no("profile without a file", a);
        }
        if a.starts_with("-g") {
            debug = a != "-g0";
        }
        match a {
            "-c" => compile_only = true,
            "-E" => return no("preprocessing only", a),
            "-S" => return no("assembly output", a),
            "-M" | "-MM" => return no("dependency output only", a),
            "-" => return no("stdin input", a),
            "-o" => match value(&mut i) {
                Some(v) if v == "-" => return no("output to stdout", a),
                Some(v) => output = Some(v),
                None => return no("missing option value", a),
            },
            "-MD" | "-MMD" => {
                depfile_wanted = true;
                // gcc applies -MMD whichever comes last.
                deps_user_only |= a == "-MMD";
                key_args.push(a.to_string());
            }
            "-include-pch" | "-include" => match value(&mut i) {
                Some(v) => {
                    if a == "-include-pch" {
                        extra_inputs.push(v.clone());
                    } else {
                        forced_includes.push(v.clone());
                    }
                    key_args.push(a.to_string());
                    key_args.push(v);
                }
                None => return no("missing option value", a),
            },
            "-MF" => match value(&mut i) {
                Some(v) => depfile = Some(v),
                None => return no("missing option value", a),
            },
            _ if a.starts_with("-x") && !inputs.is_empty() => {
                // `-x` applies to the sources after it only; one after the
                // source would be read differently by the preprocessor run.
                return no("-x after the source", a);
            }
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
            "-gsplit-dwarf" | "-gsplit-dwarf=split" => {
                split_dwarf = true;
                key_args.push(a.to_string());
            }
            "--coverage" | "-ftest-coverage" => {
                coverage = true;
                key_args.push(a.to_string());
            }
            _ if a == "-fprofile-arcs"
                || [
                    "-fprofile-generate",
                    "-fprofile-instr-generate",
                    "-fcs-profile-generate",
                ]
                .iter()
                .any(|p| a == *p || a.strip_prefix(p).is_some_and(|v| v.starts_with('='))) =>
            {
                profile_generate = true;
                key_args.push(a.to_string());
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
            "-Xclang" | "-Xpreprocessor" => match value(&mut i) {
                Some(v) if REFUSED_PASSED_ON.iter().any(|p| v.starts_with(p)) => {
                    return no("plugin, precompiled header or dependency file passed on", v)
                }
                Some(v) => {
                    key_args.push(a.to_string());
                    key_args.push(v);
                }
                None => return no("missing option value", a),
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
            Path::new(&output)
                .with_extension("d")
                .to_string_lossy()
                .into_owned()
        }))
    } else {
        None
    };
    // What asks the compiler what `native` is: the native options and the
    // ones that choose the target (`-target X` as two words).
    let mut native_args = Vec::new();
    if key_args
        .iter()
        .any(|a| NATIVE_PREFIXES.iter().any(|p| a.starts_with(p)))
    {
        let mut it = key_args.iter();
        while let Some(a) = it.next() {
            if a == "-target" || a == "--target" {
                native_args.push(a.clone());
                native_args.extend(it.next().cloned());
            } else if chooses_target(a) || NATIVE_PREFIXES.iter().any(|p| a.starts_with(p)) {
                native_args.push(a.clone());
            }
        }
    }
    CParsed::Cacheable(Box::new(CCompile {
        language,
        input,
        output,
        depfile,
        split_dwarf,
        coverage,
        profile_generate,
        deps_user_only,
        debug,
        debug_prefix_maps,
        compilation_dir_set,
        extra_inputs,
        forced_includes,
        key_args,
        native_args,
    }))
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
