//! `cachepot --explain`: each miss names the inputs that differ from the
//! closest compile stored for its unit.

#![allow(clippy::unwrap_used)]

use crate::harness::Env;

/// The explained misses, as JSON.
pub(crate) fn explained(env: &Env) -> Vec<serde_json::Value> {
    let out = env.cachepot(&["--explain", "--stats-format", "json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The differences of the first explained miss whose unit contains `unit`.
pub(crate) fn differences(list: &[serde_json::Value], unit: &str) -> Vec<(String, String, String)> {
    let e = list
        .iter()
        .find(|e| e["unit"].as_str().unwrap().contains(unit))
        .unwrap_or_else(|| panic!("no miss of {unit} in {list:?}"));
    assert_eq!(e["stored_before"], true, "{e}");
    e["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("(none)").to_string();
            (s(&d["input"]), s(&d["stored"]), s(&d["now"]))
        })
        .collect()
}

#[test]
fn misses_name_the_source_the_env_var_and_the_dependency_that_changed() {
    let env = Env::new();
    let co = env.checkout("explain");
    env.build(&co, &[]);
    env.stop();
    // A source edit, an env var the crate reads, and (for the app) its
    // dependency's new content.
    let shout = co.ws.join("util/src/shout.rs");
    let text = std::fs::read_to_string(&shout).unwrap();
    std::fs::write(&shout, format!("{text}\n// edited\n")).unwrap();
    std::fs::remove_dir_all(&co.target).unwrap();
    env.zero();
    env.build(&co, &[("FIXTURE_GREETING", "salut")]);
    let list = explained(&env);
    // util's build script declares no file: any file of its package
    // reruns it, as cargo would.
    assert_eq!(list.len(), 3, "{list:?}");
    let script = differences(&list, "build-script util");
    assert_eq!(script.len(), 1, "{script:?}");
    assert!(
        script[0].0 == "file:./" && script[0].1 != script[0].2,
        "{script:?}"
    );
    let util = differences(&list, "rust util lib");
    assert!(
        util.iter()
            .any(|(i, old, new)| i == "file:util/src/shout.rs" && old != new),
        "{util:?}"
    );
    assert!(
        util.contains(&(
            "env-dep:FIXTURE_GREETING".into(),
            "(unset)".into(),
            "salut".into()
        )),
        "{util:?}"
    );
    let app = differences(&list, "rust app bin");
    assert!(
        app.iter()
            .any(|(i, _, _)| i.starts_with("extern:") && i.ends_with(":util")),
        "{app:?}"
    );
    // A flag: the argument that is new.
    env.stop();
    env.zero();
    env.build(&co, &[("RUSTFLAGS", "--cfg=explained")]);
    let list = explained(&env);
    let itoa = differences(&list, "rust itoa lib");
    assert!(
        itoa.contains(&("arg".into(), "(none)".into(), "--cfg=explained".into())),
        "{itoa:?}"
    );
    // Text too; zeroing the statistics forgets the explained misses.
    let text = env.cachepot(&["--explain"]);
    assert!(text.contains("miss: rust itoa lib"), "{text}");
    env.zero();
    assert!(env.cachepot(&["--explain"]).contains("No misses"));
}
