//! Which C compiles may run on the engine, and their arguments and
//! locale there (see the table in `c.rs`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use cachepot_compiler::c::{CCompile, Family, Language};
use cachepot_compiler::key::env_value;

use super::action::root_one;
use super::KeptLocal;

/// Variables that add directories the compiler searches, change where it
/// finds its programs or add options: the worker would read its own.
const COMPILER_VARIABLES: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "OBJCPLUS_INCLUDE_PATH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "CCC_OVERRIDE_OPTIONS",
];

/// Options whose value names a file or directory: rooted when absolute.
/// The value follows, or is attached for the ones in [`ATTACHED`].
const PATH_OPTIONS: &[&str] = &[
    "-o",
    "-I",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-include",
    "-imacros",
    "-MF",
    "-L",
];
const ATTACHED: &[&str] = &[
    "-isystem",
    "-iquote",
    "-idirafter",
    "-include",
    "-imacros",
    "-I",
    "-MF",
    "-L",
    "-o",
];

/// Options whose value is text, passed as it is: macro definitions and
/// the dependency file's target name.
const TEXT_OPTIONS: &[&str] = &["-D", "-U", "-MT", "-MQ"];

/// Whether a parsed gcc or clang compile may run on the engine.
pub(in crate::cache) fn kept_local(
    c: &CCompile,
    family: Family,
    args: &[OsString],
    cwd: &Path,
    env: &[(OsString, OsString)],
) -> Option<KeptLocal> {
    let reason = if !matches!(c.language, Language::C | Language::Cxx) {
        KeptLocal::NotCOrCxx
    } else if !c.native_args.is_empty() {
        KeptLocal::NativeCpu
    } else if c.coverage || c.profile_generate || c.split_dwarf || !c.extra_inputs.is_empty() {
        KeptLocal::SideFiles
    } else if args.iter().any(|a| a.to_str().is_none()) {
        KeptLocal::NotUtf8
    } else if family == Family::Clang
        && args
            .iter()
            .any(|a| a == "-fno-integrated-as" || a == "-no-integrated-as")
    {
        KeptLocal::ExternalAssembler
    } else if utf8(args)
        .iter()
        .any(|a| a.contains("__has_include") || a.contains("__has_embed"))
    {
        KeptLocal::ProbeInArguments
    } else if worker_locale(env).is_none() {
        KeptLocal::Locale
    } else if c.debug && linked_cwd(cwd, env) {
        KeptLocal::LinkedCwd
    } else if !c.debug_prefix_maps.is_empty()
        || c.compilation_dir_set
        || COMPILER_VARIABLES
            .iter()
            .any(|v| env_value(env, v).is_some_and(|x| !x.is_empty()))
        || root_args(&utf8(args), &c.input).is_none()
    {
        KeptLocal::PathOptions
    } else {
        return None;
    };
    Some(reason)
}

/// The locale the worker's compiler runs in, giving the messages and
/// source character set it gives here: `C` where this machine's is C or
/// unset, `C.UTF-8` for English in UTF-8; `None` for any other (the
/// worker may lack its catalogs: the compile stays here).
pub(super) fn worker_locale(env: &[(OsString, OsString)]) -> Option<&'static str> {
    let get = |names: &[&str]| {
        names
            .iter()
            .filter_map(|n| env_value(env, n))
            .map(|v| v.to_string_lossy().into_owned())
            .find(|v| !v.is_empty())
    };
    let plain = |v: &Option<String>| v.as_deref().is_none_or(|v| v == "C" || v == "POSIX");
    let english_utf8 = |v: &Option<String>| {
        v.as_deref().is_some_and(|v| {
            let lower = v.to_ascii_lowercase();
            (lower.starts_with("en") || lower.starts_with("c."))
                && (lower.ends_with(".utf-8") || lower.ends_with(".utf8"))
        })
    };
    let messages = get(&["LC_ALL", "LC_MESSAGES", "LANG"]);
    let ctype = get(&["LC_ALL", "LC_CTYPE", "LANG"]);
    let language = get(&["LANGUAGE"]);
    if !language
        .as_deref()
        .is_none_or(|l| l.starts_with("en") || l == "C")
    {
        return None;
    }
    if plain(&messages) && plain(&ctype) {
        Some("C")
    } else if (plain(&messages) || english_utf8(&messages)) && english_utf8(&ctype) {
        Some("C.UTF-8")
    } else {
        None
    }
}

/// Whether `$PWD` names the working directory through a link: gcc and
/// clang then write `$PWD` into the debug information, which the worker
/// cannot spell (its input root has no links).
fn linked_cwd(cwd: &Path, env: &[(OsString, OsString)]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(pwd) = env_value(env, "PWD").map(PathBuf::from) else {
        return false;
    };
    if pwd == cwd {
        return false;
    }
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    id(&pwd).is_some() && id(&pwd) == id(cwd)
}

fn utf8(args: &[OsString]) -> Vec<&str> {
    args.iter().filter_map(|a| a.to_str()).collect()
}

/// The arguments with [`MARK`] in front of the absolute paths gcc reads
/// or writes; `None` when another argument names a path (a prefix map, a
/// plugin, `--sysroot`): the compile stays here.
pub(super) fn root_args(args: &[&str], input: &str) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(args.len() + 4);
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if a == input {
            out.push(root_one(a));
        } else if PATH_OPTIONS.contains(&a) || TEXT_OPTIONS.contains(&a) {
            out.push(a.to_string());
            if let Some(v) = args.get(i) {
                out.push(if PATH_OPTIONS.contains(&a) {
                    root_one(v)
                } else {
                    v.to_string()
                });
                i += 1;
            }
        } else if let Some((f, v)) = ATTACHED
            .iter()
            .find_map(|f| a.strip_prefix(f).filter(|v| !v.is_empty()).map(|v| (f, v)))
        {
            out.push(format!("{f}{}", root_one(v)));
        } else if TEXT_OPTIONS.iter().any(|f| a.starts_with(f)) || a.starts_with("-Wl,") {
            out.push(a.to_string());
        } else if a.contains('/') || a.starts_with('@') {
            // Any other path: a prefix map, `--sysroot`, `-isysroot`, a
            // plugin, `-Wp,`/`-Xclang` values, an `@file`.
            return None;
        } else {
            out.push(a.to_string());
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::action::MARK;
    use super::*;

    #[test]
    fn paths_gcc_reads_get_the_mark_and_text_stays() {
        let m = MARK;
        let args = [
            "-O2",
            "-I",
            "/src/inc",
            "-Iinc",
            "-isystem/usr/x",
            "-DDIR=\"/etc\"",
            "-D",
            "X=/y",
            "-MT",
            "/t/a.o",
            "-o",
            "/t/a.o",
            "-c",
            "/src/a.c",
            "-Wl,-rpath=/opt",
        ];
        let rooted = root_args(&args, "/src/a.c").unwrap();
        let expected = [
            "-O2".to_string(),
            "-I".into(),
            format!("{m}/src/inc"),
            "-Iinc".into(),
            format!("-isystem{m}/usr/x"),
            "-DDIR=\"/etc\"".into(),
            "-D".into(),
            "X=/y".into(),
            "-MT".into(),
            "/t/a.o".into(),
            "-o".into(),
            format!("{m}/t/a.o"),
            "-c".into(),
            format!("{m}/src/a.c"),
            "-Wl,-rpath=/opt".into(),
        ];
        assert_eq!(rooted, expected);
        for unmapped in [
            "-ffile-prefix-map=/a=/b",
            "--sysroot=/s",
            "-fplugin=/p.so",
            "-Wa,--debug-prefix-map,/a=/b",
            "-isysroot/s",
            "-iprefix/p",
            "-Wp,-isystem/x",
            "@args.txt",
        ] {
            assert!(root_args(&[unmapped, "a.c"], "a.c").is_none(), "{unmapped}");
        }
    }
}
