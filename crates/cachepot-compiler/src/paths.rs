//! Path independence: absolute paths under base directories are replaced by
//! named tokens before hashing or storing, and tokens are replaced by this
//! build's directories when restoring.
//!
//! A token is `\0NAME\0` for a path written plainly, `\0NAME:j\0` for one
//! written JSON-escaped and `\0NAME:d\0` for one written dep-info-escaped
//! (spaces as `\ `). NUL never occurs in paths, compiler messages or
//! dep-info, so tokens cannot clash with real text.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::key::env_value;

/// One base directory with the name its token carries.
#[derive(Clone, Debug)]
struct Base {
    name: String,
    path: String,
}

/// What the paths embedded in a restored output may name. One policy for
/// rustc and the C compilers (`CACHEPOT_PATH_POLICY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PathPolicy {
    /// Entries are shared across checkouts, `CARGO_HOME`s and target
    /// directories: paths under base directories are keyed relative to
    /// them, and the absolute paths an output embeds (debug info's
    /// compilation directory and source names, `file!()` and panic
    /// locations of crates outside the working directory) are those of the
    /// build that stored it. Paths that change what an output does (a
    /// `.gcda` or `.dwo` path) are keyed in both policies.
    #[default]
    Share,
    /// Every base directory's absolute path is keyed too: an output always
    /// names this checkout's own paths, and only identical layouts share.
    Exact,
}

impl PathPolicy {
    /// Parses `share` or `exact`.
    pub fn parse(text: &str) -> Option<PathPolicy> {
        match text.trim().to_ascii_lowercase().as_str() {
            "share" => Some(PathPolicy::Share),
            "exact" => Some(PathPolicy::Exact),
            _ => None,
        }
    }
}

/// The base directories of one compile, longest first, and the path
/// policy keys follow.
#[derive(Clone, Debug, Default)]
pub struct BaseDirs {
    bases: Vec<Base>,
    policy: PathPolicy,
}

/// How a path is written in the text being rewritten.
#[derive(Clone, Copy)]
enum Escape {
    Plain,
    Json,
    DepInfo,
}

impl Escape {
    const ALL: [Escape; 3] = [Escape::Plain, Escape::Json, Escape::DepInfo];

    fn suffix(self) -> &'static str {
        match self {
            Escape::Plain => "",
            Escape::Json => ":j",
            Escape::DepInfo => ":d",
        }
    }

    fn apply(self, path: &str) -> String {
        match self {
            Escape::Plain => path.to_string(),
            Escape::Json => json_escape(path),
            Escape::DepInfo => path.replace(' ', "\\ "),
        }
    }
}

/// Escapes a string the way JSON writers do (without the quotes).
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Bytes that continue a path component: a base only matches where the
/// text around it does not continue the path.
fn continues_path(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~' | b'@')
}

impl BaseDirs {
    /// Builds the set from `(name, path)` pairs. Paths that are not absolute,
    /// are the root directory, or are not valid UTF-8 are skipped; trailing
    /// slashes are removed; of two bases with the same path the first wins.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Path)>) -> BaseDirs {
        let mut bases: Vec<Base> = Vec::new();
        for (name, path) in pairs {
            let Some(text) = path.to_str() else { continue };
            let text = text.trim_end_matches('/');
            if !path.is_absolute() || text.is_empty() || text.contains('\0') {
                continue;
            }
            if bases.iter().any(|b| b.path == text || b.name == name) {
                continue;
            }
            bases.push(Base {
                name: name.to_string(),
                path: text.to_string(),
            });
        }
        bases.sort_by_key(|b| std::cmp::Reverse(b.path.len()));
        BaseDirs {
            bases,
            policy: PathPolicy::Share,
        }
    }

    /// The same directories under `policy`.
    pub fn with_policy(mut self, policy: PathPolicy) -> BaseDirs {
        self.policy = policy;
        self
    }

    /// The path policy keys follow.
    pub fn policy(&self) -> PathPolicy {
        self.policy
    }

    /// Under [`PathPolicy::Exact`], adds every base directory's absolute
    /// path to a key (`path:<name>`); nothing under `Share`.
    pub fn key_exact_paths(&self, k: &mut crate::key::KeyBuilder) {
        if self.policy == PathPolicy::Exact {
            for b in &self.bases {
                k.add(&format!("path:{}", b.name), b.path.as_bytes());
            }
        }
    }

    /// The names and paths, longest path first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.bases
            .iter()
            .map(|b| (b.name.as_str(), b.path.as_str()))
    }

    /// Replaces every occurrence of a base directory in `text` by its token.
    /// Plain, JSON-escaped and dep-info-escaped spellings are all found.
    pub fn normalize(&self, text: &[u8]) -> Vec<u8> {
        let mut patterns: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for base in &self.bases {
            for esc in Escape::ALL {
                let spelled = esc.apply(&base.path).into_bytes();
                if patterns.iter().any(|(p, _)| *p == spelled) {
                    continue;
                }
                let token = format!("\0{}{}\0", base.name, esc.suffix()).into_bytes();
                patterns.push((spelled, token));
            }
        }
        // Longest spelling first so that a nested base wins over its parent.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        replace_bounded(text, &patterns)
    }

    /// Normalises a string (see [`BaseDirs::normalize`]).
    pub fn normalize_str(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.normalize(text.as_bytes())).into_owned()
    }

    /// Replaces every token in `text` by this set's directory, spelled as the
    /// token says. Returns `None` if a token names a base this set lacks.
    pub fn restore(&self, text: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() + 64);
        let mut rest = text;
        while let Some(start) = rest.iter().position(|&b| b == 0) {
            out.extend_from_slice(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.iter().position(|&b| b == 0)?;
            let token = std::str::from_utf8(&after[..end]).ok()?;
            let (name, esc) = match token.strip_suffix(":j") {
                Some(n) => (n, Escape::Json),
                None => match token.strip_suffix(":d") {
                    Some(n) => (n, Escape::DepInfo),
                    None => (token, Escape::Plain),
                },
            };
            let base = self.bases.iter().find(|b| b.name == name)?;
            out.extend_from_slice(esc.apply(&base.path).as_bytes());
            rest = &after[end + 1..];
        }
        out.extend_from_slice(rest);
        Some(out)
    }

    /// Restores a string (see [`BaseDirs::restore`]).
    pub fn restore_str(&self, text: &str) -> Option<String> {
        String::from_utf8(self.restore(text.as_bytes())?).ok()
    }

    /// Restores a normalised path and makes it absolute against `cwd`.
    pub fn restore_path(&self, text: &str, cwd: &Path) -> Option<PathBuf> {
        let restored = self.restore_str(text)?;
        Some(cwd.join(restored))
    }
}

/// Replaces each pattern where it stands as a whole path prefix: the byte
/// before is not part of a path and the byte after is `/` or not part of a path.
fn replace_bounded(text: &[u8], patterns: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < text.len() {
        if text[i] == b'/' && (i == 0 || !continues_path(text[i - 1]) && text[i - 1] != b'/') {
            for (pat, token) in patterns {
                if text[i..].starts_with(pat) {
                    let end = i + pat.len();
                    if end == text.len() || !continues_path(text[end]) {
                        out.extend_from_slice(token);
                        i = end;
                        continue 'outer;
                    }
                }
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// The base directories every compile has: the working directory,
/// `CARGO_HOME` (or `~/.cargo`), cargo's target directory when known, and
/// the configured ones, named `base0`, `base1`, ….
pub fn standard_bases(
    cwd: &Path,
    env: &[(OsString, OsString)],
    target_dir: Option<PathBuf>,
    configured: &[PathBuf],
) -> BaseDirs {
    let cargo_home = env_value(env, "CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env_value(env, "HOME").map(|h| Path::new(&h).join(".cargo")));
    let mut pairs: Vec<(String, PathBuf)> = vec![("cwd".into(), cwd.to_path_buf())];
    if let Some(t) = target_dir {
        pairs.push(("target".into(), t));
    }
    if let Some(h) = cargo_home {
        pairs.push(("cargo_home".into(), h));
    }
    for (i, b) in configured.iter().enumerate() {
        pairs.push((format!("base{i}"), b.clone()));
    }
    BaseDirs::new(pairs.iter().map(|(n, p)| (n.as_str(), p.as_path())))
}

/// Walks up from a directory inside cargo's target directory (an output
/// directory, `OUT_DIR`) to the one holding cargo's `CACHEDIR.TAG`.
pub fn find_target_dir(inside: &Path) -> Option<PathBuf> {
    inside
        .ancestors()
        .take(6)
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bases(cwd: &str, target: &str, home: &str) -> BaseDirs {
        BaseDirs::new([
            ("cwd", Path::new(cwd)),
            ("target", Path::new(target)),
            ("cargo_home", Path::new(home)),
        ])
    }

    #[test]
    fn nested_base_wins_and_round_trips_into_another_checkout() {
        let a = bases("/a/proj", "/a/proj/target", "/home/a/.cargo");
        let b = bases("/b/work/proj", "/b/work/proj/target", "/home/b/.cargo");
        let text =
            b"-L dependency=/a/proj/target/debug/deps /a/proj/src/lib.rs /home/a/.cargo/registry/x";
        let n = a.normalize(text);
        assert_eq!(
            n,
            b"-L dependency=\0target\0/debug/deps \0cwd\0/src/lib.rs \0cargo_home\0/registry/x"
                .to_vec()
        );
        assert_eq!(
            b.restore(&n).unwrap(),
            b"-L dependency=/b/work/proj/target/debug/deps /b/work/proj/src/lib.rs /home/b/.cargo/registry/x"
                .to_vec()
        );
    }

    #[test]
    fn only_whole_components_match() {
        let a = bases("/a/proj", "/a/proj/target", "/h");
        assert_eq!(
            a.normalize_str("/a/project/x /x/a/proj"),
            "/a/project/x /x/a/proj"
        );
        assert_eq!(a.normalize_str("\"/a/proj\""), "\"\0cwd\0\"");
        assert_eq!(a.normalize_str("/a/proj:3:1"), "\0cwd\0:3:1");
    }

    #[test]
    fn escaped_spellings_keep_their_escaping() {
        let a = bases("/a/my dir", "/a/my dir/t", "/h");
        let b = bases("/b/other place", "/b/other place/t", "/h");
        let depinfo = b"/a/my\\ dir/t/x.d: src/lib.rs /a/my\\ dir/src/m.rs\n";
        let n = a.normalize(depinfo);
        assert!(!n.windows(2).any(|w| w == b"my"));
        assert_eq!(
            b.restore(&n).unwrap(),
            b"/b/other\\ place/t/x.d: src/lib.rs /b/other\\ place/src/m.rs\n".to_vec()
        );
    }

    #[test]
    fn root_and_relative_bases_are_ignored() {
        let a = BaseDirs::new([("cwd", Path::new("/")), ("x", Path::new("rel"))]);
        assert_eq!(a.iter().count(), 0);
        assert_eq!(a.normalize_str("/usr/lib"), "/usr/lib");
    }

    #[test]
    fn unknown_token_fails_restore() {
        let a = bases("/a", "/a/t", "/h");
        assert!(a.restore(b"\0nope\0/x").is_none());
        assert!(a.restore(b"\0cwd").is_none());
    }
}
