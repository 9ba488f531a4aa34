#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::path::Path;

use super::*;
use crate::c::{parse, CParsed};
use crate::digest::PlainDigester;
use crate::native::NativeCpu;

fn compile(args: &str, cwd: &Path) -> CCompile {
    let words: Vec<OsString> = args.split_whitespace().map(OsString::from).collect();
    match parse(&words, cwd) {
        CParsed::Cacheable(c) => *c,
        CParsed::Uncacheable(u) => panic!("{args}: {u:?}"),
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn key(args: &str, cwd: &str, vars: &[(&str, &str)]) -> Result<Digest, Uncacheable> {
    key_full(PathPolicy::Share, args, cwd, vars, None).map(|k| k.digest)
}

fn key_in(
    policy: PathPolicy,
    args: &str,
    cwd: &str,
    vars: &[(&str, &str)],
) -> Result<Digest, Uncacheable> {
    key_full(policy, args, cwd, vars, None).map(|k| k.digest)
}

fn key_native(
    args: &str,
    cwd: &str,
    vars: &[(&str, &str)],
    native_cpu: Option<&NativeCpu>,
) -> Result<Key, Uncacheable> {
    key_full(PathPolicy::Share, args, cwd, vars, native_cpu)
}

fn key_full(
    policy: PathPolicy,
    args: &str,
    cwd: &str,
    vars: &[(&str, &str)],
    native_cpu: Option<&NativeCpu>,
) -> Result<Key, Uncacheable> {
    let cwd = Path::new(cwd);
    let c = compile(args, cwd);
    let env = env(vars);
    let bases = base_dirs(cwd, &env, &[]).with_policy(policy);
    let compiler = Digest::of(b"gcc");
    let ctx = CKeyContext {
        cwd,
        env: &env,
        compiler: &compiler,
        invoked_as: "gcc",
        bases: &bases,
        digester: &PlainDigester,
        native_cpu,
    };
    key_a(&c, &ctx)
}

#[test]
fn march_native_is_keyed_by_its_expansion() {
    let skylake = NativeCpu {
        cpu: "skylake".into(),
        features: vec![
            "-march=skylake".into(),
            "-mavx2".into(),
            "-mno-avx512f".into(),
        ],
    };
    let avx512 = NativeCpu {
        cpu: "skylake".into(),
        features: vec!["-march=skylake".into(), "-mavx2".into(), "-mavx512f".into()],
    };
    let args = "-O2 -march=native -c /w/a.c -o /w/a.o";
    let k = key_native(args, "/w", &[], Some(&skylake)).unwrap();
    assert_eq!(
        k.digest,
        key_native(args, "/w", &[], Some(&skylake.clone()))
            .unwrap()
            .digest
    );
    assert_ne!(
        k.digest,
        key_native(args, "/w", &[], Some(&avx512)).unwrap().digest
    );
    let shown = |k: &Key, name: &str| {
        k.inputs
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.value.clone())
    };
    assert_eq!(shown(&k, "native-cpu").as_deref(), Some("skylake"));
    assert_eq!(
        shown(&k, "native-features").as_deref(),
        Some("-march=skylake -mavx2 -mno-avx512f")
    );
    // Spelled out, the same CPU is another key (and asks nothing).
    let explicit = key_native("-O2 -march=skylake -c /w/a.c -o /w/a.o", "/w", &[], None).unwrap();
    assert_ne!(explicit.digest, k.digest);
    assert_eq!(shown(&explicit, "native-cpu"), None);
    let err = key_native(args, "/w", &[], None).unwrap_err();
    assert_eq!(err.reason, "native CPU unknown");
}

#[test]
fn two_checkouts_share_part_a() {
    let a = key(
        "-O2 -I/w1/include -c /w1/src/a.c -o /w1/out/a.o",
        "/w1",
        &[],
    )
    .unwrap();
    let b = key(
        "-O2 -I/w2/include -c /w2/src/a.c -o /w2/out/a.o",
        "/w2",
        &[],
    )
    .unwrap();
    assert_eq!(a, b);
    let other_dir = key("-O2 -I/x/include -c /w2/src/a.c -o /w2/out/a.o", "/w2", &[]).unwrap();
    assert_ne!(
        a, other_dir,
        "an include directory outside the bases is exact"
    );
}

#[test]
fn defines_optimisation_and_buster_change_the_key() {
    let base = key("-O2 -DX=1 -c a.c", "/w", &[]).unwrap();
    assert_ne!(base, key("-O2 -DX=2 -c a.c", "/w", &[]).unwrap());
    assert_ne!(base, key("-O0 -DX=1 -c a.c", "/w", &[]).unwrap());
    assert_ne!(
        base,
        key(
            "-O2 -DX=1 -c a.c",
            "/w",
            &[("CACHEPOT_C_CUSTOM_CACHE_BUSTER", "1")]
        )
        .unwrap()
    );
    assert_ne!(
        base,
        key(
            "-O2 -DX=1 -c a.c",
            "/w",
            &[("SCCACHE_C_CUSTOM_CACHE_BUSTER", "1")]
        )
        .unwrap()
    );
    assert_ne!(
        base,
        key("-O2 -DX=1 -c a.c", "/w", &[("CPATH", "/inc")]).unwrap()
    );
    // Variables the compiler does not read change nothing.
    assert_eq!(
        base,
        key("-O2 -DX=1 -c a.c", "/w", &[("CARGO_PKG_NAME", "x")]).unwrap()
    );
    // Where the object goes does not matter.
    assert_eq!(base, key("-O2 -DX=1 -c a.c -o b/a.o", "/w", &[]).unwrap());
}

#[test]
fn debug_info_shares_across_checkouts_unless_paths_are_exact() {
    let plain_a = key("-c a.c", "/w1", &[]).unwrap();
    let plain_b = key("-c a.c", "/w2", &[]).unwrap();
    assert_eq!(plain_a, plain_b);
    // Share (the default): DW_AT_comp_dir comes from the storing build.
    let g_a = key("-g -c a.c", "/w1", &[]).unwrap();
    let g_b = key("-g -c a.c", "/w2", &[]).unwrap();
    assert_eq!(g_a, g_b);
    // Exact: the working directory and every base directory are keyed.
    let exact = |args: &str, cwd: &str| key_in(PathPolicy::Exact, args, cwd, &[]).unwrap();
    assert_ne!(exact("-g -c a.c", "/w1"), exact("-g -c a.c", "/w2"));
    assert_ne!(exact("-c a.c", "/w1"), exact("-c a.c", "/w2"));
    assert_eq!(exact("-g -c a.c", "/w1"), exact("-g -c a.c", "/w1"));
    assert_ne!(exact("-g -c a.c", "/w1"), g_a);
    // Coverage notes embed the directory and the object path: keyed in
    // both policies.
    assert_ne!(
        key("--coverage -c a.c", "/w1", &[]).unwrap(),
        key("--coverage -c a.c", "/w2", &[]).unwrap()
    );
}

#[test]
fn dependency_output_through_the_environment_is_refused() {
    let e = key("-c a.c", "/w", &[("DEPENDENCIES_OUTPUT", "a.d")]).unwrap_err();
    assert!(e.reason.contains("environment"), "{e:?}");
}

#[test]
fn profiles_are_keyed_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("p.profdata"), b"one").unwrap();
    let args = "-fprofile-instr-use=p.profdata -c a.c";
    let one = key(args, cwd, &[]).unwrap();
    std::fs::write(dir.path().join("p.profdata"), b"two").unwrap();
    assert_ne!(one, key(args, cwd, &[]).unwrap());
    std::fs::remove_file(dir.path().join("p.profdata")).unwrap();
    assert!(key(args, cwd, &[]).is_err());
}

#[test]
fn a_precompiled_header_beside_a_forced_include_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_str().unwrap();
    assert!(key("-include pch.h -c a.c", cwd, &[]).is_ok());
    std::fs::write(dir.path().join("pch.h.gch"), b"x").unwrap();
    let e = key("-include pch.h -c a.c", cwd, &[]).unwrap_err();
    assert_eq!(e.reason, "precompiled header use");
}

#[test]
fn time_macros_are_found() {
    assert!(has_time_macros(b"const char *d = __DATE__;"));
    assert!(has_time_macros(b"x __TIME__"));
    assert!(has_time_macros(b"__TIMESTAMP__"));
    assert!(!has_time_macros(
        b"int __attribute__((unused)) x; // DATE TIME"
    ));
    assert!(!has_time_macros(b"__DATE_"));
}

#[test]
fn preprocessed_text_is_base_relative() {
    let env = env(&[]);
    let a = base_dirs(Path::new("/w1"), &env, &[]);
    let b = base_dirs(Path::new("/w2"), &env, &[]);
    let ka = Digest::of(b"a");
    let one = preprocessed_key(&ka, b"# 1 \"/w1/src/a.c\"\nint x;\n", &a);
    // A path in code is not a line marker: kept exactly.
    let code_a = preprocessed_key(&ka, b"const char *f = \"/w1/src/a.c\";\n", &a);
    let code_b = preprocessed_key(&ka, b"const char *f = \"/w2/src/a.c\";\n", &b);
    assert_ne!(code_a.digest, code_b.digest);
    let two = preprocessed_key(&ka, b"# 1 \"/w2/src/a.c\"\nint x;\n", &b);
    assert_eq!(one.digest, two.digest);
    let three = preprocessed_key(&ka, b"# 1 \"/w2/src/a.c\"\nint y;\n", &b);
    assert_ne!(one.digest, three.digest);
}

#[test]
fn a_dependency_file_without_a_target_option_keys_the_object_path() {
    let one = key("-MD -c a.c -o /tmp/1/a.o", "/w", &[]).unwrap();
    assert_ne!(one, key("-MD -c a.c -o /tmp/2/a.o", "/w", &[]).unwrap());
    // Under a base directory it is base-relative.
    assert_eq!(
        key("-MD -c a.c -o /w1/out/a.o", "/w1", &[]).unwrap(),
        key("-MD -c a.c -o /w2/out/a.o", "/w2", &[]).unwrap()
    );
    // With -MT the target is the option's value, already in the key.
    assert_eq!(
        key("-MD -MT x -c a.c -o /tmp/1/a.o", "/w", &[]).unwrap(),
        key("-MD -MT x -c a.c -o /tmp/2/a.o", "/w", &[]).unwrap()
    );
}

#[test]
fn the_driver_name_selects_a_mode() {
    assert_eq!(driver_mode("/usr/bin/clang++-14"), "c++");
    assert_eq!(driver_mode("g++"), "c++");
    assert_eq!(driver_mode("x86_64-linux-gnu-gcc-12"), "c");
    assert_eq!(driver_mode("cc"), "c");
}

#[test]
fn only_path_options_are_base_relative() {
    // A -D value is embedded as written: two checkouts differ.
    assert_ne!(
        key("-DDIR=\"/w1/data\" -c a.c", "/w1", &[]).unwrap(),
        key("-DDIR=\"/w2/data\" -c a.c", "/w2", &[]).unwrap()
    );
    assert_eq!(
        key("-isystem /w1/sys -include /w1/cfg.h -c a.c", "/w1", &[]).unwrap(),
        key("-isystem /w2/sys -include /w2/cfg.h -c a.c", "/w2", &[]).unwrap()
    );
}

#[test]
fn a_time_macro_in_an_argument_is_found() {
    let c = compile("-DBUILT=__DATE__ -c a.c", Path::new("/w"));
    assert!(args_use_time_macros(&c));
    assert!(!args_use_time_macros(&compile(
        "-DX=1 -c a.c",
        Path::new("/w")
    )));
}

#[test]
fn pwd_names_the_directory_only_when_it_is_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let cwd = real.to_str().unwrap();
    let exact = |vars: &[(&str, &str)]| key_in(PathPolicy::Exact, "-g -c a.c", cwd, vars).unwrap();
    let through_link = exact(&[("PWD", link.to_str().unwrap())]);
    let plain = exact(&[]);
    assert_ne!(through_link, plain, "gcc writes $PWD: it is keyed");
    // A stale PWD (another directory) is not what gcc writes.
    let stale = exact(&[("PWD", "/")]);
    assert_eq!(stale, plain);
}

#[test]
fn profiling_code_keys_the_object_path_and_the_working_directory() {
    for flag in [
        "-fprofile-generate",
        "-fprofile-generate=prof",
        "-fprofile-arcs",
        "-fprofile-instr-generate",
    ] {
        let k = |out: &str, cwd: &str| key(&format!("{flag} -c a.c -o {out}"), cwd, &[]).unwrap();
        // The `.gcda` path gcc embeds follows the object and the directory.
        assert_ne!(k("/w1/out/a.o", "/w1"), k("/w2/out/a.o", "/w2"), "{flag}");
        assert_ne!(k("/w/out/a.o", "/w"), k("/w/out/a.o", "/w/sub"), "{flag}");
        assert_eq!(k("/w/out/a.o", "/w"), k("out/a.o", "/w"), "{flag}");
    }
}
