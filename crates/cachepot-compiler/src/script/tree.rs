//! Directory trees a build script depends on: a `rerun-if-changed`
//! directory, or its whole package when it declares no file. Walked as
//! cargo's package listing would be: `.git`, cargo's target directory
//! (it holds `CACHEDIR.TAG`) and nested packages (a `Cargo.toml` below the
//! top) are left out.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, FileDigester};

/// More files than this in one tree: not digested (the run is not stored).
pub const MAX_TREE_FILES: usize = 50_000;

/// One entry of a walked tree.
enum Node {
    File(PathBuf, std::fs::Metadata),
    Link(PathBuf),
    Dir,
}

/// Walks `root` in name order, calling `visit` with each entry's path
/// relative to `root`.
fn walk(root: &Path, visit: &mut dyn FnMut(&Path, Node) -> io::Result<()>) -> io::Result<()> {
    let mut count = 0usize;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            count += 1;
            if count > MAX_TREE_FILES {
                return Err(io::Error::other(format!(
                    "more than {MAX_TREE_FILES} files under {}",
                    root.display()
                )));
            }
            let name = e.file_name();
            let path = e.path();
            let child = rel.join(&name);
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                let skipped = name.as_bytes() == b".git"
                    || path.join("CACHEDIR.TAG").exists()
                    || path.join("Cargo.toml").exists();
                if !skipped {
                    visit(&child, Node::Dir)?;
                    subdirs.push(child);
                }
            } else if meta.file_type().is_symlink() {
                visit(&child, Node::Link(std::fs::read_link(&path)?))?;
            } else if meta.is_file() {
                visit(&child, Node::File(path, meta))?;
            }
        }
        // Depth first, in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The digest of a tree's names, link targets and file contents.
pub fn digest(root: &Path, digester: &dyn FileDigester) -> io::Result<Digest> {
    let mut h = blake3::Hasher::new();
    walk(root, &mut |rel, node| {
        field(&mut h, rel.as_os_str().as_bytes());
        match node {
            Node::File(path, meta) => {
                field(&mut h, b"f");
                field(&mut h, &[u8::from(meta.mode() & 0o111 != 0)]);
                field(&mut h, &digester.digest(&path)?.0);
            }
            Node::Link(target) => {
                field(&mut h, b"l");
                field(&mut h, target.as_os_str().as_bytes());
            }
            Node::Dir => field(&mut h, b"d"),
        }
        Ok(())
    })?;
    Ok(Digest(*h.finalize().as_bytes()))
}

/// A digest of a tree's names, sizes, modes and modification times: what
/// tells whether anything in it was written, without reading files.
pub fn stamp(root: &Path) -> io::Result<Digest> {
    let mut h = blake3::Hasher::new();
    walk(root, &mut |rel, node| {
        field(&mut h, rel.as_os_str().as_bytes());
        if let Node::File(_, meta) = node {
            for n in [
                meta.len() as i64,
                meta.mtime(),
                meta.mtime_nsec(),
                i64::from(meta.mode()),
            ] {
                h.update(&n.to_le_bytes());
            }
        }
        Ok(())
    })?;
    Ok(Digest(*h.finalize().as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::digest::PlainDigester;

    #[test]
    fn contents_names_and_new_files_change_the_digest_but_skipped_dirs_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/inner")).unwrap();
        std::fs::write(root.join("src/inner/a.c"), "a").unwrap();
        std::fs::write(root.join("build.rs"), "fn main() {}").unwrap();
        let d0 = digest(root, &PlainDigester).unwrap();
        assert_eq!(digest(root, &PlainDigester).unwrap(), d0);
        // Skipped: .git, a target directory, a nested package.
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "x").unwrap();
        std::fs::create_dir_all(root.join("target")).unwrap();
        std::fs::write(root.join("target/CACHEDIR.TAG"), "t").unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/Cargo.toml"), "[package]").unwrap();
        assert_eq!(digest(root, &PlainDigester).unwrap(), d0);
        let s0 = stamp(root).unwrap();
        std::fs::write(root.join("src/inner/a.c"), "b").unwrap();
        let d1 = digest(root, &PlainDigester).unwrap();
        assert_ne!(d1, d0);
        assert_ne!(stamp(root).unwrap(), s0);
        std::fs::write(root.join("src/new.h"), "").unwrap();
        assert_ne!(digest(root, &PlainDigester).unwrap(), d1);
    }
}
