//! Parsing rustc command lines into a [`RustCompile`] or the reason it
//! cannot be cached.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::kinds::{CrateType, EmitKind};
use crate::output::{Output, Role};

/// Why a compile is not cached: a short stable category (a key in the
/// stats map) and a detail for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uncacheable {
    /// Stable category, such as `crate-type bin` or `incremental`.
    pub reason: String,
    /// Detail for logs.
    pub detail: String,
}

impl Uncacheable {
    fn new(reason: impl Into<String>, detail: impl Into<String>) -> Uncacheable {
        Uncacheable {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// What a rustc command line is.
#[derive(Clone, Debug)]
pub enum Parsed {
    /// A query such as `-vV` or `--print`: run the compiler; it is not a compile.
    NotACompile,
    /// A compile cachepot does not cache.
    Uncacheable(Uncacheable),
    /// A compile cachepot can cache.
    Cacheable(Box<RustCompile>),
}

/// One `--emit` kind, with its explicit path if one was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emit {
    /// What to write.
    pub kind: EmitKind,
    /// `--emit kind=path`.
    pub path: Option<String>,
}

/// One `--extern` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extern {
    /// Everything before `=`: options and the crate name (`noprelude:foo`).
    pub spec: String,
    /// The file, if one was given.
    pub path: Option<String>,
}

/// One `-l` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkLib {
    /// `static`, `dylib`, `framework`, … or `None` when not given.
    pub kind: Option<String>,
    /// The library name (after any `:rename`, the name searched for).
    pub name: String,
    /// `+verbatim` was given.
    pub verbatim: bool,
}

/// `-C split-debuginfo`: where debug info goes besides the outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitDebuginfo {
    /// In the outputs (Linux's default).
    Off,
    /// One `.dwp` beside a linked output.
    Packed,
    /// One `.dwo` per codegen unit in the output directory.
    Unpacked,
}

/// A cacheable rustc compile.
#[derive(Clone, Debug)]
pub struct RustCompile {
    /// `--crate-name`.
    pub crate_name: String,
    /// `--crate-type` values, in order.
    pub crate_types: Vec<CrateType>,
    /// The source file as written on the command line.
    pub input: String,
    /// `--emit` kinds.
    pub emits: Vec<Emit>,
    /// `--out-dir`, as written.
    pub out_dir: Option<String>,
    /// `-C extra-filename`.
    pub extra_filename: String,
    /// `--extern` arguments.
    pub externs: Vec<Extern>,
    /// `-L` arguments: kind (`all` when none given) and path.
    pub search_paths: Vec<(String, String)>,
    /// `-l` arguments.
    pub link_libs: Vec<LinkLib>,
    /// `--target`.
    pub target: Option<String>,
    /// `--test`: a test harness binary.
    pub test: bool,
    /// `-C incremental=`: rustc's session directory.
    pub incremental: Option<String>,
    /// `-C split-debuginfo`.
    pub split_debuginfo: SplitDebuginfo,
    /// `-C linker=`.
    pub linker: Option<String>,
    /// `-C link-arg=` and `-C link-args=` values, split into words.
    pub link_args: Vec<String>,
    /// `-C target-cpu=`: the last one given, as rustc takes it.
    pub target_cpu: Option<String>,
    /// The arguments that go into the key, in order, with output locations
    /// left out and each `--extern` path replaced by `{extern:N}`, N being
    /// its index in `externs`.
    pub key_args: Vec<String>,
}

/// Outputs whose names the compiler chooses: the files in `dir` named
/// `<name_prefix>…<name_suffix>` that a compile wrote, each stored under
/// [`Role::Dwo`] with its file name (the `.dwo` files of
/// `-C split-debuginfo=unpacked`: `<crate><extra-filename>.<crate>.<hash>-cgu.<N>.rcgu.dwo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFamily {
    /// Where the files are.
    pub dir: PathBuf,
    /// The start of every file name.
    pub name_prefix: String,
    /// The end of every file name.
    pub name_suffix: &'static str,
}

impl OutputFamily {
    /// Whether a file name (not a path) belongs to the family.
    pub fn accepts(&self, name: &str) -> bool {
        name.len() > self.name_prefix.len() + self.name_suffix.len()
            && name.starts_with(&self.name_prefix)
            && name.ends_with(self.name_suffix)
            && !name.contains(['/', '\0'])
    }

    /// Where an entry file of this family goes, or `None` when the role
    /// is not the family's (or names no file of it).
    pub fn path_of(&self, role: &Role) -> Option<PathBuf> {
        let Role::Dwo(name) = role else { return None };
        self.accepts(name).then(|| self.dir.join(name))
    }
}

/// Flags that take a value, either as the next argument or after `=`
/// (long) or attached (short).
const VALUE_FLAGS: &[&str] = &[
    "--crate-name",
    "--edition",
    "--crate-type",
    "--emit",
    "--out-dir",
    "-o",
    "--extern",
    "--cfg",
    "--check-cfg",
    "--cap-lints",
    "--error-format",
    "--json",
    "--color",
    "--diagnostic-width",
    "--target",
    "--sysroot",
    "--remap-path-prefix",
    "--remap-path-scope",
    "--print",
    "--explain",
    "--env-set",
    "--crate-attr",
    "--codegen",
    "--allow",
    "--warn",
    "--deny",
    "--forbid",
    "--force-warn",
    "--extern-location",
    "-L",
    "-l",
    "-C",
    "-Z",
    "-A",
    "-W",
    "-D",
    "-F",
];

/// Flags without a value that do not change what is cached beyond being in the key.
const PLAIN_FLAGS: &[&str] = &["-g", "-O", "-v", "--verbose"];

/// `-C` options that make rustc write files other than the known outputs.
const UNCACHEABLE_CODEGEN: &[&str] = &["save-temps", "profile-generate"];

/// Parses a rustc command line (without the compiler itself).
pub fn parse(args: &[OsString], cwd: &Path) -> Parsed {
    let mut strings = Vec::with_capacity(args.len());
    for a in args {
        match a.to_str() {
            Some(s) => strings.push(s.to_string()),
            None => {
                return Parsed::Uncacheable(Uncacheable::new(
                    "non-utf8 argument",
                    a.to_string_lossy(),
                ))
            }
        }
    }
    let strings = match expand_argfiles(strings, cwd) {
        Ok(s) => s,
        Err(u) => return Parsed::Uncacheable(u),
    };
    match parse_strings(&strings) {
        Ok(Some(c)) => Parsed::Cacheable(Box::new(c)),
        Ok(None) => Parsed::NotACompile,
        Err(u) => Parsed::Uncacheable(u),
    }
}

/// Replaces `@path` arguments by the file's lines, as rustc does.
fn expand_argfiles(args: Vec<String>, cwd: &Path) -> Result<Vec<String>, Uncacheable> {
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        match a.strip_prefix('@') {
            Some(file) if !file.is_empty() => {
                let text = std::fs::read_to_string(cwd.join(file))
                    .map_err(|e| Uncacheable::new("unreadable @argfile", format!("{file}: {e}")))?;
                out.extend(text.lines().map(str::to_string));
            }
            _ => out.push(a),
        }
    }
    Ok(out)
}

/// Splits `arg` into a known flag and its inline value, if it has one.
fn split_flag(arg: &str) -> Option<(&'static str, Option<&str>)> {
    for flag in VALUE_FLAGS {
        if arg == *flag {
            return Some((flag, None));
        }
        if let Some(rest) = arg.strip_prefix(flag) {
            if flag.starts_with("--") {
                if let Some(v) = rest.strip_prefix('=') {
                    return Some((flag, Some(v)));
                }
            } else if !rest.is_empty() && flag.len() == 2 {
                return Some((flag, Some(rest)));
            }
        }
    }
    None
}

fn parse_strings(args: &[String]) -> Result<Option<RustCompile>, Uncacheable> {
    let mut c = RustCompile {
        crate_name: String::new(),
        crate_types: Vec::new(),
        input: String::new(),
        emits: Vec::new(),
        out_dir: None,
        extra_filename: String::new(),
        externs: Vec::new(),
        search_paths: Vec::new(),
        link_libs: Vec::new(),
        target: None,
        test: false,
        incremental: None,
        split_debuginfo: SplitDebuginfo::Off,
        linker: None,
        link_args: Vec::new(),
        target_cpu: None,
        key_args: Vec::new(),
    };
    let query = |a: &String| {
        matches!(
            a.as_str(),
            "-V" | "--version" | "-vV" | "-Vv" | "-h" | "--help" | "--print" | "--explain"
        ) || a.starts_with("--print=")
            || a.starts_with("--explain=")
    };
    if args.iter().any(query) {
        return Ok(None);
    }
    let mut inputs: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if PLAIN_FLAGS.contains(&arg) {
            c.key_args.push(arg.to_string());
            continue;
        }
        if arg == "--test" {
            c.test = true;
            c.key_args.push(arg.to_string());
            continue;
        }
        // `-` is the source read from standard input (the wrapper passes
        // it on, and the key has its digest).
        if !arg.starts_with('-') || arg == "-" {
            inputs.push(arg);
            continue;
        }
        let Some((flag, inline)) = split_flag(arg) else {
            return Err(Uncacheable::new("unknown flag", arg));
        };
        let value = match inline {
            Some(v) => v.to_string(),
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| Uncacheable::new("missing flag value", flag))?;
                i += 1;
                v.clone()
            }
        };
        match flag {
            "--crate-name" => {
                c.crate_name = value.clone();
                push_pair(&mut c.key_args, flag, &value);
            }
            "--crate-type" => {
                for t in value.split(',') {
                    let Some(t) = CrateType::parse(t) else {
                        return Err(Uncacheable::new(format!("crate-type {t}"), value.clone()));
                    };
                    c.crate_types.push(t);
                }
                push_pair(&mut c.key_args, flag, &value);
            }
            "--emit" => {
                let mut kinds = Vec::new();
                for e in value.split(',') {
                    let (kind, path) = match e.split_once('=') {
                        Some((k, p)) => (k, Some(p.to_string())),
                        None => (e, None),
                    };
                    let Some(emit) = EmitKind::parse(kind) else {
                        return Err(Uncacheable::new(format!("emit {kind}"), value.clone()));
                    };
                    kinds.push(kind);
                    c.emits.push(Emit { kind: emit, path });
                }
                push_pair(&mut c.key_args, flag, &kinds.join(","));
            }
            "--out-dir" => c.out_dir = Some(value),
            "-o" => return Err(Uncacheable::new("-o", value)),
            "--extern" => {
                let (spec, path) = match value.split_once('=') {
                    Some((s, p)) => (s.to_string(), Some(p.to_string())),
                    None => (value.clone(), None),
                };
                let n = c.externs.len();
                let shown = match path {
                    Some(_) => format!("{spec}={{extern:{n}}}"),
                    None => spec.clone(),
                };
                push_pair(&mut c.key_args, flag, &shown);
                c.externs.push(Extern { spec, path });
            }
            "-L" => {
                let (kind, path) = match value.split_once('=') {
                    Some((k, p))
                        if matches!(k, "dependency" | "crate" | "native" | "framework" | "all") =>
                    {
                        (k.to_string(), p.to_string())
                    }
                    _ => ("all".to_string(), value.clone()),
                };
                c.search_paths.push((kind, path));
                push_pair(&mut c.key_args, flag, &value);
            }
            "-l" => {
                c.link_libs.push(parse_link_lib(&value));
                push_pair(&mut c.key_args, flag, &value);
            }
            "-C" | "--codegen" => {
                let (name, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                let name = name.replace('_', "-");
                if UNCACHEABLE_CODEGEN.contains(&name.as_str()) {
                    return Err(Uncacheable::new(format!("-C {name}"), value.clone()));
                }
                // `packed` writes one `.dwp` beside a linked output (an
                // optional output: only with debug info); `unpacked` leaves
                // one `.dwo` per codegen unit in the output directory,
                // named after the crate (see `dwo_files`). The last one
                // given counts, as in rustc.
                if name == "split-debuginfo" {
                    c.split_debuginfo = match v {
                        "off" => SplitDebuginfo::Off,
                        "packed" => SplitDebuginfo::Packed,
                        "unpacked" => SplitDebuginfo::Unpacked,
                        _ => return Err(Uncacheable::new("-C split-debuginfo", value.clone())),
                    };
                }
                if name == "incremental" {
                    // Incremental compiles partition code differently, so
                    // the key says "incremental"; where rustc keeps its
                    // session files is not an input (a hit leaves them
                    // alone, and rustc checks them on the next compile).
                    c.incremental = Some(v.to_string());
                    c.key_args.push("-C incremental".into());
                    continue;
                }
                match name.as_str() {
                    "extra-filename" => c.extra_filename = v.to_string(),
                    "linker" => c.linker = Some(v.to_string()),
                    "link-arg" => c.link_args.push(v.to_string()),
                    "link-args" => c.link_args.extend(v.split_whitespace().map(str::to_string)),
                    "target-cpu" => c.target_cpu = Some(v.to_string()),
                    _ => {}
                }
                push_pair(&mut c.key_args, "-C", &value);
            }
            "--sysroot" => return Err(Uncacheable::new("--sysroot", value)),
            "--target" => {
                if value.ends_with(".json") {
                    return Err(Uncacheable::new("custom target file", value));
                }
                c.target = Some(value.clone());
                push_pair(&mut c.key_args, flag, &value);
            }
            _ => push_pair(&mut c.key_args, flag, &value),
        }
    }
    match inputs.as_slice() {
        [] => return Err(Uncacheable::new("no input file", "")),
        [one] => c.input = one.to_string(),
        _ => return Err(Uncacheable::new("several input files", inputs.join(" "))),
    }
    c.key_args.push(format!("input={}", c.input));
    if c.crate_name.is_empty() {
        return Err(Uncacheable::new("no --crate-name", ""));
    }
    if c.crate_types.is_empty() {
        // rustc's default, and what `--test` builds.
        c.crate_types.push(CrateType::Bin);
    }
    if c.emits.is_empty() {
        return Err(Uncacheable::new("no --emit", ""));
    }
    // Incremental and unpacked: the `.dwo` files are in the session
    // directory, which a hit leaves alone.
    if c.split_debuginfo == SplitDebuginfo::Unpacked && c.incremental.is_some() {
        return Err(Uncacheable::new(
            "-C split-debuginfo=unpacked with -C incremental",
            "",
        ));
    }
    Ok(Some(c))
}

fn push_pair(key_args: &mut Vec<String>, flag: &str, value: &str) {
    key_args.push(format!("{flag}={value}"));
}

/// Parses `-l [KIND[:MODIFIERS]=]NAME[:RENAME]`.
fn parse_link_lib(value: &str) -> LinkLib {
    let (kind_part, name_part) = match value.split_once('=') {
        Some((k, n)) => (Some(k), n),
        None => (None, value),
    };
    let (kind, modifiers) = match kind_part {
        Some(k) => match k.split_once(':') {
            Some((k, m)) => (Some(k.to_string()), m),
            None => (Some(k.to_string()), ""),
        },
        None => (None, ""),
    };
    let name = name_part.split(':').next().unwrap_or(name_part).to_string();
    LinkLib {
        kind,
        name,
        verbatim: modifiers.split(',').any(|m| m == "+verbatim"),
    }
}

impl RustCompile {
    /// Whether the source is read from standard input (`-`).
    pub fn reads_stdin(&self) -> bool {
        self.input == "-"
    }

    /// The random part of an autocfg probe's crate name, when this compile
    /// is one: since autocfg 1.2 a probe is `rustc --crate-name
    /// autocfg_<16 hex digits>_<N> --crate-type=lib --emit=llvm-ir -`, the
    /// hex digits drawn at random by each build script run, and autocfg
    /// deletes the `.ll` file unread once the probe succeeded. What the
    /// build script sees of a probe is its exit code (and messages), which
    /// the random name does not change; the `.ll` does depend on it (the
    /// crate hash is in every symbol), so a hit replays the outcome and
    /// writes no `.ll` (see the daemon's `cache/rust.rs`).
    pub fn autocfg_probe(&self) -> Option<&str> {
        let rest = self.crate_name.strip_prefix("autocfg_")?;
        let (uuid, n) = rest.split_once('_')?;
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let only_ir =
            matches!(&self.emits[..], [e] if e.kind == EmitKind::LlvmIr && e.path.is_none());
        (self.reads_stdin()
            && uuid.len() == 16
            && hex(uuid)
            && digits(n)
            && only_ir
            && self.crate_types == [CrateType::Lib]
            && !self.test)
            .then_some(uuid)
    }

    /// Whether the compile is for the CPU of the machine it runs on
    /// (`-C target-cpu=native`, the last `target-cpu` given): its key holds
    /// what `native` resolves to (see [`crate::native`]).
    pub fn native_cpu(&self) -> bool {
        self.target_cpu.as_deref() == Some("native")
    }

    /// Whether the compile writes dep-info itself (else the cache asks
    /// for a private one on a miss).
    pub fn emits_depinfo(&self) -> bool {
        self.emits.iter().any(|e| e.kind == EmitKind::DepInfo)
    }

    /// Whether the system linker writes an output (binaries, tests,
    /// proc-macros, dylibs, cdylibs).
    /// (`cargo check` of a binary emits metadata only: nothing is linked.)
    pub fn is_linked(&self) -> bool {
        let links = self.emits.iter().any(|e| e.kind == EmitKind::Link);
        links && (self.test || self.crate_types.iter().any(|t| t.is_linked()))
    }

    /// The `.dwo` files of `-C split-debuginfo=unpacked`, one per codegen
    /// unit, whose names only rustc knows.
    pub fn dwo_files(&self, cwd: &Path) -> Option<OutputFamily> {
        (self.split_debuginfo == SplitDebuginfo::Unpacked).then(|| OutputFamily {
            dir: match &self.out_dir {
                Some(d) => cwd.join(d),
                None => cwd.to_path_buf(),
            },
            name_prefix: format!("{}{}.", self.crate_name, self.extra_filename),
            name_suffix: ".dwo",
        })
    }

    /// The files this compile writes, from the arguments alone.
    pub fn outputs(&self, cwd: &Path) -> Vec<Output> {
        let out_dir = match &self.out_dir {
            Some(d) => cwd.join(d),
            None => cwd.to_path_buf(),
        };
        let stem = format!("{}{}", self.crate_name, self.extra_filename);
        let mut outputs = Vec::new();
        for emit in &self.emits {
            let mut push = |role: Role, default_name: String| {
                let path = match &emit.path {
                    Some(p) => cwd.join(p),
                    None => out_dir.join(default_name),
                };
                if !outputs.iter().any(|o: &Output| o.path == path) {
                    outputs.push(Output {
                        role,
                        path,
                        optional: false,
                    });
                }
            };
            match emit.kind {
                EmitKind::DepInfo => push(Role::DepInfo, format!("{stem}.d")),
                EmitKind::LlvmIr => push(Role::LlvmIr, format!("{stem}.ll")),
                EmitKind::Metadata => push(Role::Metadata, format!("lib{stem}.rmeta")),
                EmitKind::Link => {
                    for &t in &self.crate_types {
                        match t {
                            CrateType::Staticlib => push(Role::Staticlib, format!("lib{stem}.a")),
                            CrateType::Bin => push(Role::Linked(t), stem.clone()),
                            CrateType::ProcMacro | CrateType::Dylib | CrateType::Cdylib => {
                                push(Role::Linked(t), format!("lib{stem}.so"))
                            }
                            CrateType::Lib | CrateType::Rlib => {
                                push(Role::Rlib, format!("lib{stem}.rlib"))
                            }
                        }
                    }
                }
            }
        }
        if self.split_debuginfo == SplitDebuginfo::Packed {
            let mut dwp = Vec::new();
            for o in &outputs {
                let Role::Linked(t) = o.role else { continue };
                let path = if t == CrateType::Bin {
                    out_dir.join(format!("{stem}.dwp"))
                } else {
                    PathBuf::from(format!("{}.dwp", o.path.display()))
                };
                dwp.push(Output {
                    role: Role::Dwp(t),
                    path,
                    optional: true,
                });
            }
            outputs.extend(dwp);
        }
        outputs
    }
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
