//! What `native` means on this machine: `-C target-cpu=native` for rustc,
//! `-march=native`, `-mtune=native` and `-mcpu=native` for gcc and clang.
//!
//! The word `native` names a different CPU on every machine, so it is
//! never keyed alone: the compiler is asked once what it resolves it to,
//! and the answer (the CPU and the features it enables) goes into the key.
//! Two machines whose compilers give the same answer share entries; an
//! AVX-512 machine and one without never do.
//!
//! | compiler | question | what is keyed |
//! |---|---|---|
//! | rustc | `rustc -C target-cpu=native [--target T] --print target-cpus --print cfg` | the CPU of the line `native - … (currently <cpu>).` and every `target_feature="…"` of the cfg (what `cfg(target_feature)` sees, also in `cargo check`) |
//! | gcc | `gcc <the native options> -E -v -x c /dev/null` | every `-m…` option and `--param` of the `cc1` line it prints: `-march=<cpu>`, each `-m<feature>`/`-mno-<feature>`, `-mtune=`, the cache sizes |
//! | clang | `clang <the native options> -### -c -x c /dev/null` | `-target-cpu`, `-tune-cpu` and every `-target-feature` of the `-cc1` line it prints |
//!
//! A question that fails or takes longer than [`PROBE_TIMEOUT`](crate::toolchain::PROBE_TIMEOUT) leaves
//! the compile uncached; the build goes on.

use std::ffi::OsString;
use std::path::Path;

use crate::c::Family;
use crate::key::KeyBuilder;
use crate::toolchain::{run_limited, ToolchainError, PROBE_TIMEOUT};

/// What `native` resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativeCpu {
    /// The CPU's name (`skylake`, `znver4`, `neoverse-n1`).
    pub cpu: String,
    /// The features and settings the compiler enables for it, as it
    /// reports them (`avx2`, `-mno-avx512f`, `+sse4.2`, …), in its order.
    pub features: Vec<String>,
}

impl NativeCpu {
    /// Adds the named key inputs `native-cpu` and `native-features`.
    pub fn add_to(&self, b: &mut KeyBuilder) {
        b.add("native-cpu", self.cpu.as_bytes());
        b.add("native-features", self.features.join(" ").as_bytes());
    }
}

fn unexpected(program: &Path, args: &[&str], output: &str) -> ToolchainError {
    ToolchainError::Unexpected {
        program: program.to_path_buf(),
        args: args.join(" "),
        output: output.chars().take(2000).collect(),
    }
}

/// Asks rustc what `-C target-cpu=native` is for `target` (the host when
/// `None`).
pub fn probe_rustc(
    rustc: &Path,
    target: Option<&str>,
    cwd: &Path,
    env: &[(OsString, OsString)],
) -> Result<NativeCpu, ToolchainError> {
    let mut args = vec!["-C", "target-cpu=native"];
    if let Some(t) = target {
        args.extend(["--target", t]);
    }
    args.extend(["--print", "target-cpus", "--print", "cfg"]);
    let (stdout, _) = run_limited(rustc, &args, cwd, env, PROBE_TIMEOUT)?;
    parse_rustc(&stdout).ok_or_else(|| unexpected(rustc, &args, &stdout))
}

/// Reads rustc's answer: `native - Select the CPU of the current host
/// (currently <cpu>).` among the target CPUs, and the cfg's features.
pub fn parse_rustc(text: &str) -> Option<NativeCpu> {
    let cpu = text.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix("native ")?;
        let (_, after) = rest.split_once("(currently ")?;
        let (cpu, _) = after.split_once(')')?;
        Some(cpu.trim().to_string())
    })?;
    let features: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("target_feature=\""))
        .filter_map(|f| f.strip_suffix('"'))
        .map(str::to_string)
        .collect();
    (!cpu.is_empty()).then_some(NativeCpu { cpu, features })
}

/// Asks gcc or clang what `native_args` (the compile's `-march=native`,
/// `-mtune=native`, `-mcpu=native`, and the options that choose its target)
/// expand to.
pub fn probe_c(
    compiler: &Path,
    family: Family,
    native_args: &[String],
    cwd: &Path,
    env: &[(OsString, OsString)],
) -> Result<NativeCpu, ToolchainError> {
    let mut args: Vec<&str> = native_args.iter().map(String::as_str).collect();
    match family {
        Family::Gcc => args.extend(["-E", "-v", "-x", "c", "/dev/null"]),
        Family::Clang => args.extend(["-###", "-c", "-x", "c", "/dev/null"]),
    }
    let (_, stderr) = run_limited(compiler, &args, cwd, env, PROBE_TIMEOUT)?;
    let parsed = match family {
        Family::Gcc => parse_gcc(&stderr),
        Family::Clang => parse_clang(&stderr),
    };
    parsed.ok_or_else(|| unexpected(compiler, &args, &stderr))
}

/// Reads the `cc1` line of `gcc -v`: its `-m…` options and `--param`s.
pub fn parse_gcc(stderr: &str) -> Option<NativeCpu> {
    let line = stderr.lines().find(|l| {
        l.split_whitespace()
            .next()
            .and_then(|p| Path::new(p).file_name())
            .is_some_and(|n| n == "cc1")
    })?;
    let mut features = Vec::new();
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "--param" {
            features.push(format!("--param={}", words.next()?));
        } else if w.starts_with("--param=") || (w.starts_with("-m") && w.len() > 2) {
            features.push(w.to_string());
        }
    }
    let value = |prefix: &str| {
        features
            .iter()
            .rev()
            .find_map(|f| f.strip_prefix(prefix))
            .map(str::to_string)
    };
    let cpu = value("-march=")
        .or_else(|| value("-mcpu="))
        .or_else(|| value("-mtune="))?;
    Some(NativeCpu { cpu, features })
}

/// Splits a line of `clang -###` into its double-quoted words.
fn quoted_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut w = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => w.extend(chars.next()),
                '"' => break,
                _ => w.push(c),
            }
        }
        words.push(w);
    }
    words
}

/// Reads the `-cc1` line of `clang -###`: `-target-cpu`, `-tune-cpu` and
/// every `-target-feature`.
pub fn parse_clang(stderr: &str) -> Option<NativeCpu> {
    let words = stderr
        .lines()
        .map(quoted_words)
        .find(|w| w.get(1).is_some_and(|a| a == "-cc1"))?;
    let mut cpu = None;
    let mut features = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-target-cpu" => cpu = it.next().cloned(),
            "-tune-cpu" => features.push(format!("tune={}", it.next()?)),
            "-target-feature" => features.push(it.next()?.clone()),
            _ => {}
        }
    }
    Some(NativeCpu {
        cpu: cpu?,
        features,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn host_env() -> Vec<(OsString, OsString)> {
        std::env::vars_os()
            .filter(|(k, _)| {
                k == "PATH" || k == "HOME" || k.to_string_lossy().starts_with("RUSTUP")
            })
            .collect()
    }

    #[test]
    fn rustc_answers_are_read() {
        let text = "Available CPUs for this target:\n    native                  - Select the CPU of the current host (currently znver4).\n    alderlake\n\ndebug_assertions\ntarget_arch=\"x86_64\"\ntarget_feature=\"avx2\"\ntarget_feature=\"avx512f\"\nunix\n";
        let n = parse_rustc(text).unwrap();
        assert_eq!(n.cpu, "znver4");
        assert_eq!(n.features, ["avx2", "avx512f"]);
        assert_eq!(
            parse_rustc("Available CPUs for this target:\n    native\n"),
            None
        );
    }

    #[test]
    fn gcc_answers_are_read() {
        let text = "Using built-in specs.\nCOLLECT_GCC=gcc\n /usr/lib/gcc/x86_64-linux-gnu/12/cc1 -E -quiet -v -imultiarch x86_64-linux-gnu /dev/null -march=skylake -mmmx -mno-avx512f --param l1-cache-size=32 --param l1-cache-line-size=64 -mtune=skylake -dumpbase null\nCOMPILER_PATH=/usr/lib\n";
        let n = parse_gcc(text).unwrap();
        assert_eq!(n.cpu, "skylake");
        assert_eq!(
            n.features,
            [
                "-march=skylake",
                "-mmmx",
                "-mno-avx512f",
                "--param=l1-cache-size=32",
                "--param=l1-cache-line-size=64",
                "-mtune=skylake"
            ]
        );
        assert_eq!(parse_gcc("COLLECT_GCC=gcc\n"), None);
    }

    #[test]
    fn clang_answers_are_read() {
        let text = "clang version 16.0.6\nTarget: x86_64-pc-linux-gnu\n (in-process)\n \"/usr/lib/llvm-16/bin/clang\" \"-cc1\" \"-triple\" \"x86_64-pc-linux-gnu\" \"-target-cpu\" \"znver3\" \"-target-feature\" \"+avx2\" \"-target-feature\" \"-avx512f\" \"-tune-cpu\" \"znver3\" \"-o\" \"/tmp/a \\\"b\\\".o\" \"-x\" \"c\" \"/dev/null\"\n";
        let n = parse_clang(text).unwrap();
        assert_eq!(n.cpu, "znver3");
        assert_eq!(n.features, ["+avx2", "-avx512f", "tune=znver3"]);
        assert_eq!(quoted_words(r#" "a \"b\"" "c""#), [r#"a "b""#, "c"]);
        assert_eq!(parse_clang("clang version 16\n"), None);
    }

    #[test]
    fn the_real_rustc_names_a_cpu_not_native() {
        let n = probe_rustc(Path::new("rustc"), None, Path::new("/"), &host_env()).unwrap();
        assert!(!n.cpu.is_empty() && n.cpu != "native", "{n:?}");
        // Every x86-64 CPU has SSE2; other hosts report features too.
        assert!(!n.features.is_empty(), "{n:?}");
        // The same machine gives the same answer.
        let again = probe_rustc(Path::new("rustc"), None, Path::new("/"), &host_env()).unwrap();
        assert_eq!(n, again);
    }

    #[test]
    fn the_real_gcc_expands_march_native() {
        let gcc = PathBuf::from("gcc");
        let args = vec!["-march=native".to_string()];
        let n = probe_c(&gcc, Family::Gcc, &args, Path::new("/"), &host_env()).unwrap();
        assert!(!n.cpu.is_empty() && n.cpu != "native", "{n:?}");
        assert!(n.features.iter().any(|f| f.starts_with("-mtune=")), "{n:?}");
        assert!(
            n.features.iter().any(|f| f.starts_with("--param=")),
            "{n:?}"
        );
        let tune = vec!["-mtune=native".to_string()];
        let t = probe_c(&gcc, Family::Gcc, &tune, Path::new("/"), &host_env()).unwrap();
        assert_ne!(n, t, "-mtune=native alone keeps the default -march");
    }

    #[test]
    fn the_real_clang_expands_march_native() {
        let clang = PathBuf::from("clang");
        let args = vec!["-march=native".to_string()];
        let n = probe_c(&clang, Family::Clang, &args, Path::new("/"), &host_env()).unwrap();
        assert!(!n.cpu.is_empty() && n.cpu != "native", "{n:?}");
        assert!(n.features.iter().any(|f| f.starts_with('+')), "{n:?}");
        let tune = vec!["-mtune=native".to_string()];
        let t = probe_c(&clang, Family::Clang, &tune, Path::new("/"), &host_env()).unwrap();
        assert_ne!(n, t, "-mtune=native alone keeps the default CPU");
    }

    #[test]
    fn a_compiler_that_cannot_answer_is_an_error() {
        // `true` prints nothing: no CPU, so no answer.
        let err = probe_c(
            Path::new("true"),
            Family::Gcc,
            &[],
            Path::new("/"),
            &host_env(),
        )
        .unwrap_err();
        assert!(matches!(err, ToolchainError::Unexpected { .. }), "{err}");
    }
}
