//! What a C source or header holds that the cache must know of, found by
//! scanning its text (the daemon memoises the answer by content digest).

/// The scan's findings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentFlags {
    /// `__DATE__`, `__TIME__` or `__TIMESTAMP__`: direct mode is off.
    pub time_macros: bool,
    /// `.incbin` (in assembler or inline asm): the assembler reads a file
    /// no dependency file or preprocessor output names.
    pub incbin: bool,
    /// `.include` (assembler's own include).
    pub asm_include: bool,
}

impl ContentFlags {
    /// Scans a file's text.
    pub fn of(text: &[u8]) -> ContentFlags {
        ContentFlags {
            time_macros: has_time_macros(text),
            incbin: contains(text, b".incbin"),
            asm_include: contains(text, b".include"),
        }
    }
}

/// Whether a source or header uses a macro whose value changes while the
/// files do not, which rules out direct mode.
pub fn has_time_macros(text: &[u8]) -> bool {
    [b"__DATE__".as_slice(), b"__TIME__", b"__TIMESTAMP__"]
        .iter()
        .any(|name| contains(text, name))
}

/// Whether `needle` (non-empty) occurs in `text`: a scan for its first
/// byte, then a comparison.
fn contains(text: &[u8], needle: &[u8]) -> bool {
    let mut rest = text;
    while let Some(pos) = rest.iter().position(|b| *b == needle[0]) {
        if rest[pos..].starts_with(needle) {
            return true;
        }
        rest = &rest[pos + 1..];
    }
    false
}
