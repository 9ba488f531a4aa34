//! An action's input root as REAPI wants it: a Merkle tree of `Directory`
//! messages, children sorted by name, each directory named by the digest
//! of its encoded message.

use std::collections::BTreeMap;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use crate::reapi::digest_of;

/// A file placed in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileEntry {
    digest: re::Digest,
    executable: bool,
}

/// One directory while the tree is built.
#[derive(Default, Debug)]
struct Node {
    files: BTreeMap<String, FileEntry>,
    dirs: BTreeMap<String, Node>,
}

/// Why a path cannot go into the tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Empty components, `.` or `..`, or a leading `/`.
    #[error("{0:?} is not a plain relative path")]
    BadPath(String),
    /// A file and a directory (or two different files) at one path.
    #[error("{0:?} is given twice, differently")]
    Clash(String),
}

/// The tree being built.
#[derive(Default, Debug)]
pub struct InputTree {
    root: Node,
}

/// A finished tree: the root's digest and every directory message (the
/// root's included), to upload with the files.
pub struct BuiltTree {
    /// The input root's digest.
    pub root: re::Digest,
    /// Each directory's digest and encoded message.
    pub directories: Vec<(re::Digest, Vec<u8>)>,
}

fn components(path: &str) -> Result<Vec<&str>, TreeError> {
    let parts: Vec<&str> = path.split('/').collect();
    if path.is_empty()
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(TreeError::BadPath(path.to_string()));
    }
    Ok(parts)
}

impl InputTree {
    /// Adds a file at `path` (relative to the input root). The same file
    /// twice is fine.
    pub fn add_file(
        &mut self,
        path: &str,
        digest: re::Digest,
        executable: bool,
    ) -> Result<(), TreeError> {
        let parts = components(path)?;
        let (name, parents) = parts
            .split_last()
            .ok_or_else(|| TreeError::BadPath(path.into()))?;
        let mut node = &mut self.root;
        for p in parents {
            if node.files.contains_key(*p) {
                return Err(TreeError::Clash(path.into()));
            }
            node = node.dirs.entry((*p).to_string()).or_default();
        }
        if node.dirs.contains_key(*name) {
            return Err(TreeError::Clash(path.into()));
        }
        let entry = FileEntry { digest, executable };
        match node.files.get(*name) {
            Some(old) if *old != entry => Err(TreeError::Clash(path.into())),
            Some(_) => Ok(()),
            None => {
                node.files.insert((*name).to_string(), entry);
                Ok(())
            }
        }
    }

    /// Makes sure a directory exists (an empty one, if nothing goes in).
    pub fn add_dir(&mut self, path: &str) -> Result<(), TreeError> {
        if path.is_empty() {
            return Ok(());
        }
        let mut node = &mut self.root;
        for p in components(path)? {
            if node.files.contains_key(p) {
                return Err(TreeError::Clash(path.into()));
            }
            node = node.dirs.entry(p.to_string()).or_default();
        }
        Ok(())
    }

    /// Encodes every directory, deepest first.
    pub fn build(&self) -> BuiltTree {
        let mut directories = Vec::new();
        let root = encode(&self.root, &mut directories);
        BuiltTree { root, directories }
    }
}

fn encode(node: &Node, out: &mut Vec<(re::Digest, Vec<u8>)>) -> re::Digest {
    // BTreeMap iteration is sorted by name, as REAPI requires.
    let directories = node
        .dirs
        .iter()
        .map(|(name, child)| re::DirectoryNode {
            name: name.clone(),
            digest: Some(encode(child, out)),
        })
        .collect();
    let files = node
        .files
        .iter()
        .map(|(name, f)| re::FileNode {
            name: name.clone(),
            digest: Some(f.digest.clone()),
            is_executable: f.executable,
            ..Default::default()
        })
        .collect();
    let dir = re::Directory {
        files,
        directories,
        ..Default::default()
    };
    let bytes = dir.encode_to_vec();
    let digest = digest_of(&bytes);
    out.push((digest.clone(), bytes));
    digest
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_sorted_nested_and_named_by_content() {
        let d = |s: &str| digest_of(s.as_bytes());
        let mut a = InputTree::default();
        a.add_file("usr/bin/rustc", d("rustc"), true).unwrap();
        a.add_file("src/main.rs", d("main"), false).unwrap();
        a.add_file("src/lib.rs", d("lib"), false).unwrap();
        a.add_dir("empty/dir").unwrap();
        // The same file twice is one file.
        a.add_file("src/lib.rs", d("lib"), false).unwrap();
        let built = a.build();
        let mut b = InputTree::default();
        b.add_dir("empty/dir").unwrap();
        b.add_file("src/lib.rs", d("lib"), false).unwrap();
        b.add_file("src/main.rs", d("main"), false).unwrap();
        b.add_file("usr/bin/rustc", d("rustc"), true).unwrap();
        assert_eq!(
            built.root,
            b.build().root,
            "order of adding does not matter"
        );
        let root = re::Directory::decode(built.directories.last().unwrap().1.as_slice()).unwrap();
        let names: Vec<&str> = root.directories.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["empty", "src", "usr"]);
        // root, empty, empty/dir, src, usr, usr/bin
        assert_eq!(built.directories.len(), 6);

        let mut c = InputTree::default();
        c.add_file("src/lib.rs", d("other"), false).unwrap();
        c.add_file("src/main.rs", d("main"), false).unwrap();
        assert_ne!(c.build().root, b.build().root);
    }

    #[test]
    fn bad_paths_and_clashes_are_refused() {
        let d = digest_of(b"x");
        let mut t = InputTree::default();
        for bad in ["", "/abs", "a//b", "a/../b", "./a"] {
            assert!(matches!(
                t.add_file(bad, d.clone(), false),
                Err(TreeError::BadPath(_))
            ));
        }
        t.add_file("a/b", d.clone(), false).unwrap();
        assert!(matches!(
            t.add_file("a/b", digest_of(b"y"), false),
            Err(TreeError::Clash(_))
        ));
        assert!(matches!(
            t.add_file("a/b/c", d.clone(), false),
            Err(TreeError::Clash(_))
        ));
        assert!(matches!(t.add_dir("a/b"), Err(TreeError::Clash(_))));
    }
}
