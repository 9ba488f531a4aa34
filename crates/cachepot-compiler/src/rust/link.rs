//! What a link read: the files named by rustc's `--print link-args`
//! output. On a miss of a linked crate the cache asks rustc for it (into a
//! private file) and puts every file the link read into the manifest, with
//! its digest: every crate linked in (dependencies of dependencies too),
//! native libraries found through `-L`, linker scripts and object files.

use std::path::{Path, PathBuf};

/// Splits the printed command into its arguments: the double-quoted
/// strings, without the environment assignments (`PATH="…"`) before the
/// program.
fn quoted_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if c != '"' {
            prev = c;
            continue;
        }
        let assignment = prev == '=';
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                '"' => break,
                c => s.push(c),
            }
        }
        prev = '"';
        if !assignment {
            out.push(s);
        }
    }
    out
}

/// The files a link read, from the text of `--print link-args`, in the
/// order named: every argument (and every comma-separated part of `-Wl,`
/// arguments, and every value after `=`) that names an existing file, and
/// `-l` libraries found in the `-L` directories of the command. Files under
/// `exclude` (the toolchain's own, keyed by its identity) and `outputs` are
/// left out, and so are temporary files that are gone once rustc is done.
pub fn link_inputs(
    text: &str,
    cwd: &Path,
    exclude: &[PathBuf],
    outputs: &[PathBuf],
    library_path: &[PathBuf],
) -> Vec<PathBuf> {
    let args = quoted_args(text);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut search: Vec<PathBuf> = Vec::new();
    let mut libs: Vec<String> = Vec::new();
    let add = |p: &str, files: &mut Vec<PathBuf>| {
        if p.is_empty() {
            return;
        }
        let path = cwd.join(p);
        if path.is_file()
            && !exclude.iter().any(|d| path.starts_with(d))
            && !outputs.contains(&path)
            && !files.contains(&path)
        {
            files.push(path);
        }
    };
    let mut i = 1; // args[0] is the linker program
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "-L" || a == "-l" {
            if let Some(v) = args.get(i) {
                if a == "-L" {
                    search.push(cwd.join(v));
                } else {
                    libs.push(v.clone());
                }
                i += 1;
            }
            continue;
        }
        if let Some(d) = a.strip_prefix("-L") {
            search.push(cwd.join(d));
            continue;
        }
        if let Some(l) = a.strip_prefix("-l") {
            libs.push(l.to_string());
            continue;
        }
        if let Some(list) = a.strip_prefix("-Wl,") {
            for part in list.split(',') {
                if let Some(d) = part.strip_prefix("-L").filter(|d| !d.is_empty()) {
                    search.push(cwd.join(d));
                }
                add(part, &mut files);
                if let Some((_, v)) = part.split_once('=') {
                    add(v, &mut files);
                }
            }
            continue;
        }
        add(a, &mut files);
        if let Some((_, v)) = a.split_once('=') {
            add(v, &mut files);
        }
    }
    // `LIBRARY_PATH` comes after the command's own directories, as in gcc.
    search.extend(library_path.iter().map(|d| cwd.join(d)));
    for lib in libs {
        let names = match lib.strip_prefix(':') {
            Some(exact) => vec![exact.to_string()],
            None => vec![format!("lib{lib}.so"), format!("lib{lib}.a")],
        };
        // The first directory that has the library: both its shared and
        // static forms are recorded (`-Bstatic` picks the latter).
        if let Some(dir) = search
            .iter()
            .find(|d| names.iter().any(|n| d.join(n).is_file()))
        {
            for n in &names {
                let p = dir.join(n);
                if p.is_file() {
                    add(&p.to_string_lossy(), &mut files);
                }
            }
        }
    }
    files
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_the_files_named_and_the_libraries_found() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "deps/liba-1.rlib",
            "sys/libstd-2.rlib",
            "native/libz.a",
            "link.x",
            "deps/app-1",
        ] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), f).unwrap();
        }
        let text = format!(
            r#"LC_ALL="C" PATH="/usr/bin:/bin" "cc" "-m64" "/tmp/rustcX/symbols.o" "app.app.1-cgu.0.rcgu.o" "{d}/deps/liba-1.rlib" "{d}/sys/libstd-2.rlib" "-L" "{d}/native" "-lz" "-lc" "-Wl,-T,link.x" "-o" "{d}/deps/app-1""#,
            d = d.display()
        );
        let inputs = link_inputs(&text, d, &[d.join("sys")], &[d.join("deps/app-1")], &[]);
        assert_eq!(
            inputs,
            vec![
                d.join("deps/liba-1.rlib"),
                d.join("link.x"),
                d.join("native/libz.a")
            ]
        );
    }

    #[test]
    fn escaped_quotes_stay_in_one_argument() {
        assert_eq!(
            quoted_args(r#"X="a b" "cc" "-Wl,--defsym=\"x\"" "y z""#),
            vec!["cc", "-Wl,--defsym=\"x\"", "y z"]
        );
    }
}
