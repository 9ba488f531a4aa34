#![allow(clippy::unwrap_used)]

use super::*;
use crate::digest::PlainDigester;

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn bases(root: &str) -> BaseDirs {
    let pkg = format!("{root}/pkg");
    let target = format!("{root}/target");
    BaseDirs::new([("cwd", Path::new(&pkg)), ("target", Path::new(&target))])
}

fn key(e: &[(OsString, OsString)], b: &BaseDirs) -> Digest {
    let bin = Digest::of(b"bin");
    key_a(&RunKey {
        binary: &bin,
        args: &[],
        env: e,
        bases: b,
        rustc: None,
        tools: &[("cc".into(), Some(Digest::of(b"gcc")))],
        key_env: &[],
    })
    .digest
}

#[test]
fn cargo_variables_are_keyed_and_jobs_and_path_are_not() {
    let base = [
        ("TARGET", "x86_64-unknown-linux-gnu"),
        ("CARGO_FEATURE_STD", "1"),
        ("OUT_DIR", "/a/target/debug/build/p-1/out"),
        ("DEP_Z_INCLUDE", "/a/target/debug/build/z-2/out/include"),
        ("NUM_JOBS", "2"),
        ("PATH", "/usr/bin"),
        ("CARGO_MAKEFLAGS", "-j --jobserver-auth=3,4"),
    ];
    let k0 = key(&env(&base), &bases("/a"));
    let with = |name: &str, value: &str| {
        let mut e = env(&base);
        e.push((name.into(), value.into()));
        key(&e, &bases("/a"))
    };
    // The last setting of a name wins, as in the environment.
    assert_eq!(with("NUM_JOBS", "32"), k0);
    assert_eq!(with("PATH", "/opt/bin:/usr/bin"), k0);
    assert_eq!(with("CARGO_MAKEFLAGS", "-j"), k0);
    assert_eq!(with("HOME", "/root"), k0);
    for (name, value) in [
        ("TARGET", "aarch64-unknown-linux-gnu"),
        ("CARGO_FEATURE_ALLOC", "1"),
        ("CARGO_CFG_TARGET_FEATURE", "sse2"),
        ("CFLAGS", "-O3"),
        ("CC_x86_64-unknown-linux-gnu", "clang"),
        ("CFLAGS_x86_64_unknown_linux_gnu", "-g"),
        ("TARGET_CC", "clang"),
        ("PKG_CONFIG_PATH", "/x"),
        ("DEP_Z_ROOT", "/a/target/z"),
    ] {
        assert_ne!(with(name, value), k0, "{name}");
    }
    // Another checkout: the same key.
    let other: Vec<(&str, String)> = base
        .iter()
        .map(|(k, v)| (*k, v.replace("/a/", "/b/")))
        .collect();
    let other: Vec<(&str, &str)> = other.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(key(&env(&other), &bases("/b")), k0);
}

#[test]
fn tool_variables_name_their_programs() {
    let e = env(&[
        ("CC", "cachepot gcc"),
        ("CXX_x86_64-unknown-linux-gnu", "clang++ -stdlib=libc++"),
        ("CFLAGS", "-O2"),
        ("CCACHE_DIR", "/x"),
    ]);
    assert_eq!(named_programs(&e), ["clang++", "gcc"]);
    assert_eq!(tool_var("CCACHE_DIR"), None);
    assert_eq!(tool_var("HOST_CFLAGS"), Some("CFLAGS"));
}

#[test]
fn manifest_records_files_trees_absent_paths_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg");
    let out = dir.path().join("target/debug/build/p-1/out");
    std::fs::create_dir_all(pkg.join("src")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(pkg.join("build.rs"), "fn main() {}").unwrap();
    std::fs::write(pkg.join("src/a.c"), "int a;").unwrap();
    std::fs::write(out.join("gen.rs"), "").unwrap();
    let target = dir.path().join("target");
    let b = BaseDirs::new([("cwd", pkg.as_path()), ("target", target.as_path())]);
    let e = env(&[("FLAVOR", "mango"), ("OUT_DIR", out.to_str().unwrap())]);
    let stdout = format!(
        "cargo:rerun-if-changed=build.rs\ncargo:rerun-if-changed=src\ncargo:rerun-if-changed=gone.h\n\
cargo:rerun-if-changed={}\ncargo:rerun-if-env-changed=FLAVOR\ncargo:rerun-if-env-changed=UNSET\n\
cargo:rerun-if-env-changed=OUT_DIR\n",
        out.join("gen.rs").display()
    );
    let d = directives::parse(stdout.as_bytes());
    let m = manifest(&d, &pkg, &out, &e, &b, &PlainDigester).unwrap();
    let names: Vec<&str> = m.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["build.rs", "src/", "gone.h"]);
    assert_eq!(m.files[2].1, ABSENT);
    assert_eq!(
        m.env,
        [
            ("FLAVOR".to_string(), Some("mango".to_string())),
            ("UNSET".to_string(), None),
            // Compared relative to the target directory, as in rustc's
            // manifests.
            (
                "OUT_DIR".to_string(),
                Some("\0target\0/debug/build/p-1/out".to_string())
            )
        ]
    );
    assert!(m.matches(&pkg, &b, &e, &PlainDigester));
    // A new file in a declared directory, a changed variable, the absent
    // path appearing: no match.
    std::fs::write(pkg.join("src/b.c"), "").unwrap();
    assert!(!m.matches(&pkg, &b, &e, &PlainDigester));
    std::fs::remove_file(pkg.join("src/b.c")).unwrap();
    assert!(m.matches(&pkg, &b, &e, &PlainDigester));
    let kiwi = env(&[("FLAVOR", "kiwi"), ("OUT_DIR", out.to_str().unwrap())]);
    assert!(!m.matches(&pkg, &b, &kiwi, &PlainDigester));
    std::fs::write(pkg.join("gone.h"), "").unwrap();
    assert!(!m.matches(&pkg, &b, &e, &PlainDigester));
    // No file declared: the whole package.
    let none = directives::parse(b"cargo:rustc-cfg=x\n");
    let m = manifest(&none, &pkg, &out, &e, &b, &PlainDigester).unwrap();
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].0, "./");
    assert!(m.matches(&pkg, &b, &e, &PlainDigester));
    std::fs::write(pkg.join("src/a.c"), "int b;").unwrap();
    assert!(!m.matches(&pkg, &b, &e, &PlainDigester));
}

#[test]
fn declared_variables_that_name_base_directories_match_in_another_checkout() {
    let root = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let pkg = root.path().join(name).join("pkg");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("build.rs"), "fn main() {}").unwrap();
        let dir = pkg.to_str().unwrap().to_string();
        (pkg, env(&[("CARGO_MANIFEST_DIR", &dir)]))
    };
    let (a, env_a) = make("a");
    let (b, env_b) = make("b");
    let bases = |p: &Path| BaseDirs::new([("cwd", p)]);
    let d = directives::parse(
        b"cargo:rerun-if-env-changed=CARGO_MANIFEST_DIR\ncargo:rerun-if-changed=build.rs\n",
    );
    let m = manifest(&d, &a, &a.join("out"), &env_a, &bases(&a), &PlainDigester).unwrap();
    // Kept base-relative through the stored form.
    let stored = crate::manifest::Stored {
        manifest: m.clone(),
        at: 1,
    };
    let decoded = crate::manifest::decode_list(&crate::manifest::encode_list(&[stored])).unwrap();
    assert_eq!(decoded[0].manifest, m);
    assert!(m.matches(&b, &bases(&b), &env_b, &PlainDigester));
    let elsewhere = env(&[("CARGO_MANIFEST_DIR", "/elsewhere")]);
    assert!(!m.matches(&b, &bases(&b), &elsewhere, &PlainDigester));
    // rustc's manifests keep comparing such values exactly.
    let mut exact = m.clone();
    exact.env_values = crate::manifest::EnvValues::Exact;
    assert_ne!(
        exact.key_b(&Digest::of(b"a")).digest,
        m.key_b(&Digest::of(b"a")).digest
    );
}
