//! Linked crates (binaries, build scripts, proc-macros, cdylibs): cached
//! with the linker and everything the link read in their key.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use crate::harness::{assert_ok, hits_misses, lib_outputs, run_app, Env};

/// The fixture with a cdylib member that exports a C function.
const WITH_CDYLIB: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        "[workspace]\nmembers = [\"app\", \"util\", \"cdy\"]\nresolver = \"2\"\n",
    ),
    (
        "cdy/Cargo.toml",
        "[package]\nname = \"cdy\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nutil = { path = \"../util\" }\n",
    ),
    (
        "cdy/src/lib.rs",
        "#[no_mangle]\npub extern \"C\" fn cdy_answer() -> u32 {\n    util::greeting().len() as u32\n}\n",
    ),
];

#[test]
fn a_cdylib_hits_byte_identical_and_loads() {
    let env = Env::new();
    let co = env.checkout_with("cdy", WITH_CDYLIB);
    env.cargo_with(&co, false, &["build"], &[]);
    let so = co.target.join("debug/libcdy.so");
    let reference = std::fs::read(&so).unwrap();
    std::fs::remove_dir_all(&co.target).unwrap();
    env.build(&co, &[]);
    let s = env.rebuild_fresh(&co, &[]);
    // itoa, util, its build script, app and cdy.
    assert_eq!(hits_misses(&s), (5, 0), "{s}");
    assert!(
        std::fs::read(&so).unwrap() == reference,
        "restored cdylib differs"
    );
    // "hello 42" is 8 bytes long.
    let py = format!(
        "import ctypes; print(ctypes.CDLL({:?}).cdy_answer())",
        so.display().to_string()
    );
    let out = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "8", "{out:?}");
}

#[test]
fn another_linker_misses_the_linked_crates_only() {
    let env = Env::new();
    let co = env.checkout("linker");
    env.build(&co, &[]);
    env.stop();
    // A `cc` of other content first in PATH: the same compiler underneath,
    // but another linker as far as the key knows.
    let bin = env.root.path().join("other-cc");
    std::fs::create_dir_all(&bin).unwrap();
    let cc = bin.join("cc");
    std::fs::write(&cc, "#!/bin/sh\nexec /usr/bin/cc \"$@\"\n").unwrap();
    std::fs::set_permissions(&cc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let s = {
        std::fs::remove_dir_all(&co.target).unwrap();
        env.zero();
        env.build(&co, &[("PATH", &path)]);
        env.stats()
    };
    // itoa and util hit; the build script and the app are linked again.
    assert_eq!(hits_misses(&s), (2, 2), "{s}");
    assert_eq!(run_app(&co), "hello 42");
}

#[test]
fn a_link_argument_misses_that_binary_only() {
    let env = Env::new();
    let co = env.checkout("linkarg");
    env.build(&co, &[]);
    let before = lib_outputs(&co.target);
    env.stop();
    env.zero();
    // `cargo rustc` passes the argument to the app's compile only.
    let out = env
        .cargo_command(&co, true)
        .args(["rustc", "--offline", "-p", "app", "--bin", "app", "--"])
        .args(["-C", "link-arg=-Wl,--build-id=none"])
        .output()
        .unwrap();
    assert_ok(&out);
    let s = env.stats();
    assert_eq!(hits_misses(&s), (0, 1), "{s}");
    let after = lib_outputs(&co.target);
    let app = |v: &Vec<(String, Vec<u8>)>| {
        v.iter()
            .find(|(n, _)| n.starts_with("app-") && !n.ends_with(".d"))
            .map(|(_, d)| d.clone())
            .unwrap()
    };
    assert_ne!(app(&before), app(&after), "the build id is gone");
    assert_eq!(run_app(&co), "hello 42");
}

/// The files with extension `ext` under `debug/deps` and the build
/// scripts' directories, by name, with their bytes.
fn debug_files(co: &crate::harness::Checkout, ext: &str) -> Vec<(String, Vec<u8>)> {
    let debug = co.target.join("debug");
    let build_dirs = std::fs::read_dir(debug.join("build"))
        .unwrap()
        .map(|e| e.unwrap().path());
    let mut v: Vec<_> = std::iter::once(debug.join("deps"))
        .chain(build_dirs)
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn packed_split_debuginfo_comes_along_with_the_binary() {
    let env = Env::new();
    let co = env.checkout("dwp");
    let flags = [("RUSTFLAGS", "-Csplit-debuginfo=packed")];
    env.build(&co, &flags);
    let stored = debug_files(&co, "dwp");
    assert_eq!(
        stored.len(),
        1,
        "the app's .dwp: {:?}",
        stored.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    let s = env.rebuild_fresh(&co, &flags);
    assert_eq!(hits_misses(&s), (4, 0), "{s}");
    assert_eq!(debug_files(&co, "dwp"), stored);
    assert_eq!(run_app(&co), "hello 42");
}

/// `-C split-debuginfo=unpacked` leaves one `.dwo` per codegen unit beside
/// each crate's outputs, named by rustc; a hit brings them all back.
#[test]
fn unpacked_split_debuginfo_brings_its_dwo_files() {
    let env = Env::new();
    let co = env.checkout("dwo");
    // (The harness builds with CARGO_INCREMENTAL=0.)
    let flags = [("RUSTFLAGS", "-Csplit-debuginfo=unpacked")];
    env.build(&co, &flags);
    let stored = debug_files(&co, "dwo");
    let names: Vec<&String> = stored.iter().map(|s| &s.0).collect();
    // (Build scripts are built without debug info.)
    for krate in ["itoa-", "util-", "app-"] {
        assert!(
            names.iter().any(|n| n.starts_with(krate)),
            "{krate}: {names:?}"
        );
    }
    let s = env.rebuild_fresh(&co, &flags);
    assert_eq!(hits_misses(&s), (4, 0), "{s}");
    assert_eq!(debug_files(&co, "dwo"), stored);
    assert_eq!(run_app(&co), "hello 42");
    // Incremental compiles keep their `.dwo` files in the session
    // directory, which a hit leaves alone: the members (util, its build
    // script, app) are not cached.
    let s = env.rebuild_fresh(&co, &[flags[0], ("CARGO_INCREMENTAL", "1")]);
    let reason = "-C split-debuginfo=unpacked with -C incremental";
    assert_eq!(s["non_cacheable_reasons"][reason].as_u64(), Some(3), "{s}");
    assert_eq!(run_app(&co), "hello 42");
}
