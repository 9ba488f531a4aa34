//! Reading Makefile-style dependency files (`--emit=dep-info`, `-MD`).
//!
//! Only what the cache needs: the files a compile read, and the
//! environment variables rustc recorded with `# env-dep:NAME=VALUE`.

/// What a dep-info file says a compile read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DepInfo {
    /// Every prerequisite path, once each, in first-seen order, unescaped.
    pub files: Vec<String>,
    /// `env-dep` records: name, and the value as rustc escaped it (`None` if
    /// the variable was unset).
    pub env: Vec<(String, Option<String>)>,
}

/// Parses a dep-info file. Targets (the outputs) are not listed in `files`;
/// every prerequisite is, including those that are also written again as
/// phony `path:` rules.
pub fn parse(text: &str) -> DepInfo {
    let mut info = DepInfo::default();
    let mut targets: Vec<String> = Vec::new();
    let mut deps: Vec<String> = Vec::new();
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        if let Some(rest) = line.strip_prefix("# env-dep:") {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (rest, None),
            };
            if !info.env.iter().any(|(n, _)| n == name) {
                info.env.push((name.to_string(), value));
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(colon) = find_rule_colon(line) else {
            continue;
        };
        let rule_deps = split_paths(&line[colon + 1..]);
        if !rule_deps.is_empty() {
            // Targets of rules with prerequisites are outputs; a target with
            // none is a prerequisite listed again as a phony rule.
            targets.extend(split_paths(&line[..colon]));
        }
        deps.extend(rule_deps);
    }
    for d in deps {
        if !info.files.contains(&d) && !targets.contains(&d) {
            info.files.push(d);
        }
    }
    info
}

/// The colon that separates targets from prerequisites: the first one that
/// is not escaped and is followed by a space or the end of the line.
fn find_rule_colon(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Splits a space-separated list of paths in which spaces inside a path are
/// written `\ ` (and `#` as `\#`).
fn split_paths(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(' ') | Some('#') | Some('\\')) => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ' ' | '\t' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Escapes a path as dep-info writes it.
pub fn escape_path(p: &str) -> String {
    p.replace('\\', "\\\\")
        .replace(' ', "\\ ")
        .replace('#', "\\#")
}

/// Escapes an environment value the way rustc writes it after `env-dep:`.
pub fn escape_env_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUSTC_DEPINFO: &str = "/t/debug/deps/libfoo-1.rmeta: src/lib.rs src/a\\ b.rs /reg/x.rs\n\n\
/t/debug/deps/foo-1.d: src/lib.rs src/a\\ b.rs /reg/x.rs\n\nsrc/lib.rs:\nsrc/a\\ b.rs:\n/reg/x.rs:\n\n\
# env-dep:CARGO_PKG_NAME=foo\n# env-dep:OPT\n# env-dep:MULTI=a\\nb\n";

    #[test]
    fn rustc_depinfo_lists_sources_and_env() {
        let d = parse(RUSTC_DEPINFO);
        assert_eq!(d.files, vec!["src/lib.rs", "src/a b.rs", "/reg/x.rs"]);
        assert_eq!(
            d.env,
            vec![
                ("CARGO_PKG_NAME".to_string(), Some("foo".to_string())),
                ("OPT".to_string(), None),
                ("MULTI".to_string(), Some("a\\nb".to_string())),
            ]
        );
    }

    #[test]
    fn gcc_style_continuations_and_outputs_are_not_inputs() {
        let d = parse("obj.o: a.c \\\n b.h c.h\n");
        // Continuation lines: the backslash-newline is a separator.
        assert!(d.files.contains(&"a.c".to_string()));
        assert!(!d.files.contains(&"obj.o".to_string()));
    }

    #[test]
    fn env_values_escape_like_rustc() {
        assert_eq!(escape_env_value("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(escape_path("a b#c"), "a\\ b\\#c");
    }
}
