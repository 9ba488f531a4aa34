//! Test harness: an isolated cachepot (own runtime dir, cache dir and
//! daemon) and fixture checkouts built with the real cargo and rustc.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_cachepot");

/// The fixture's cacheable compiles: itoa, util, util's build script and
/// the app binary.
pub const UNITS: u64 = 4;

/// The fixture's build-script runs (util's), counted apart from compiles.
pub const SCRIPT_RUNS: u64 = 1;

/// The fixture workspace: a binary, a library with a build script that reads
/// an env var at compile time and has a feature, and one registry crate.
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", "[workspace]\nmembers = [\"app\", \"util\"]\nresolver = \"2\"\n"),
    ("app/Cargo.toml", "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nutil = { path = \"../util\" }\n\n[features]\nloud = [\"util/loud\"]\n"),
    ("app/src/main.rs", "fn main() {\n    println!(\"{}\", util::greeting());\n}\n"),
    ("util/Cargo.toml", "[package]\nname = \"util\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"=1.0.11\"\n\n[features]\nloud = []\n"),
    ("util/build.rs", "fn main() {\n    println!(\"cargo:rerun-if-env-changed=FIXTURE_KILL_PIDFILE\");\n    let out = std::env::var(\"OUT_DIR\").unwrap();\n    std::fs::write(format!(\"{out}/generated.rs\"), \"pub const ANSWER: u32 = 42;\\n\").unwrap();\n    if let Ok(f) = std::env::var(\"FIXTURE_KILL_PIDFILE\") {\n        let pid = std::fs::read_to_string(f).unwrap();\n        let ok = std::process::Command::new(\"kill\").args([\"-9\", pid.trim()]).status().unwrap().success();\n        assert!(ok, \"could not kill {pid}\");\n    }\n}\n"),
    ("util/src/lib.rs", "mod shout;\ninclude!(concat!(env!(\"OUT_DIR\"), \"/generated.rs\"));\n\npub fn greeting() -> String {\n    let base = option_env!(\"FIXTURE_GREETING\").unwrap_or(\"hello\");\n    let mut buf = itoa::Buffer::new();\n    let n = buf.format(ANSWER);\n    shout::maybe(format!(\"{base} {n}\"))\n}\n"),
    ("util/src/shout.rs", "#[cfg(feature = \"loud\")]\npub fn maybe(s: String) -> String {\n    s.to_uppercase() + \"!\"\n}\n\n#[cfg(not(feature = \"loud\"))]\npub fn maybe(s: String) -> String {\n    s\n}\n"),
];

/// Files that add a proc-macro used by `util` to the fixture.
pub const WITH_PROC_MACRO: &[(&str, &str)] = &[
    ("Cargo.toml", "[workspace]\nmembers = [\"app\", \"util\", \"macros\"]\nresolver = \"2\"\n"),
    ("macros/Cargo.toml", "[package]\nname = \"macros\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\nproc-macro = true\n"),
    ("macros/src/lib.rs", "use proc_macro::TokenStream;\n\n#[proc_macro]\npub fn zero(_: TokenStream) -> TokenStream {\n    \"0u32\".parse().unwrap()\n}\n"),
    ("util/Cargo.toml", "[package]\nname = \"util\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"=1.0.11\"\nmacros = { path = \"../macros\" }\n\n[features]\nloud = []\n"),
    ("util/src/zero.rs", "pub const ZERO: u32 = macros::zero!();\n"),
    ("util/src/lib.rs", "pub mod zero;\nmod shout;\ninclude!(concat!(env!(\"OUT_DIR\"), \"/generated.rs\"));\n\npub fn greeting() -> String {\n    let base = option_env!(\"FIXTURE_GREETING\").unwrap_or(\"hello\");\n    let mut buf = itoa::Buffer::new();\n    let n = buf.format(ANSWER);\n    shout::maybe(format!(\"{base} {n}\"))\n}\n"),
];

/// A CARGO_HOME with the fixture's registry crate fetched and a lock file,
/// made once per test run.
fn template() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| make_template("e2e-template", FILES))
}

/// A package whose build script compiles C with the `cc` crate.
const CC_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", "[workspace]\n\n[package]\nname = \"cnative\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[build-dependencies]\ncc = \"1\"\n"),
    ("build.rs", "fn main() {\n    println!(\"cargo:rerun-if-changed=include\");\n    println!(\"cargo:rerun-if-changed=csrc\");\n    cc::Build::new().file(\"csrc/add.c\").include(\"include\").compile(\"add\");\n}\n"),
    ("include/add.h", "#define OFFSET 0\n"),
    ("csrc/add.c", "#include \"add.h\"\nint add(int a, int b) { return a + b + OFFSET; }\n"),
    ("src/main.rs", "extern \"C\" {\n    fn add(a: i32, b: i32) -> i32;\n}\n\nfn main() {\n    println!(\"{}\", unsafe { add(2, 3) });\n}\n"),
];

fn cc_template() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| make_template("e2e-cc-template", CC_FILES))
}

/// A workspace of build scripts of every kind: `gen` generates code into
/// `OUT_DIR` from a declared file and variable, with a time stamp beside
/// (and fails on purpose when `FIXTURE_FAIL` is set), `native` (`links = "native"`) runs a configure
/// script and make and prints link search paths and metadata, `user`
/// reads that metadata (`DEP_NATIVE_*`), and `app` prints what they made.
pub const SCRIPT_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", "[workspace]\nmembers = [\"app\", \"gen\", \"native\", \"user\"]\nresolver = \"2\"\n"),
    ("app/Cargo.toml", "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ngen = { path = \"../gen\" }\nnative = { path = \"../native\" }\nuser = { path = \"../user\" }\n"),
    ("app/src/main.rs", "fn main() {\n    println!(\"{} {} {} {} {}\", gen::DATA, gen::FLAVOR, native::add(1, 2), native::base(), user::BASE);\n}\n"),
    ("gen/Cargo.toml", "[package]\nname = \"gen\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
    ("gen/data.txt", "data\n"),
    ("gen/build.rs", "fn main() {\n    println!(\"cargo:rerun-if-changed=data.txt\");\n    println!(\"cargo:rerun-if-env-changed=FLAVOR\");\n    println!(\"cargo:rerun-if-env-changed=FIXTURE_FAIL\");\n    // As ring does: a declared variable that names a base directory.\n    println!(\"cargo:rerun-if-env-changed=CARGO_MANIFEST_DIR\");\n    if std::env::var_os(\"FIXTURE_FAIL\").is_some() {\n        panic!(\"fixture build script failed on purpose\");\n    }\n    let data = std::fs::read_to_string(\"data.txt\").unwrap();\n    let flavor = std::env::var(\"FLAVOR\").unwrap_or_else(|_| \"plain\".into());\n    let out = std::env::var(\"OUT_DIR\").unwrap();\n    let text = format!(\"pub const DATA: &str = {:?};\\npub const FLAVOR: &str = {:?};\\npub const OUT: &str = {:?};\\n\", data.trim(), flavor, out);\n    std::fs::write(format!(\"{out}/gen.rs\"), text).unwrap();\n    // A file no two runs write alike.\n    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();\n    std::fs::write(format!(\"{out}/stamp.txt\"), now.as_nanos().to_string()).unwrap();\n}\n"),
    ("gen/src/lib.rs", "include!(concat!(env!(\"OUT_DIR\"), \"/gen.rs\"));\n"),
    ("native/Cargo.toml", "[package]\nname = \"native\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlinks = \"native\"\n"),
    ("native/csrc/configure", "#!/bin/sh\necho \"configure: writing config.h and Makefile\"\necho '#define BASE 40' > config.h\nsed \"s|@CC@|${CC:-cc}|\" Makefile.in > Makefile\n"),
    ("native/csrc/Makefile.in", "libnative.a: add.o\n\tar rcs libnative.a add.o\nadd.o: add.c config.h\n\t@CC@ -c -O1 -fPIC add.c -o add.o\n"),
    ("native/csrc/add.c", "#include \"config.h\"\nint native_add(int a, int b) { return a + b; }\nint native_base(void) { return BASE; }\n"),
    ("native/build.rs", "use std::process::Command;\n\nfn main() {\n    println!(\"cargo:rerun-if-changed=csrc\");\n    let out = std::path::PathBuf::from(std::env::var(\"OUT_DIR\").unwrap());\n    let build = out.join(\"build\");\n    std::fs::create_dir_all(&build).unwrap();\n    for f in [\"configure\", \"Makefile.in\", \"add.c\"] {\n        std::fs::copy(format!(\"csrc/{f}\"), build.join(f)).unwrap();\n    }\n    assert!(Command::new(\"sh\").arg(\"configure\").current_dir(&build).status().unwrap().success());\n    assert!(Command::new(\"make\").arg(\"-s\").current_dir(&build).status().unwrap().success());\n    let lib = out.join(\"lib\");\n    std::fs::create_dir_all(&lib).unwrap();\n    std::fs::copy(build.join(\"libnative.a\"), lib.join(\"libnative.a\")).unwrap();\n    println!(\"cargo:rustc-link-search=native={}\", lib.display());\n    println!(\"cargo:rustc-link-lib=static=native\");\n    println!(\"cargo:root={}\", out.display());\n    println!(\"cargo:base=40\");\n}\n"),
    ("native/src/lib.rs", "extern \"C\" {\n    fn native_add(a: i32, b: i32) -> i32;\n    fn native_base() -> i32;\n}\n\npub fn add(a: i32, b: i32) -> i32 {\n    unsafe { native_add(a, b) }\n}\n\npub fn base() -> i32 {\n    unsafe { native_base() }\n}\n"),
    ("user/Cargo.toml", "[package]\nname = \"user\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nnative = { path = \"../native\" }\n"),
    ("user/build.rs", "fn main() {\n    let root = std::env::var(\"DEP_NATIVE_ROOT\").unwrap();\n    let base = std::env::var(\"DEP_NATIVE_BASE\").unwrap();\n    assert!(std::path::Path::new(&root).join(\"lib/libnative.a\").exists(), \"no library under {root}\");\n    let out = std::env::var(\"OUT_DIR\").unwrap();\n    std::fs::write(format!(\"{out}/base.rs\"), format!(\"pub const BASE: i32 = {base};\\n\")).unwrap();\n}\n"),
    ("user/src/lib.rs", "include!(concat!(env!(\"OUT_DIR\"), \"/base.rs\"));\n"),
];

fn scripts_template() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| make_template("e2e-scripts-template", SCRIPT_FILES))
}

/// Fetches the registry crates of `files` into a CARGO_HOME and keeps the
/// lock file, once per test run.
fn make_template(name: &str, files: &[(&str, &str)]) -> PathBuf {
    {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        let done = dir.join("done");
        if done.exists() {
            return dir;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let ws = dir.join("ws");
        write_files(&ws, files);
        let out = Command::new("cargo")
            .args(["fetch", "--quiet"])
            .current_dir(&ws)
            .env("CARGO_HOME", dir.join("cargo-home"))
            .env_remove("RUSTC_WRAPPER")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo fetch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&done, "").unwrap();
        dir
    }
}

fn write_files(ws: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = ws.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// One isolated cachepot setup.
pub struct Env {
    pub root: tempfile::TempDir,
    pub runtime: PathBuf,
    pub cache: PathBuf,
    pub extra: Vec<(String, String)>,
}

/// A checkout of the fixture with its own CARGO_HOME and target dir.
pub struct Checkout {
    pub ws: PathBuf,
    pub home: PathBuf,
    pub target: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let root = tempfile::tempdir().unwrap();
        let runtime = root.path().join("run");
        let cache = root.path().join("cache");
        Env {
            runtime,
            cache,
            root,
            extra: Vec::new(),
        }
    }

    /// A fresh checkout under `name`, target dir inside it.
    pub fn checkout(&self, name: &str) -> Checkout {
        self.checkout_with(name, &[])
    }

    /// A fresh checkout with `overlay` written over the fixture.
    pub fn checkout_with(&self, name: &str, overlay: &[(&str, &str)]) -> Checkout {
        self.checkout_of(template(), FILES, name, overlay)
    }

    /// A checkout of the package whose build script compiles C (`cc`).
    pub fn checkout_cc(&self, name: &str) -> Checkout {
        self.checkout_of(cc_template(), CC_FILES, name, &[])
    }

    /// A checkout of the build-script workspace ([`SCRIPT_FILES`]).
    pub fn checkout_scripts(&self, name: &str) -> Checkout {
        self.checkout_of(scripts_template(), SCRIPT_FILES, name, &[])
    }

    fn checkout_of(
        &self,
        t: &Path,
        files: &[(&str, &str)],
        name: &str,
        overlay: &[(&str, &str)],
    ) -> Checkout {
        let base = self.root.path().join(name);
        let ws = base.join("src").join("project");
        write_files(&ws, files);
        std::fs::copy(t.join("ws/Cargo.lock"), ws.join("Cargo.lock")).unwrap();
        write_files(&ws, overlay);
        std::fs::create_dir_all(&base).unwrap();
        let home = base.join("cargo-home");
        copy_dir(&t.join("cargo-home"), &home);
        Checkout {
            target: ws.join("target"),
            ws,
            home,
        }
    }

    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("CACHEPOT_RUNTIME_DIR", &self.runtime)
            .env("CACHEPOT_DIR", &self.cache)
            .env("CACHEPOT_CONF", self.root.path().join("no-config.toml"))
            .env_remove("CACHEPOT_LOG")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            // Counts of remote reads stay exact: the tests of prefetch
            // turn it on.
            .env("CACHEPOT_PREFETCH", "0");
        for (k, v) in &self.extra {
            c.env(k, v);
        }
        c
    }

    /// Runs cargo in a checkout, through cachepot when `cached`.
    pub fn cargo_with(
        &self,
        co: &Checkout,
        cached: bool,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let mut c = self.cargo_command(co, cached);
        c.args(args).arg("--offline");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// cargo in a checkout (its CARGO_HOME and target directory, not
    /// incremental), through cachepot when `cached`; no arguments yet.
    pub fn cargo_command(&self, co: &Checkout, cached: bool) -> Command {
        let mut c = self.command("cargo");
        c.current_dir(&co.ws)
            .env("CARGO_HOME", &co.home)
            .env("CARGO_TARGET_DIR", &co.target)
            .env("CARGO_INCREMENTAL", "0");
        if cached {
            c.env("RUSTC_WRAPPER", BIN);
        }
        c
    }

    /// `cargo build` through cachepot.
    pub fn build(&self, co: &Checkout, env: &[(&str, &str)]) -> Output {
        self.cargo_with(co, true, &["build"], env)
    }

    /// `cargo build` through cachepot while the fixture's build script
    /// kills `victim` (a server or relay); how long the build took.
    pub fn build_killing(&self, co: &Checkout, victim: u32) -> std::time::Duration {
        let pidfile = self.root.path().join("victim.pid");
        std::fs::write(&pidfile, victim.to_string()).unwrap();
        let start = std::time::Instant::now();
        self.build(co, &[("FIXTURE_KILL_PIDFILE", pidfile.to_str().unwrap())]);
        start.elapsed()
    }

    /// Runs cachepot with arguments; asserts success.
    pub fn cachepot(&self, args: &[&str]) -> String {
        let out = self.command(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "cachepot {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `--check-storage`: its exit code and what it printed.
    pub fn check_storage(&self) -> (Option<i32>, String) {
        let out = self.command(BIN).arg("--check-storage").output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.cachepot(&["--show-stats", "--stats-format", "json"])).unwrap()
    }

    pub fn zero(&self) {
        self.cachepot(&["--zero-stats"]);
    }

    /// Stops the daemon (its writes done), empties the target directory,
    /// zeroes the statistics, builds again, and returns the statistics.
    pub fn rebuild_fresh(&self, co: &Checkout, env: &[(&str, &str)]) -> serde_json::Value {
        self.stop();
        std::fs::remove_dir_all(&co.target).unwrap();
        self.zero();
        self.build(co, env);
        self.stats()
    }

    /// Stops the daemon; returns when its writes are done.
    pub fn stop(&self) {
        let _ = self.command(BIN).arg("--stop-server").output();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asserts that a command succeeded, showing its stderr if not.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The counters of a stats JSON.
pub fn count(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

/// Hits and misses of a stats JSON.
pub fn hits_misses(stats: &serde_json::Value) -> (u64, u64) {
    (count(stats, "cache_hits"), count(stats, "cache_misses"))
}

/// The outputs of the fixture's cacheable crates, by file name: the
/// libraries, the app binary and util's build script, with dep-info.
pub fn lib_outputs(target: &Path) -> Vec<(String, Vec<u8>)> {
    let deps = target.join("debug/deps");
    let build_scripts = std::fs::read_dir(target.join("debug/build"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("util-")
        })
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&deps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain(build_scripts)
        .filter(|p| {
            // A build script's launcher stands where rustc wrote the
            // binary; the binary is beside it (compared under its own name).
            let launcher = PathBuf::from(format!("{}.cachepot-real", p.display()));
            !launcher.exists()
        })
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            let lib = (n.starts_with("libitoa")
                || n.starts_with("libutil")
                || n.starts_with("itoa-")
                || n.starts_with("util-"))
                && (n.ends_with(".rlib") || n.ends_with(".rmeta") || n.ends_with(".d"));
            lib || n.starts_with("app-") || n.starts_with("build_script_build-")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let name = name.trim_end_matches(".cachepot-real").to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Runs the fixture's binary.
pub fn run_app(co: &Checkout) -> String {
    let out = Command::new(co.target.join("debug/app")).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every file below `dir`.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Rewrites, in every entry of a cache directory, the first file whose
/// name `pick` accepts with `change`'s bytes: a valid entry under its
/// right key with wrong contents, which no checksum catches. Returns how
/// many entries it changed.
pub fn plant_in_entries(
    cache: &Path,
    pick: impl Fn(&str) -> bool,
    change: impl Fn(&[u8]) -> Vec<u8>,
) -> usize {
    use cachepot_storage::{Entry, EntryFile, FileData};
    let mut planted = 0;
    for path in files_below(cache) {
        let Ok(mut entry) = Entry::decode(&std::fs::read(&path).unwrap()) else {
            continue;
        };
        let Some(file) = entry.files.iter_mut().find(|f| pick(&f.name)) else {
            continue;
        };
        *file = EntryFile {
            data: FileData::Bytes(change(file.data.bytes().unwrap())),
            ..file.clone()
        };
        std::fs::write(&path, entry.encode().unwrap()).unwrap();
        planted += 1;
    }
    planted
}
