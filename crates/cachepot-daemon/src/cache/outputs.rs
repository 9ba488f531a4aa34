//! A finished compile's outputs, copied into the spool for the store,
//! and the private files the cache asks a compiler to write.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cachepot_compiler::digest::Digest;
use cachepot_compiler::rust::{Output, OutputFamily, Role};
use cachepot_compiler::BaseDirs;
use cachepot_storage::FileData;

use super::restore;
use crate::stats::Event;
use crate::Shared;

/// Whether a file the compile read changed after it began: the outputs may
/// not match the digests just taken, so the result is not stored.
pub(super) fn changed_during(
    shared: &Shared,
    paths: &[PathBuf],
    started: SystemTime,
) -> io::Result<bool> {
    for path in paths {
        let modified = std::fs::metadata(path).and_then(|m| m.modified())?;
        if modified >= started {
            tracing::info!(file = %path.display(), "source changed during the compile; not stored");
            shared.stats.count(Event::WriteSkipped);
            return Ok(true);
        }
    }
    Ok(false)
}

/// A finished compile's outputs as entry files, and the metadata that
/// records their content digests (see `restore`).
pub(super) struct ReadOutputs {
    pub files: Vec<cachepot_storage::EntryFile>,
    pub digests: Vec<(String, Vec<u8>)>,
}

/// Reads the outputs of a finished compile into entry files; dependency
/// files are stored with base directories replaced by tokens. Each other
/// output's digest goes into the digest memo (when the file did not change
/// while it was read): the crates that depend on it, and the links that
/// read it, then do not hash it again.
pub(super) fn read_outputs(
    shared: &Shared,
    outputs: &[Output],
    bases: &BaseDirs,
    started: SystemTime,
) -> io::Result<ReadOutputs> {
    let mut read = ReadOutputs {
        files: Vec::with_capacity(outputs.len()),
        digests: Vec::new(),
    };
    for out in outputs {
        // An optional output counts only when this compile wrote it.
        if out.optional {
            match std::fs::metadata(&out.path).and_then(|m| m.modified()) {
                Ok(t) if t >= started => {}
                _ => continue,
            }
        }
        let mut file = std::fs::File::open(&out.path)?;
        let before = file.metadata()?;
        let data = if out.role.rewrites_paths() {
            let mut data = Vec::with_capacity(usize::try_from(before.len()).unwrap_or(0));
            io::Read::read_to_end(&mut file, &mut data)?;
            FileData::Bytes(bases.normalize(&data))
        } else {
            let (data, digest) = spool_copy(shared, &mut file)?;
            shared
                .digests
                .remember_read(&out.path, &before, &file.metadata()?, digest);
            read.digests
                .push((restore::digest_meta(&out.role), digest.0.to_vec()));
            data
        };
        read.files.push(cachepot_storage::EntryFile {
            name: out.role.name().into_owned(),
            mode: before.permissions().mode(),
            data,
        });
    }
    Ok(read)
}

/// Copies an output into the spool (a private file, removed when the
/// store is done or dropped) and takes its digest on the way: the store
/// never holds an output in memory, whatever its size.
pub(super) fn spool_copy(
    shared: &Shared,
    file: &mut std::fs::File,
) -> io::Result<(FileData, Digest)> {
    let spool = &shared.config.spool;
    let mut tmp = match tempfile::Builder::new()
        .prefix("tmp-out-")
        .tempfile_in(spool)
    {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(spool)?;
            tempfile::Builder::new()
                .prefix("tmp-out-")
                .tempfile_in(spool)?
        }
        Err(e) => return Err(e),
    };
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; SPOOL_BUFFER];
    let mut len = 0u64;
    loop {
        let n = match io::Read::read(file, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        io::Write::write_all(tmp.as_file_mut(), &buf[..n])?;
        len += n as u64;
    }
    let data = FileData::Spooled {
        path: Arc::new(tmp.into_temp_path()),
        len,
    };
    Ok((data, Digest(*hasher.finalize().as_bytes())))
}

/// The buffer an output is copied into the spool through.
const SPOOL_BUFFER: usize = 256 * 1024;

/// Reads the files of `family` that a finished compile wrote (named by
/// the compiler, so found by listing their directory), in name order.
pub(super) fn read_family(
    shared: &Shared,
    family: &OutputFamily,
    started: SystemTime,
) -> io::Result<Vec<cachepot_storage::EntryFile>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(&family.dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str().filter(|n| family.accepts(n)) else {
            continue;
        };
        let meta = e.metadata()?;
        // An older file of the family is not this compile's.
        if meta.is_file() && meta.modified()? >= started {
            found.push((name.to_string(), meta.permissions().mode()));
        }
    }
    found.sort();
    found
        .into_iter()
        .map(|(name, mode)| {
            let mut file = std::fs::File::open(family.dir.join(&name))?;
            Ok(cachepot_storage::EntryFile {
                data: spool_copy(shared, &mut file)?.0,
                name: Role::Dwo(name).name().into_owned(),
                mode,
            })
        })
        .collect()
}

/// A fresh path in the daemon's private directory, for a file the
/// compiler writes for the cache only (never beside the outputs).
pub(super) fn private_temp(shared: &Shared, ext: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = shared
        .config
        .socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("tmp-{}-{n}.{ext}", std::process::id()))
}
