//! `@file` arguments of gcc and clang: a response file holds more
//! arguments, split as both compilers split them on Unix (libiberty's
//! `buildargv`, LLVM's GNU tokenizer): whitespace separates arguments
//! outside quotes, `'…'` and `"…"` group, and a backslash takes the next
//! character as it is, inside quotes too.

/// Splits the text of a response file into arguments. Returns `None`
/// when a quote is not closed (the compilers disagree on what that means).
pub fn split(text: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut arg = String::new();
    let mut in_arg = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => {
                // A trailing backslash is dropped by both.
                if let Some(next) = chars.next() {
                    arg.push(next);
                }
                in_arg = true;
            }
            (c, Some(q)) if c == q => quote = None,
            (c, Some(_)) => arg.push(c),
            ('\'' | '"', None) => {
                quote = Some(c);
                in_arg = true;
            }
            (c, None) if c.is_whitespace() => {
                if in_arg {
                    args.push(std::mem::take(&mut arg));
                    in_arg = false;
                }
            }
            (c, None) => {
                arg.push(c);
                in_arg = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_arg {
        args.push(arg);
    }
    Some(args)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::split;

    #[test]
    fn quotes_and_backslashes_group_as_in_gcc() {
        // As CMake writes them for long command lines (`-DX="a b"`), and
        // as meson quotes paths with spaces.
        let text = "-c  -DMSG=\"\\\"hello world\\\"\"\n-I'/src/my dir' a\\ b.c\t-o out.o ''\n";
        assert_eq!(
            split(text).unwrap(),
            [
                "-c",
                "-DMSG=\"hello world\"",
                "-I/src/my dir",
                "a b.c",
                "-o",
                "out.o",
                "",
            ]
        );
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert_eq!(split("-c 'open").as_deref(), None);
    }
}
