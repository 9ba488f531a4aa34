//! Key inputs that are not on the command line: what `-C target-cpu=native`
//! is on this machine, and environment variables read by proc-macros.

#![allow(clippy::unwrap_used)]

use crate::explain::{differences, explained};
use crate::harness::{count, hits_misses, run_app, Env, UNITS};

#[test]
fn a_target_cpu_native_build_hits_on_the_same_machine() {
    let env = Env::new();
    let co = env.checkout("native");
    let native = [("RUSTFLAGS", "-C target-cpu=native")];
    env.build(&co, &native);
    let s = env.stats();
    assert_eq!(hits_misses(&s), (0, UNITS), "{s}");
    assert_eq!(count(&s, "non_cacheable"), 0, "{s}");
    // Asked once, the machine's answer is the same for the second build.
    let s = env.rebuild_fresh(&co, &native);
    assert_eq!(hits_misses(&s), (UNITS, 0), "{s}");
    assert_eq!(run_app(&co), "hello 42");
    // The native entries are not a plain build's, and what told them apart
    // is the CPU rustc named, not the word `native`.
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s), (0, UNITS), "{s}");
    let util = differences(&explained(&env), "rust util lib");
    let cpu = util
        .iter()
        .find(|(input, _, _)| input == "native-cpu")
        .unwrap_or_else(|| panic!("{util:?}"));
    assert!(cpu.1 != "native" && !cpu.1.is_empty(), "{cpu:?}");
    assert_eq!(cpu.2, "(none)", "{cpu:?}");
}

/// A proc-macro that expands to the value `FLAVOR` has while it runs,
/// used by the fixture's binary.
const FLAVOR_MACRO: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        "[workspace]\nmembers = [\"app\", \"util\", \"flavor\"]\nresolver = \"2\"\n",
    ),
    (
        "flavor/Cargo.toml",
        "[package]\nname = \"flavor\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\nproc-macro = true\n",
    ),
    (
        "flavor/src/lib.rs",
        "use proc_macro::TokenStream;\n\n#[proc_macro]\npub fn flavor(_: TokenStream) -> TokenStream {\n    let v = std::env::var(\"FLAVOR\").unwrap_or_else(|_| \"none\".to_string());\n    format!(\"{v:?}\").parse().unwrap()\n}\n",
    ),
    (
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nutil = { path = \"../util\" }\nflavor = { path = \"../flavor\" }\n",
    ),
    (
        "app/src/main.rs",
        "fn main() {\n    println!(\"{} {}\", util::greeting(), flavor::flavor!());\n}\n",
    ),
];

#[test]
fn a_variable_named_in_cachepot_key_env_keys_what_a_proc_macro_read() {
    let mut env = Env::new();
    // Every command (the builds, the statistics, stopping the daemon) has
    // the setting, so all reach the one daemon that keys FLAVOR.
    env.extra
        .push(("CACHEPOT_KEY_ENV".into(), "OTHER, FLAVOR".into()));
    let co = env.checkout_with("flavors", FLAVOR_MACRO);
    let units = UNITS + 1;
    env.build(&co, &[("FLAVOR", "vanilla")]);
    assert_eq!(run_app(&co), "hello 42 vanilla");
    assert_eq!(hits_misses(&env.stats()), (0, units));

    // rustc never hears of FLAVOR; the key does.
    let s = env.rebuild_fresh(&co, &[("FLAVOR", "mango")]);
    assert_eq!(run_app(&co), "hello 42 mango");
    assert_eq!(hits_misses(&s), (0, units), "{s}");
    let app = differences(&explained(&env), "rust app bin");
    assert!(
        app.contains(&("key-env:FLAVOR".into(), "=vanilla".into(), "=mango".into())),
        "{app:?}"
    );

    // Back to vanilla: the first build's entries, every one.
    let s = env.rebuild_fresh(&co, &[("FLAVOR", "vanilla")]);
    assert_eq!(hits_misses(&s), (units, 0), "{s}");
    assert_eq!(run_app(&co), "hello 42 vanilla");

    // Unset is a value of its own.
    let s = env.rebuild_fresh(&co, &[]);
    assert_eq!(hits_misses(&s).0, 0, "{s}");
    assert_eq!(run_app(&co), "hello 42 none");
}
