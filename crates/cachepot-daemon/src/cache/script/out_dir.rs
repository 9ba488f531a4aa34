//! A finished build script's `OUT_DIR` as entry files: every directory
//! (an empty one is restored too), symbolic link (its target, base
//! directories as tokens) and file (modes kept). A small text file that
//! names a base directory (a generated Makefile, a `.pc` file, code that
//! names its own output directory) is stored with the base as a token and
//! restored for the checkout it is restored into; other files are stored
//! as they are, like a compile's outputs.

use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cachepot_compiler::digest::Digest;
use cachepot_compiler::rust::Role;
use cachepot_compiler::BaseDirs;
use cachepot_storage::{EntryFile, FileData};

use super::super::outputs::{spool_copy, ReadOutputs};
use super::super::restore::digest_meta;
use crate::Shared;

/// Files up to this size are read whole and checked for base directories;
/// larger ones are copied through the spool as they are.
const TEXT_LIMIT: u64 = 1024 * 1024;

/// Why `OUT_DIR` could not be read into an entry.
#[derive(Debug)]
pub(super) enum ReadError {
    /// A FIFO, socket or device, named by its path.
    Unsupported(PathBuf),
    /// Reading failed.
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// Every entry of `dir`, depth first in name order, as `(relative path,
/// metadata)`.
fn walk(dir: &Path) -> io::Result<Vec<(String, PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(dir.join(&rel))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                return Err(io::Error::other("a file name in OUT_DIR is not UTF-8"));
            };
            let child = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                subdirs.push(child.clone());
            }
            out.push((child, e.path(), meta));
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// Reads `dir` into entry files (see the module's header).
pub(super) fn read(
    shared: &Shared,
    dir: &Path,
    bases: &BaseDirs,
) -> Result<ReadOutputs, ReadError> {
    let mut read = ReadOutputs {
        files: Vec::new(),
        digests: Vec::new(),
    };
    for (rel, path, meta) in walk(dir)? {
        let mode = meta.permissions().mode();
        let ft = meta.file_type();
        let (role, data) = if ft.is_dir() {
            (Role::OutDir(rel), FileData::Bytes(Vec::new()))
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)?;
            let target = bases.normalize(target.as_os_str().as_bytes());
            (Role::OutLink(rel), FileData::Bytes(target))
        } else if ft.is_file() {
            let mut file = std::fs::File::open(&path)?;
            if meta.len() <= TEXT_LIMIT {
                let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
                file.read_to_end(&mut bytes)?;
                let normalized = (!bytes.contains(&0)).then(|| bases.normalize(&bytes));
                match normalized {
                    Some(n) if n != bytes => (Role::OutText(rel), FileData::Bytes(n)),
                    _ => {
                        let role = Role::OutFile(rel);
                        read.digests
                            .push((digest_meta(&role), Digest::of(&bytes).0.to_vec()));
                        (role, FileData::Bytes(bytes))
                    }
                }
            } else {
                let (data, digest) = spool_copy(shared, &mut file)?;
                let role = Role::OutFile(rel);
                read.digests.push((digest_meta(&role), digest.0.to_vec()));
                (role, data)
            }
        } else {
            return Err(ReadError::Unsupported(path));
        };
        read.files.push(EntryFile {
            name: role.name().into_owned(),
            mode,
            data,
        });
    }
    Ok(read)
}

/// The paths, relative to both, whose file type, link target or content
/// differ between two directories (two runs of a build script).
pub(in crate::cache) fn differing_paths(a: &Path, b: &Path) -> Vec<String> {
    let (Ok(left), Ok(right)) = (walk(a), walk(b)) else {
        return vec![".".into()];
    };
    let mut differs: Vec<String> = Vec::new();
    for (rel, path, meta) in &left {
        let Some((_, other, other_meta)) = right.iter().find(|(r, _, _)| r == rel) else {
            differs.push(rel.clone());
            continue;
        };
        let (ft, oft) = (meta.file_type(), other_meta.file_type());
        let same = if ft.is_dir() {
            oft.is_dir()
        } else if ft.is_symlink() {
            oft.is_symlink() && std::fs::read_link(path).ok() == std::fs::read_link(other).ok()
        } else {
            oft.is_file() && same_content(path, other).unwrap_or(false)
        };
        if !same {
            differs.push(rel.clone());
        }
    }
    for (rel, _, _) in &right {
        if !left.iter().any(|(r, _, _)| r == rel) {
            differs.push(rel.clone());
        }
    }
    differs
}

/// Whether two files hold the same bytes, read in pieces.
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The paths of what `dir` holds now, relative to it (for verifying a
/// run).
pub(super) fn paths(dir: &Path) -> Vec<String> {
    walk(dir)
        .map(|all| all.into_iter().map(|(rel, _, _)| rel).collect())
        .unwrap_or_default()
}
