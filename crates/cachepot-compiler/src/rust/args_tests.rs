#![allow(clippy::unwrap_used)]

use super::*;

fn words(s: &str) -> Vec<OsString> {
    s.split_whitespace().map(OsString::from).collect()
}

fn cacheable(s: &str) -> RustCompile {
    match parse(&words(s), Path::new("/ws")) {
        Parsed::Cacheable(c) => *c,
        other => panic!("expected cacheable, got {other:?}"),
    }
}

fn reason(s: &str) -> String {
    match parse(&words(s), Path::new("/ws")) {
        Parsed::Uncacheable(u) => u.reason,
        other => panic!("expected uncacheable, got {other:?}"),
    }
}

fn roles_and_paths(c: &RustCompile) -> Vec<(String, String)> {
    c.outputs(Path::new("/ws"))
        .into_iter()
        .map(|o| (o.role.name().into_owned(), o.path.display().to_string()))
        .collect()
}

/// `cargo build` of a registry crate, as cargo 1.95 runs it.
const REGISTRY_LIB: &str = "--crate-name unicode_ident --edition=2021 /home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/unicode-ident-1.0.27/src/lib.rs --error-format=json --json=diagnostic-rendered-ansi,artifacts,future-incompat --crate-type lib --emit=dep-info,metadata,link -C embed-bitcode=no --check-cfg cfg(docsrs,test) --check-cfg cfg(feature,values()) -C metadata=0414aaa79eb6a3c3 -C extra-filename=-49b462d488e72123 --out-dir /ws/target/debug/deps -L dependency=/ws/target/debug/deps --cap-lints allow";

/// A workspace member with externs and native search paths.
const MEMBER_LIB: &str = "--crate-name cachepot_storage --edition=2021 crates/cachepot-storage/src/lib.rs --error-format=json --json=diagnostic-rendered-ansi,artifacts,future-incompat --crate-type lib --emit=dep-info,metadata,link -C embed-bitcode=no -C debuginfo=2 --warn=clippy::unwrap_used --deny=unsafe_code --check-cfg cfg(docsrs,test) -C metadata=5e1b5d85efcb23e7 -C extra-filename=-bc53dcb58ff532a8 --out-dir /ws/target/debug/deps -L dependency=/ws/target/debug/deps --extern blake3=/ws/target/debug/deps/libblake3-988a685b4271e55b.rmeta --extern noprelude:zstd=/ws/target/debug/deps/libzstd-68f668ebceca5e29.rmeta --extern proc_macro -L native=/ws/target/debug/build/zstd-sys-63bdffa00f02aff8/out -l static=zstd";

#[test]
fn registry_lib_outputs_follow_crate_name_and_extra_filename() {
    let c = cacheable(REGISTRY_LIB);
    assert_eq!(c.crate_name, "unicode_ident");
    assert_eq!(c.crate_types, vec![CrateType::Lib]);
    let outs = roles_and_paths(&c);
    assert_eq!(
        outs,
        vec![
            (
                "dep-info".into(),
                "/ws/target/debug/deps/unicode_ident-49b462d488e72123.d".into()
            ),
            (
                "metadata".into(),
                "/ws/target/debug/deps/libunicode_ident-49b462d488e72123.rmeta".into()
            ),
            (
                "link".into(),
                "/ws/target/debug/deps/libunicode_ident-49b462d488e72123.rlib".into()
            ),
        ]
    );
    assert!(!c.key_args.iter().any(|a| a.contains("--out-dir")));
    assert!(c.key_args.contains(&"--cap-lints=allow".to_string()));
}

#[test]
fn externs_are_kept_by_index_and_forms() {
    let c = cacheable(MEMBER_LIB);
    assert_eq!(c.externs.len(), 3);
    assert_eq!(c.externs[1].spec, "noprelude:zstd");
    assert_eq!(c.externs[2].path, None);
    assert!(c
        .key_args
        .contains(&"--extern=blake3={extern:0}".to_string()));
    assert!(c.key_args.contains(&"--extern=proc_macro".to_string()));
    assert_eq!(c.link_libs[0].kind.as_deref(), Some("static"));
    assert_eq!(c.link_libs[0].name, "zstd");
    assert_eq!(c.search_paths[1].0, "native");
}

#[test]
fn attached_and_separate_flag_forms_mean_the_same() {
    let a = cacheable("--crate-name x --crate-type=rlib --emit dep-info,link -Copt-level=3 -Ldependency=/d -Awarnings --cfg feature=\"a\" src/lib.rs");
    let b = cacheable("--crate-name=x --crate-type rlib --emit=dep-info,link -C opt-level=3 -L dependency=/d -A warnings --cfg=feature=\"a\" src/lib.rs");
    assert_eq!(a.key_args, b.key_args);
}

#[test]
fn flags_change_the_key_args() {
    let base = cacheable("--crate-name x --crate-type lib --emit=dep-info,link src/lib.rs");
    for extra in [
        "--cfg feature=\"b\"",
        "-C opt-level=1",
        "-g",
        "--edition=2024",
        "-D warnings",
        "--target x86_64-unknown-linux-musl",
    ] {
        let c = cacheable(&format!(
            "--crate-name x --crate-type lib --emit=dep-info,link src/lib.rs {extra}"
        ));
        assert_ne!(c.key_args, base.key_args, "{extra}");
    }
}

#[test]
fn linked_crate_types_write_their_files_and_queries_are_not_compiles() {
    let outs = |line: &str| -> Vec<(String, String)> {
        let c = cacheable(line);
        assert!(c.is_linked(), "{line}");
        roles_and_paths(&c)
    };
    assert_eq!(
        outs("--crate-name b --crate-type bin --emit=dep-info,link -C extra-filename=-1 --out-dir o src/main.rs"),
        [
            ("dep-info".to_string(), "/ws/o/b-1.d".to_string()),
            ("bin".to_string(), "/ws/o/b-1".to_string())
        ]
    );
    assert_eq!(
        outs("--crate-name m --crate-type proc-macro --emit=dep-info,link src/lib.rs")[1],
        ("proc-macro".to_string(), "/ws/libm.so".to_string())
    );
    // No --crate-type is a binary, as is --test.
    assert_eq!(
        outs("--crate-name b --emit=dep-info,link src/main.rs")[1].0,
        "bin"
    );
    let t = cacheable("--crate-name t --test --emit=dep-info,link src/lib.rs");
    assert!(t.test && t.key_args.contains(&"--test".to_string()));
    let c = cacheable("--crate-name c --crate-type lib,cdylib --emit=dep-info,link -C linker=clang -C link-arg=-fuse-ld=lld -C link-args=-Wl,-z,now src/lib.rs");
    assert_eq!(c.linker.as_deref(), Some("clang"));
    assert_eq!(c.link_args, ["-fuse-ld=lld", "-Wl,-z,now"]);
    assert!(
        !cacheable("--crate-name l --crate-type lib --emit=dep-info,link src/lib.rs").is_linked()
    );
    // No dep-info asked for: the cache asks for a private one on a miss.
    assert!(!cacheable("--crate-name t --crate-type lib --emit=link src/lib.rs").emits_depinfo());
    assert!(matches!(
        parse(&words("-vV"), Path::new("/")),
        Parsed::NotACompile
    ));
    assert!(matches!(
        parse(
            &words("- --crate-name ___ --print=file-names --crate-type bin"),
            Path::new("/")
        ),
        Parsed::NotACompile
    ));
}

#[test]
fn incremental_is_keyed_without_its_directory_and_side_outputs_are_not_cached() {
    let base = "--crate-name x --crate-type lib --emit=dep-info,link src/lib.rs";
    let inc = |dir: &str| cacheable(&format!("{base} -C incremental={dir}"));
    let (a, b) = (inc("/ws/target/debug/incremental"), inc("/elsewhere/inc"));
    assert_eq!(a.key_args, b.key_args);
    assert_eq!(
        a.incremental.as_deref(),
        Some("/ws/target/debug/incremental")
    );
    assert_ne!(a.key_args, cacheable(base).key_args);
    assert_eq!(reason(&format!("{base} -C save-temps")), "-C save-temps");
    assert_eq!(
        reason(&format!(
            "{base} -C split-debuginfo=unpacked -C incremental=/i"
        )),
        "-C split-debuginfo=unpacked with -C incremental"
    );
    assert_eq!(
        reason(&format!("{base} -C split-debuginfo=maybe")),
        "-C split-debuginfo"
    );
    // Unpacked: `.dwo` files named after the crate, in the output directory.
    let unpacked = cacheable(&format!(
        "{base} -C split-debuginfo=unpacked -C extra-filename=-abc --out-dir o"
    ));
    let dwo = unpacked.dwo_files(Path::new("/ws")).unwrap();
    assert_eq!(
        dwo.path_of(&Role::parse("dwo:x-abc.x.c6f551dc431569fb-cgu.0.rcgu.dwo").unwrap()),
        Some(PathBuf::from(
            "/ws/o/x-abc.x.c6f551dc431569fb-cgu.0.rcgu.dwo"
        ))
    );
    for role in [
        "dwo:y-abc.x.0.rcgu.dwo",
        "dwo:x-abc..dwo",
        "dwo:x-abc.a/../../b.dwo",
        "dwo:x-abc.x.rcgu.o",
        "link",
    ] {
        assert_eq!(dwo.path_of(&Role::parse(role).unwrap()), None, "{role}");
    }
    let last_wins = cacheable(&format!(
        "{base} -C split-debuginfo=unpacked -C split-debuginfo=off"
    ));
    assert!(last_wins.dwo_files(Path::new("/ws")).is_none());
    // Packed: one `.dwp` beside a linked output, when there is debug info.
    let bin = cacheable("--crate-name m --crate-type bin --emit=dep-info,link -C split-debuginfo=packed -C extra-filename=-x --out-dir o m.rs");
    let dwp: Vec<_> = bin
        .outputs(Path::new("/ws"))
        .into_iter()
        .filter(|o| o.optional)
        .collect();
    assert_eq!(dwp.len(), 1);
    assert_eq!(dwp[0].path, Path::new("/ws/o/m-x.dwp"));
    let so = cacheable("--crate-name c --crate-type cdylib --emit=dep-info,link -C split-debuginfo=packed --out-dir o l.rs");
    assert!(so
        .outputs(Path::new("/ws"))
        .iter()
        .any(|o| o.path == Path::new("/ws/o/libc.so.dwp")));
    assert_eq!(reason(&format!("{base} --emit=asm")), "emit asm");
    assert_eq!(reason(&format!("{base} -o /x/y")), "-o");
    assert_eq!(reason(&format!("{base} --frobnicate")), "unknown flag");
    assert_eq!(reason(&format!("{base} other.rs")), "several input files");
    // autocfg's probes: the source on standard input, LLVM IR out.
    let probe = cacheable("--crate-name probe0 --crate-type lib --emit=llvm-ir --out-dir o -");
    assert!(probe.reads_stdin() && !probe.emits_depinfo());
    assert_eq!(
        roles_and_paths(&probe),
        [("llvm-ir".to_string(), "/ws/o/probe0.ll".to_string())]
    );
    assert_eq!(probe.autocfg_probe(), None);
}

#[test]
fn autocfg_probes_are_known_by_their_random_crate_name() {
    // The command line of autocfg 1.5's probes (num-traits' build script).
    let line = |name: &str, extra: &str| {
        cacheable(&format!(
            "--crate-name {name} --crate-type=lib --out-dir /ws/target/debug/build/num-traits-0b1c/out --emit=llvm-ir {extra} -"
        ))
    };
    let probe = line("autocfg_5c2a96f0e4d1b873_3", "");
    assert_eq!(probe.autocfg_probe(), Some("5c2a96f0e4d1b873"));
    for (name, extra) in [
        ("autocfg_5c2a96f0e4d1b873_x", ""),
        ("autocfg_5c2a96f0e4d1b87_3", ""),
        ("autocfg_5C2A96F0E4D1B873_3", ""),
        ("autocfg_5c2a96f0e4d1b873_3", "--emit=metadata"),
        ("autocfg_5c2a96f0e4d1b873_3", "--test"),
        ("probe3", ""),
    ] {
        assert_eq!(line(name, extra).autocfg_probe(), None, "{name} {extra}");
    }
    let from_file = cacheable(
        "--crate-name autocfg_5c2a96f0e4d1b873_3 --crate-type=lib --emit=llvm-ir src/lib.rs",
    );
    assert_eq!(from_file.autocfg_probe(), None);
}

#[test]
fn cargo_check_emits_metadata_only() {
    let c = cacheable("--crate-name x --crate-type lib --emit=dep-info,metadata -C embed-bitcode=no --out-dir /ws/target/debug/deps src/lib.rs");
    let roles: Vec<String> = c
        .outputs(Path::new("/ws"))
        .into_iter()
        .map(|o| o.role.name().into_owned())
        .collect();
    assert_eq!(roles, vec!["dep-info", "metadata"]);
}

#[test]
fn staticlib_and_explicit_emit_paths() {
    let c = cacheable("--crate-name s --crate-type staticlib --crate-type rlib --emit=dep-info=deps/s.d,link --out-dir out src/lib.rs");
    let outs = roles_and_paths(&c);
    assert_eq!(
        outs,
        vec![
            ("dep-info".into(), "/ws/deps/s.d".into()),
            ("staticlib".into(), "/ws/out/libs.a".into()),
            ("link".into(), "/ws/out/libs.rlib".into()),
        ]
    );
}

#[test]
fn argfiles_are_expanded_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("args"),
        "--crate-name\nx\n--crate-type\nlib\n--emit=dep-info,link\n",
    )
    .unwrap();
    let args = vec![OsString::from("@args"), OsString::from("src/lib.rs")];
    match parse(&args, dir.path()) {
        Parsed::Cacheable(c) => assert_eq!(c.crate_name, "x"),
        other => panic!("{other:?}"),
    }
    let missing = vec![OsString::from("@nope"), OsString::from("src/lib.rs")];
    assert!(
        matches!(parse(&missing, dir.path()), Parsed::Uncacheable(u) if u.reason == "unreadable @argfile")
    );
}

#[test]
fn link_lib_forms() {
    assert_eq!(
        parse_link_lib("static:+whole-archive,+verbatim=libfoo.a"),
        LinkLib {
            kind: Some("static".into()),
            name: "libfoo.a".into(),
            verbatim: true
        }
    );
    assert_eq!(
        parse_link_lib("dylib=ssl:ssl3"),
        LinkLib {
            kind: Some("dylib".into()),
            name: "ssl".into(),
            verbatim: false
        }
    );
    assert_eq!(
        parse_link_lib("m"),
        LinkLib {
            kind: None,
            name: "m".into(),
            verbatim: false
        }
    );
}

/// Command lines as cargo 1.95 writes them, and what becomes of each.
#[test]
fn real_cargo_command_lines() {
    let cases: &[(&str, Option<&str>)] = &[
        // A build script.
        ("--crate-name build_script_build --edition=2021 /h/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proc-macro2-1.0.107/build.rs --error-format=json --json=diagnostic-rendered-ansi,artifacts,future-incompat --crate-type bin --emit=dep-info,link -C embed-bitcode=no --cfg feature=\"default\" --cfg feature=\"proc-macro\" --check-cfg cfg(docsrs,test) -C metadata=927528e9e56015a5 -C extra-filename=-01fa69198b2170f5 --out-dir /w/target/debug/build/proc-macro2-01fa69198b2170f5 -L dependency=/w/target/debug/deps --cap-lints allow", None),
        // A proc-macro.
        ("--crate-name serde_derive --edition=2021 /h/reg/serde_derive-1.0.228/src/lib.rs --error-format=json --json=diagnostic-rendered-ansi,artifacts,future-incompat --crate-type proc-macro --emit=dep-info,link -C prefer-dynamic -C embed-bitcode=no --cfg feature=\"default\" -C metadata=1 -C extra-filename=-2 --out-dir /w/target/debug/deps -L dependency=/w/target/debug/deps --extern proc_macro2=/w/target/debug/deps/libproc_macro2-3.rlib --extern proc_macro --cap-lints allow", None),
        // A unit test target.
        ("--crate-name util --edition=2021 util/src/lib.rs --error-format=json --json=diagnostic-rendered-ansi,artifacts,future-incompat --emit=dep-info,link -C embed-bitcode=no -C debuginfo=2 --test --check-cfg cfg(docsrs,test) -C metadata=4 -C extra-filename=-5 --out-dir /w/target/debug/deps -L dependency=/w/target/debug/deps", None),
        // A release library with a feature, LTO-ready bitcode and a native lib.
        ("--crate-name ring --edition=2021 /h/reg/ring-0.17.8/src/lib.rs --error-format=json --json=diagnostic-rendered-ansi,artifacts,future-incompat --crate-type lib --emit=dep-info,metadata,link -C opt-level=3 -C embed-bitcode=no -C strip=debuginfo --cfg feature=\"alloc\" -C metadata=6 -C extra-filename=-7 --out-dir /w/target/release/deps -L dependency=/w/target/release/deps --extern cfg_if=/w/target/release/deps/libcfg_if-8.rmeta --cap-lints allow -L native=/w/target/release/build/ring-9/out -l static=ring_core_0_17_8_", None),
        // `cargo check` with a RUSTFLAGS-style -C target-cpu and a --cfg.
        ("--crate-name app --edition=2024 src/main.rs --error-format=json --json=diagnostic-rendered-ansi,artifacts,future-incompat --crate-type lib --emit=dep-info,metadata -C embed-bitcode=no -C debuginfo=2 -C target-cpu=native --cfg tokio_unstable --out-dir /w/target/debug/deps", None),
        // cargo's probe of the compiler.
        ("- --crate-name ___ --print=file-names --crate-type bin --crate-type rlib -Wwarnings", None),
        // An incremental workspace member.
        ("--crate-name member --edition=2021 src/lib.rs --crate-type lib --emit=dep-info,metadata,link -C embed-bitcode=no -C debuginfo=2 -C metadata=a -C extra-filename=-b --out-dir /w/target/debug/deps -C incremental=/w/target/debug/incremental -L dependency=/w/target/debug/deps", None),
        // A cross compile with a custom target file.
        ("--crate-name k --crate-type lib --emit=dep-info,link --target /w/x86_64-kernel.json src/lib.rs", Some("custom target file")),
        // An explicit sysroot.
        ("--crate-name k --crate-type lib --emit=dep-info,link --sysroot /opt/sysroot src/lib.rs", Some("--sysroot")),
    ];
    for (line, want) in cases {
        let got = match parse(&words(line), Path::new("/w")) {
            Parsed::Cacheable(_) => None,
            Parsed::NotACompile => None,
            Parsed::Uncacheable(u) => Some(u.reason),
        };
        assert_eq!(got.as_deref(), *want, "{line}");
    }
}
