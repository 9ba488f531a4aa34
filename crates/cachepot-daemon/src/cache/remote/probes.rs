//! What a C file asks of the file system besides what it includes:
//! `__has_include("name")` is true on the worker only if the file is
//! there, and no dependency list names the files it asked about. The
//! scanner reads the text as the preprocessor tokenizes it (comments and
//! line continuations out) and refuses every form it cannot answer: a
//! probe of a macro, `__has_include` used as a macro's value, and
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

/// Whether the identifier ending at `end` in `line` is `defined`, or the
/// line is `#ifdef`/`#ifndef`: a test of whether the compiler has
/// `__has_include`, not a probe.
fn tests_presence(line: &[u8], start: usize) -> bool {
    let before = String::from_utf8_lossy(&line[..start]);
    let before = before.trim_end().trim_end_matches('(').trim_end();
    let directive: String = before.chars().filter(|c| !c.is_whitespace()).collect();
    before.ends_with("defined") || directive == "#ifdef" || directive == "#ifndef"
}

/// The names a file asks `__has_include` and `__has_include_next` for;
/// an error for a form whose answer cannot be known here.
pub(super) fn probes(text: &[u8]) -> Result<Vec<Probe>, String> {
    if memchr::memmem::find(text, b"__has_").is_none()
        && memchr::memmem::find(text, b"embed").is_none()
    {
        return Ok(Vec::new());
    }
    let text = tokens_text(text);
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let directive: Vec<u8> = line
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if directive.starts_with(b"#embed") {
            return Err("#embed".into());
        }
        let mut at = 0;
        while let Some(found) = memchr::memmem::find(&line[at..], b"__has_") {
            let start = at + found;
            let mut end = start;
            while end < line.len() && is_ident(line[end]) {
                end += 1;
            }
            at = end;
            if start > 0 && is_ident(line[start - 1]) {
                continue;
            }
            let name = &line[start..end];
            if name == b"__has_embed" {
                return Err("__has_embed".into());
            }
            if name != b"__has_include" && name != b"__has_include_next" {
                continue;
            }
            let mut i = end;
            let skip = |mut i: usize| {
                while line.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
                    i += 1;
                }
                i
            };
            i = skip(i);
            if line.get(i) != Some(&b'(') {
                if tests_presence(line, start) {
                    continue;
                }
                return Err(format!(
                    "{} used other than as a call",
                    String::from_utf8_lossy(name)
                ));
            }
            i = skip(i + 1);
            let close = match line.get(i) {
                Some(b'<') => b'>',
                Some(b'"') => b'"',
                _ => {
                    return Err(format!(
                        "{} of a macro: {}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(&line[start..line.len().min(start + 60)])
                    ))
                }
            };
            let rest = &line[i + 1..];
            let Some(len) = rest.iter().position(|b| *b == close) else {
                return Err("__has_include without its end".into());
            };
            out.push(Probe {
                name: String::from_utf8_lossy(&rest[..len]).into_owned(),
                quoted: close == b'"',
            });
        }
    }
    Ok(out)
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

    #[test]
    fn probes_are_read_as_the_preprocessor_reads_them() {
        let text = b"#ifdef __has_include\n/* __has_include argument */\n\
            #if defined(__has_include) && __has_include (\"linux/x.h\") && __has_include_next(<stdint.h>)\n\
            #define T __has_include(<tbb/tbb.h>)\n#endif\n\
            #if __has_include /* c */ (<a.h>)\n#endif\n\
            #if __has_include \\\n(<b.h>)\n#endif\n\
            const char *s = \"/* not a comment\"; // __has_include(x)\n";
        assert_eq!(
            probes(text).unwrap(),
            [
                probe("linux/x.h", true),
                probe("stdint.h", false),
                probe("tbb/tbb.h", false),
                probe("a.h", false),
                probe("b.h", false),
            ]
        );
        assert!(probes(b"int x;").unwrap().is_empty());
        assert!(probes(b"#ifndef __has_include\n#endif\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn forms_that_cannot_be_answered_here_are_refused() {
        for text in [
            "#define H(x) __has_include(x)\n",
            "#define XXH_HAS_INCLUDE __has_include\n",
            "#if __has_embed(\"x.bin\")\n#endif\n",
            "static const char d[] = {\n#embed \"x.bin\"\n};\n",
            "#  embed <x.bin>\n",
        ] {
            assert!(probes(text.as_bytes()).is_err(), "{text}");
        }
    }
}
