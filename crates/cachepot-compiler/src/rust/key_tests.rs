#![allow(clippy::unwrap_used)]

use super::*;
use crate::digest::PlainDigester;
use crate::manifest::{decode_list, encode_list, merge_lists, Manifest, Stored};
use crate::native::NativeCpu;
use crate::rust::args::{parse, Parsed};
use std::fs;

struct Checkout {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
}

/// A checkout with a target dir, a dependency rlib and a source file.
fn checkout(dep_content: &[u8]) -> Checkout {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("proj");
    let home = dir.path().join("cargo-home");
    fs::create_dir_all(root.join("target/debug/deps")).unwrap();
    fs::create_dir_all(root.join("src")).unwrap();
    fs::create_dir_all(&home).unwrap();
    fs::write(
        root.join("target/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55",
    )
    .unwrap();
    fs::write(root.join("target/debug/deps/libdep-1.rmeta"), dep_content).unwrap();
    fs::write(root.join("src/lib.rs"), "pub fn f() {}").unwrap();
    Checkout {
        _dir: dir,
        root,
        home,
    }
}

fn compile(co: &Checkout) -> (RustCompile, Vec<(OsString, OsString)>) {
    let line = format!(
        "--crate-name x --edition=2021 src/lib.rs --crate-type lib --emit=dep-info,metadata,link -C metadata=abc --out-dir {r}/target/debug/deps -L dependency={r}/target/debug/deps --extern dep={r}/target/debug/deps/libdep-1.rmeta",
        r = co.root.display()
    );
    let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
    let Parsed::Cacheable(c) = parse(&args, &co.root) else {
        panic!()
    };
    let env = vec![
        (
            OsString::from("CARGO_HOME"),
            co.home.clone().into_os_string(),
        ),
        (
            OsString::from("CARGO_MANIFEST_DIR"),
            co.root.clone().into_os_string(),
        ),
        (OsString::from("CARGO_PKG_NAME"), OsString::from("x")),
        (
            OsString::from("CARGO_MAKEFLAGS"),
            OsString::from("-j --jobserver-fds=8,9"),
        ),
        (OsString::from("PATH"), OsString::from("/usr/bin")),
    ];
    (*c, env)
}

fn key_of(co: &Checkout, c: &RustCompile, env: &[(OsString, OsString)]) -> Key {
    key_with(co, c, env, None, &[]).unwrap()
}

/// Part A with what `native` is and the configured keyed variables.
fn key_with(
    co: &Checkout,
    c: &RustCompile,
    env: &[(OsString, OsString)],
    native_cpu: Option<&NativeCpu>,
    key_env: &[String],
) -> Result<Key, Uncacheable> {
    let bases = base_dirs(c, &co.root, env, &[]);
    let tc = Digest::of(b"toolchain");
    key_a(
        c,
        &KeyContext {
            cwd: &co.root,
            env,
            toolchain: &tc,
            bases: &bases,
            digester: &PlainDigester,
            clippy: false,
            linker: None,
            stdin: None,
            native_cpu,
            key_env,
        },
    )
}

/// The fixture's compile with more arguments.
fn compile_with(co: &Checkout, extra: &[&str]) -> RustCompile {
    let mut args: Vec<OsString> = c_args(co);
    args.extend(extra.iter().map(OsString::from));
    let Parsed::Cacheable(c) = parse(&args, &co.root) else {
        panic!("{extra:?}")
    };
    *c
}

fn c_args(co: &Checkout) -> Vec<OsString> {
    format!(
        "--crate-name x --edition=2021 src/lib.rs --crate-type lib --emit=dep-info,metadata,link -C metadata=abc --out-dir {r}/target/debug/deps -L dependency={r}/target/debug/deps --extern dep={r}/target/debug/deps/libdep-1.rmeta",
        r = co.root.display()
    )
    .split(' ')
    .map(OsString::from)
    .collect()
}

fn input<'k>(k: &'k Key, name: &str) -> Option<&'k str> {
    k.inputs
        .iter()
        .find(|i| i.name == name)
        .map(|i| i.value.as_str())
}

fn cpu(name: &str, features: &[&str]) -> NativeCpu {
    NativeCpu {
        cpu: name.into(),
        features: features.iter().map(|f| f.to_string()).collect(),
    }
}

#[test]
fn target_cpu_native_is_keyed_by_what_it_resolves_to() {
    let co = checkout(b"dep");
    let (_, env) = compile(&co);
    let native = compile_with(&co, &["-C", "target-cpu=native"]);
    assert!(native.native_cpu());
    let avx512 = cpu("rocketlake", &["avx2", "avx512f", "sse2"]);
    let no_avx512 = cpu("rocketlake", &["avx2", "sse2"]);
    let k = key_with(&co, &native, &env, Some(&avx512), &[]).unwrap();
    // The same machine, asked again: one key.
    let again = cpu("rocketlake", &["avx2", "avx512f", "sse2"]);
    assert_eq!(
        k.digest,
        key_with(&co, &native, &env, Some(&again), &[])
            .unwrap()
            .digest
    );
    // Another feature set (a runner without AVX-512): another key.
    assert_ne!(
        k.digest,
        key_with(&co, &native, &env, Some(&no_avx512), &[])
            .unwrap()
            .digest
    );
    // Another CPU with the same features: another key too (tuning).
    assert_ne!(
        k.digest,
        key_with(
            &co,
            &native,
            &env,
            Some(&cpu("skylake-avx512", &["avx2", "avx512f", "sse2"])),
            &[]
        )
        .unwrap()
        .digest
    );
    // The key names the resolved CPU and features, not the word alone.
    assert_eq!(input(&k, "native-cpu"), Some("rocketlake"));
    assert_eq!(input(&k, "native-features"), Some("avx2 avx512f sse2"));
    // An explicit CPU is another key, and asks nothing.
    let explicit = compile_with(&co, &["-C", "target-cpu=rocketlake"]);
    assert!(!explicit.native_cpu());
    let e = key_with(&co, &explicit, &env, None, &[]).unwrap();
    assert_ne!(e.digest, k.digest);
    assert_eq!(input(&e, "native-cpu"), None);
    // Unresolved, a native compile is not cached.
    let err = key_with(&co, &native, &env, None, &[]).unwrap_err();
    assert_eq!(err.reason, "native CPU unknown");
}

#[test]
fn every_spelling_of_target_cpu_native_counts_and_the_last_one_wins() {
    let co = checkout(b"dep");
    for extra in [
        &["-Ctarget-cpu=native"][..],
        &["--codegen", "target-cpu=native"],
        &["--codegen=target_cpu=native"],
        &["-C", "target-cpu=x86-64", "-C", "target-cpu=native"],
    ] {
        assert!(compile_with(&co, extra).native_cpu(), "{extra:?}");
    }
    let later = compile_with(&co, &["-C", "target-cpu=native", "-Ctarget-cpu=x86-64"]);
    assert!(!later.native_cpu());
    assert!(!compile_with(&co, &["-C", "target-feature=+avx2"]).native_cpu());
}

#[test]
fn configured_variables_are_keyed_set_or_unset() {
    let co = checkout(b"dep");
    let (c, env) = compile(&co);
    let names = vec!["FLAVOR".to_string()];
    let with = |value: Option<&str>| {
        let mut env = env.clone();
        if let Some(v) = value {
            env.push(("FLAVOR".into(), v.into()));
        }
        key_with(&co, &c, &env, None, &names).unwrap()
    };
    let vanilla = with(Some("vanilla"));
    assert_eq!(input(&vanilla, "key-env:FLAVOR"), Some("=vanilla"));
    assert_eq!(vanilla.digest, with(Some("vanilla")).digest);
    assert_ne!(vanilla.digest, with(Some("mango")).digest);
    let unset = with(None);
    assert_eq!(input(&unset, "key-env:FLAVOR"), Some("(unset)"));
    assert_ne!(unset.digest, with(Some("")).digest);
    // Not configured: the variable is not an input at all.
    let mut env2 = env.clone();
    env2.push(("FLAVOR".into(), "vanilla".into()));
    let plain = key_with(&co, &c, &env2, None, &[]).unwrap();
    assert_eq!(input(&plain, "key-env:FLAVOR"), None);
    assert_eq!(plain.digest, key_of(&co, &c, &env).digest);
}

#[test]
fn sqlx_users_have_its_variables_keyed() {
    let co = checkout(b"dep");
    let (_, env) = compile(&co);
    let deps = co.root.join("target/debug/deps");
    fs::write(deps.join("libsqlx-9.rlib"), b"sqlx").unwrap();
    let with_sqlx = |extern_arg: &str| {
        compile_with(
            &co,
            &[
                "--extern",
                &format!("{extern_arg}={}", deps.join("libsqlx-9.rlib").display()),
            ],
        )
    };
    let c = with_sqlx("sqlx");
    let offline = {
        let mut e = env.clone();
        e.push(("SQLX_OFFLINE".into(), "true".into()));
        e
    };
    let k = key_with(&co, &c, &offline, None, &[]).unwrap();
    assert_eq!(input(&k, "key-env:SQLX_OFFLINE"), Some("=true"));
    assert_eq!(input(&k, "key-env:DATABASE_URL"), Some("(unset)"));
    assert_ne!(k.digest, key_with(&co, &c, &env, None, &[]).unwrap().digest);
    // Renamed in Cargo.toml (`db = { package = "sqlx" }`): still sqlx.
    let renamed = key_with(&co, &with_sqlx("db"), &offline, None, &[]).unwrap();
    assert_eq!(input(&renamed, "key-env:SQLX_OFFLINE"), Some("=true"));
    // A crate that does not use sqlx ignores them.
    let (plain, _) = compile(&co);
    let k = key_with(&co, &plain, &offline, None, &[]).unwrap();
    assert_eq!(input(&k, "key-env:SQLX_OFFLINE"), None);
}

#[test]
fn two_checkouts_share_part_a() {
    let a = checkout(b"dep");
    let b = checkout(b"dep");
    let (ca, ea) = compile(&a);
    let (cb, eb) = compile(&b);
    assert_ne!(a.root, b.root);
    assert_eq!(key_of(&a, &ca, &ea).digest, key_of(&b, &cb, &eb).digest);
}

#[test]
fn extern_content_and_cargo_env_change_part_a_but_noise_does_not() {
    let a = checkout(b"dep");
    let (c, env) = compile(&a);
    let k = key_of(&a, &c, &env).digest;
    let b = checkout(b"dep changed");
    let (cb, eb) = compile(&b);
    assert_ne!(k, key_of(&b, &cb, &eb).digest);

    let mut env2 = env.clone();
    env2.push((OsString::from("CARGO_PKG_NAME"), OsString::from("y")));
    assert_ne!(k, key_of(&a, &c, &env2).digest);

    let mut env3 = env.clone();
    env3[3].1 = OsString::from("-j --jobserver-fds=3,4");
    env3.push((
        OsString::from("CARGO_REGISTRIES_X_TOKEN"),
        OsString::from("secret"),
    ));
    env3.push((OsString::from("HOME"), OsString::from("/elsewhere")));
    let k3 = key_of(&a, &c, &env3);
    assert_eq!(k, k3.digest);
    assert!(!k3.inputs.iter().any(|i| i.value.contains("secret")));
}

#[test]
fn env_selection() {
    for yes in [
        "CARGO_PKG_VERSION",
        "CARGO_MANIFEST_DIR",
        "OUT_DIR",
        "RUSTC_BOOTSTRAP",
        "CARGO_TARGET_TMPDIR",
        "MACOSX_DEPLOYMENT_TARGET",
        "CARGO_FEATURE_X",
    ] {
        assert!(env_in_key(yes), "{yes}");
    }
    for no in [
        "CARGO",
        "CARGO_MAKEFLAGS",
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_TERM_COLOR",
        "CARGO_REGISTRIES_CRATES_IO_PROTOCOL",
        "PATH",
        "HOME",
        "RUSTFLAGS",
    ] {
        assert!(!env_in_key(no), "{no}");
    }
}

#[test]
fn manifest_matches_until_a_source_or_env_dep_changes() {
    let a = checkout(b"dep");
    let (c, env) = compile(&a);
    let bases = base_dirs(&c, &a.root, &env, &[]);
    let info = crate::depinfo::parse(&format!(
        "{r}/target/debug/deps/x.d: src/lib.rs {h}/registry/m.rs\n\nsrc/lib.rs:\n{h}/registry/m.rs:\n\n# env-dep:CARGO_PKG_NAME=x\n# env-dep:UNSET_ONE\n",
        r = a.root.display(),
        h = a.home.display()
    ));
    fs::create_dir_all(a.home.join("registry")).unwrap();
    fs::write(a.home.join("registry/m.rs"), "mod m;").unwrap();
    let m = Manifest::from_depinfo(&info, &a.root, &bases, &PlainDigester).unwrap();
    assert_eq!(m.files[1].0, "\0cargo_home\0/registry/m.rs");
    assert!(m.matches(&a.root, &bases, &env, &PlainDigester));

    let stored = Stored {
        manifest: m.clone(),
        at: 1_700_000_000,
    };
    let decoded = decode_list(&encode_list(std::slice::from_ref(&stored))).unwrap();
    assert_eq!(decoded, vec![stored]);

    let mut env2 = env.clone();
    env2.push((OsString::from("UNSET_ONE"), OsString::from("now set")));
    assert!(!m.matches(&a.root, &bases, &env2, &PlainDigester));

    fs::write(a.home.join("registry/m.rs"), "mod m2;").unwrap();
    assert!(!m.matches(&a.root, &bases, &env, &PlainDigester));
}

#[test]
fn part_b_depends_on_file_digests() {
    let m1 = Manifest {
        files: vec![("src/lib.rs".into(), Digest::of(b"1"))],
        env: vec![],
        env_values: Default::default(),
    };
    let m2 = Manifest {
        files: vec![("src/lib.rs".into(), Digest::of(b"2"))],
        env: vec![],
        env_values: Default::default(),
    };
    let a = Digest::of(b"a");
    assert_ne!(m1.key_b(&a).digest, m2.key_b(&a).digest);
    assert_eq!(m1.key_b(&a).digest, m1.clone().key_b(&a).digest);
}

#[test]
fn malformed_manifest_text_is_an_error() {
    assert!(decode_list("f abc src").is_err());
    assert!(decode_list("manifest 1\nx y").is_err());
    assert!(decode_list("manifest\n").is_err());
}

#[test]
fn merged_lists_keep_every_manifest_once_newest_first() {
    let m = |n: &[u8]| Manifest {
        files: vec![("src/lib.rs".into(), Digest::of(n))],
        env: vec![],
        env_values: Default::default(),
    };
    let at = |n: &[u8], at: u64| Stored { manifest: m(n), at };
    // Two machines stored `a` and `b` over the same old list; one list
    // also has `a` at an older time.
    let local = vec![at(b"a", 30), at(b"old", 10)];
    let remote = vec![at(b"b", 20), at(b"a", 5), at(b"old", 10)];
    let merged = merge_lists([local, remote], 8);
    assert_eq!(merged, vec![at(b"a", 30), at(b"b", 20), at(b"old", 10)]);
    let few = merge_lists([merged], 2);
    assert_eq!(few, vec![at(b"a", 30), at(b"b", 20)]);
}

#[test]
fn out_dir_env_dep_is_base_relative_but_other_paths_are_exact() {
    let a = checkout(b"dep");
    let b = checkout(b"dep");
    let (ca, ea) = compile(&a);
    let (cb, eb) = compile(&b);
    let ba = base_dirs(&ca, &a.root, &ea, &[]);
    let bb = base_dirs(&cb, &b.root, &eb, &[]);
    let depinfo = |co: &Checkout| {
        crate::depinfo::parse(&format!(
            "x.d: src/lib.rs\n\nsrc/lib.rs:\n\n# env-dep:OUT_DIR={r}/target/debug/build/x-1/out\n# env-dep:CARGO_MANIFEST_DIR={r}\n",
            r = co.root.display()
        ))
    };
    let with_env = |co: &Checkout, env: &[(OsString, OsString)]| {
        let mut env = env.to_vec();
        env.push((
            "OUT_DIR".into(),
            co.root.join("target/debug/build/x-1/out").into_os_string(),
        ));
        env
    };
    let m = Manifest::from_depinfo(&depinfo(&a), &a.root, &ba, &PlainDigester).unwrap();
    assert!(m.matches(&a.root, &ba, &with_env(&a, &ea), &PlainDigester));
    // In the other checkout OUT_DIR matches, but CARGO_MANIFEST_DIR differs.
    assert!(m.env[0].1.as_deref().unwrap().starts_with("\0target\0"));
    assert!(!m.env_matches(&with_env(&b, &eb), &bb));
    let only_out_dir = Manifest {
        files: m.files.clone(),
        env: vec![m.env[0].clone()],
        env_values: Default::default(),
    };
    assert!(only_out_dir.env_matches(&with_env(&b, &eb), &bb));
}

#[test]
fn autocfg_probes_share_part_a_whatever_their_random_name() {
    let co = checkout(b"dep");
    let env = vec![(
        OsString::from("OUT_DIR"),
        co.root.join("target/debug/build/n-1/out").into_os_string(),
    )];
    let probe = |name: &str| {
        let line = format!("--crate-name {name} --crate-type=lib --out-dir target/debug/build/n-1/out --emit=llvm-ir -");
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        let Parsed::Cacheable(c) = parse(&args, &co.root) else {
            panic!()
        };
        let bases = base_dirs(&c, &co.root, &env, &[]);
        let (tc, stdin) = (Digest::of(b"toolchain"), Digest::of(b"pub fn probe() {}"));
        let ctx = KeyContext {
            cwd: &co.root,
            env: &env,
            toolchain: &tc,
            bases: &bases,
            digester: &PlainDigester,
            clippy: false,
            linker: None,
            stdin: Some(&stdin),
            native_cpu: None,
            key_env: &[],
        };
        key_a(&c, &ctx).unwrap().digest
    };
    let k = probe("autocfg_0123456789abcdef_2");
    assert_eq!(k, probe("autocfg_fedcba9876543210_2"));
    // The probe's number, and any name not of autocfg's form, still count.
    assert_ne!(k, probe("autocfg_0123456789abcdef_3"));
    assert_ne!(
        probe("probe_0123456789abcdef_2"),
        probe("probe_fedcba9876543210_2")
    );
}
