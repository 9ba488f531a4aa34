//! What a build script's standard output tells cargo (`cargo:KEY=VALUE`
//! and, since Rust 1.77, `cargo::KEY=VALUE`), as far as the cache needs it.

/// The directives of one run that decide its manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// `rerun-if-changed` paths (relative to the package directory, or
    /// absolute), in order.
    pub rerun_if_changed: Vec<String>,
    /// `rerun-if-env-changed` variable names, in order.
    pub rerun_if_env_changed: Vec<String>,
    /// `rustc-link-search` directories, without their `KIND=`.
    pub link_search: Vec<String>,
    /// `rustc-link-lib` library names, without `KIND=`, modifiers or a
    /// rename.
    pub link_libs: Vec<String>,
}

/// Reads the directives from a run's standard output.
pub fn parse(stdout: &[u8]) -> Directives {
    let mut d = Directives::default();
    for line in String::from_utf8_lossy(stdout).lines() {
        let Some(rest) = line
            .strip_prefix("cargo::")
            .or_else(|| line.strip_prefix("cargo:"))
        else {
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            continue;
        };
        let value = value.trim_end_matches('\r');
        match key {
            "rerun-if-changed" => d.rerun_if_changed.push(value.to_string()),
            "rerun-if-env-changed" => d.rerun_if_env_changed.push(value.to_string()),
            "rustc-link-search" => d.link_search.push(without_kind(value).to_string()),
            "rustc-link-lib" => {
                // `[KIND[:MODIFIERS]=]NAME[:RENAME]`
                let name = without_kind(value);
                let name = name.split(':').next().unwrap_or(name);
                if !name.is_empty() {
                    d.link_libs.push(name.to_string());
                }
            }
            _ => {}
        }
    }
    d
}

/// `native=/x` → `/x`; a value without a kind is returned as it is.
fn without_kind(value: &str) -> &str {
    match value.split_once('=') {
        Some((kind, rest)) if !kind.contains('/') => rest,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_and_kinds_are_read() {
        let out = b"noise\ncargo:rerun-if-changed=build.rs\ncargo::rerun-if-changed=src/x.c\r\n\
cargo:rerun-if-env-changed=CC\ncargo:rustc-link-search=native=/o/lib\ncargo:rustc-link-search=/p\n\
cargo:rustc-link-lib=static:+whole-archive=foo\ncargo::rustc-link-lib=dylib=z:zz\ncargo:rustc-link-lib=m\n\
cargo:warning=hi=there\n";
        let d = parse(out);
        assert_eq!(d.rerun_if_changed, ["build.rs", "src/x.c"]);
        assert_eq!(d.rerun_if_env_changed, ["CC"]);
        assert_eq!(d.link_search, ["/o/lib", "/p"]);
        assert_eq!(d.link_libs, ["foo", "z", "m"]);
    }
}
