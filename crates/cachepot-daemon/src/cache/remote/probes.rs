//! What a C file asks of the file system besides what it includes:
//! `__has_include("name")` is true on the worker only if the file is
//! there, and no dependency list names the files it asked about. The
//! scanner reads the text as the preprocessor tokenizes it (comments and
//! line continuations out), follows object-like aliases
//! (`#define XXH_HAS_INCLUDE __has_include`), and refuses every form it
//! cannot answer: a probe of a macro, a function-like wrapper, and
//! `__has_embed` and `#embed`, which read files the dependency list may
//! not name.

/// A name `__has_include` asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Probe {
    pub name: String,
    /// `"name"` (looked for beside the asking file too) or `<name>`.
    pub quoted: bool,
}

/// `text` without comments and line continuations, string and character
/// literals kept: one directive per line, as the preprocessor sees it.
fn tokens_text(text: &[u8]) -> Vec<u8> {
    let mut joined = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\' && text.get(i + 1) == Some(&b'\n') {
            i += 2;
        } else if text[i] == b'\\' && text[i + 1..].starts_with(b"\r\n") {
            i += 3;
        } else {
            joined.push(text[i]);
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(joined.len());
    let mut i = 0;
    while i < joined.len() {
        let rest = &joined[i..];
        if rest.starts_with(b"/*") {
            let end = memchr::memmem::find(&rest[2..], b"*/").map_or(joined.len(), |e| i + e + 4);
            out.push(b' ');
            i = end;
        } else if rest.starts_with(b"//") {
            i += rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        } else if rest[0] == b'"' || rest[0] == b'\'' {
            let quote = rest[0];
            out.push(quote);
            i += 1;
            while i < joined.len() && joined[i] != b'\n' {
                out.push(joined[i]);
                if joined[i] == b'\\' && i + 1 < joined.len() {
                    out.push(joined[i + 1]);
                    i += 2;
                    continue;
                }
                i += 1;
                if joined[i - 1] == quote {
                    break;
                }
            }
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether the identifier at `start` in `line` follows `defined`, or the
/// line is `#ifdef`/`#ifndef`: a test of whether the name exists, not a
/// probe.
fn tests_presence(line: &[u8], start: usize) -> bool {
    let before = String::from_utf8_lossy(&line[..start]);
    let before = before.trim_end().trim_end_matches('(').trim_end();
    let directive: String = before.chars().filter(|c| !c.is_whitespace()).collect();
    before.ends_with("defined") || directive == "#ifdef" || directive == "#ifndef"
}

/// Whether the identifier at `start` is the name a `#define` or `#undef`
/// line defines (`#define XXH_HAS_INCLUDE(x) 0`): not a use.
fn is_defined_here(line: &[u8], start: usize) -> bool {
    let before: Vec<u8> = line[..start]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    before == b"#define" || before == b"#undef"
}

/// `#define ALIAS NAME`, exactly: the alias, if `line` is one.
fn alias_of(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let rest = text.trim_start().strip_prefix('#')?.trim_start();
    let rest = rest.strip_prefix("define")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        [alias, _] if alias.bytes().all(is_ident) => Some(alias.to_string()),
        _ => None,
    }
}

/// What a file asks through the probe names it was scanned for.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub probes: Vec<Probe>,
    /// Object-like macros that stand for a probe name (xxHash's
    /// `#define XXH_HAS_INCLUDE __has_include`): their calls are probes
    /// too, in any file.
    pub aliases: Vec<String>,
}

/// The built-in probe names.
pub(super) const PROBE_NAMES: [&str; 2] = ["__has_include", "__has_include_next"];

/// The names a file asks through `names` (the built-in ones, or aliases
/// found in earlier scans); an error for a form whose answer cannot be
/// known here.
pub(super) fn probes(text: &[u8], names: &[String]) -> Result<Scan, String> {
    let mentions = |n: &[u8]| memchr::memmem::find(text, n).is_some();
    if !mentions(b"embed") && !names.iter().any(|n| mentions(n.as_bytes())) {
        return Ok(Scan::default());
    }
    let text = tokens_text(text);
    let mut scan = Scan::default();
    for line in text.split(|b| *b == b'\n') {
        let directive: Vec<u8> = line
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if directive.starts_with(b"#embed") {
            return Err("#embed".into());
        }
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if b == b'"' || b == b'\'' {
                // A literal: skip it whole.
                i += 1;
                while i < line.len() && line[i] != b {
                    i += if line[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            if !(b.is_ascii_alphabetic() || b == b'_') || (i > 0 && is_ident(line[i - 1])) {
                i += 1;
                continue;
            }
            let start = i;
            while i < line.len() && is_ident(line[i]) {
                i += 1;
            }
            let name = &line[start..i];
            if name == b"__has_embed" {
                return Err("__has_embed".into());
            }
            if !names.iter().any(|n| n.as_bytes() == name) || is_defined_here(line, start) {
                continue;
            }
            if let Some(probe) = call(line, start, i)? {
                scan.probes.push(probe);
            } else if tests_presence(line, start) {
            } else if let Some(alias) = alias_of(line) {
                scan.aliases.push(alias);
            } else {
                return Err(format!(
                    "{} used other than as a call",
                    String::from_utf8_lossy(name)
                ));
            }
        }
    }
    Ok(scan)
}

/// The probe of a call of the name at `start..end`: `None` when no `(`
/// follows; an error when its argument is not written out.
fn call(line: &[u8], start: usize, end: usize) -> Result<Option<Probe>, String> {
    let skip = |mut i: usize| {
        while line.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        i
    };
    let i = skip(end);
    if line.get(i) != Some(&b'(') {
        return Ok(None);
    }
    let i = skip(i + 1);
    let close = match line.get(i) {
        Some(b'<') => b'>',
        Some(b'"') => b'"',
        _ => {
            return Err(format!(
                "a probe of a macro: {}",
                String::from_utf8_lossy(&line[start..line.len().min(start + 60)])
            ))
        }
    };
    let rest = &line[i + 1..];
    let Some(len) = rest.iter().position(|b| *b == close) else {
        return Err("a probe without its end".into());
    };
    Ok(Some(Probe {
        name: String::from_utf8_lossy(&rest[..len]).into_owned(),
        quoted: close == b'"',
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn probe(name: &str, quoted: bool) -> Probe {
        Probe {
            name: name.into(),
            quoted,
        }
    }

    fn builtin() -> Vec<String> {
        PROBE_NAMES.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn probes_are_read_as_the_preprocessor_reads_them() {
        let text = b"#ifdef __has_include\n/* __has_include argument */\n\
            #if defined(__has_include) && __has_include (\"linux/x.h\") && __has_include_next(<stdint.h>)\n\
            #define T __has_include(<tbb/tbb.h>)\n#endif\n\
            #if __has_include /* c */ (<a.h>)\n#endif\n\
            #if __has_include \\\n(<b.h>)\n#endif\n\
            const char *s = \"/* __has_include(x)\"; // __has_include(x)\n";
        let scan = probes(text, &builtin()).unwrap();
        assert_eq!(
            scan.probes,
            [
                probe("linux/x.h", true),
                probe("stdint.h", false),
                probe("tbb/tbb.h", false),
                probe("a.h", false),
                probe("b.h", false),
            ]
        );
        assert!(scan.aliases.is_empty());
        assert!(probes(b"int x;", &builtin()).unwrap().probes.is_empty());
        let presence = probes(b"#ifndef __has_include\n#endif\n", &builtin()).unwrap();
        assert!(presence.probes.is_empty());
    }

    #[test]
    fn an_alias_is_followed_in_any_file() {
        // xxHash's form.
        let header = b"#ifndef XXH_HAS_INCLUDE\n#  ifdef __has_include\n\
            #    define XXH_HAS_INCLUDE __has_include\n#  else\n\
            #    define XXH_HAS_INCLUDE(x) 0\n#  endif\n#endif\n";
        let scan = probes(header, &builtin()).unwrap();
        assert_eq!(scan.aliases, ["XXH_HAS_INCLUDE"]);
        let user = b"#if defined(X) && XXH_HAS_INCLUDE(<arm_neon.h>)\n#endif\n";
        let alias = ["XXH_HAS_INCLUDE".to_string()];
        let scan = probes(user, &alias).unwrap();
        assert_eq!(scan.probes, [probe("arm_neon.h", false)]);
        // The header itself, scanned for the alias: its definitions are
        // not uses.
        let scan = probes(header, &alias).unwrap();
        assert!(scan.probes.is_empty());
    }

    #[test]
    fn forms_that_cannot_be_answered_here_are_refused() {
        for text in [
            "#define H(x) __has_include(x)\n",
            "#define H __has_include __extension__\n",
            "int h = __has_include;\n",
            "#if __has_embed(\"x.bin\")\n#endif\n",
            "static const char d[] = {\n#embed \"x.bin\"\n};\n",
            "#  embed <x.bin>\n",
        ] {
            assert!(probes(text.as_bytes(), &builtin()).is_err(), "{text}");
        }
    }
}
