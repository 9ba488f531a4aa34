//! Entries (`e2-…` values) whose large files the engine already holds
//! (the rlib a remote compile wrote) name those blobs instead of carrying
//! them again: a store after a remote compile sends only the rest.
//!
//! | output file of the `ActionResult` | blob |
//! |---|---|
//! | `value` | the whole entry, when the engine holds none of its large files (the usual case without remote execution) |
//! | `entry` | the entry with those files emptied (names, modes, metadata, the other files), in the entry format |
//! | `f/<i>` | the contents of the entry's `i`th file, a blob the engine had |
//!
//! A read of the second form gets every blob in as few calls as their
//! sizes allow and encodes the entry again (zstd level 1); a blob the
//! engine has evicted makes the entry a miss. Files are not stored apart
//! when the engine lacks them: raw, they would take several times the
//! space of the compressed entry, and a read would cost more calls.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use cachepot_storage::{Entry, FileData, StorageError};

use crate::cas::Blob;
use crate::reapi::{digest_of, Reapi};

/// The output file that holds the entry without the files the engine had.
pub(crate) const SKELETON: &str = "entry";

/// Files from this size on are looked for in the engine's CAS.
const SHARED_FROM: usize = 64 * 1024;

/// The output file of the entry's `i`th file.
fn file_path(i: usize) -> String {
    format!("f/{i}")
}

fn failed(op: &'static str) -> impl Fn(crate::ExecError) -> StorageError {
    move |e| StorageError::Remote {
        backend: "reapi",
        op,
        message: e.to_string(),
    }
}

impl Reapi {
    /// The `ActionResult` for an entry whose large files the engine
    /// holds, with the rest uploaded; `None` when it holds none of them
    /// (the entry is then stored whole).
    pub(crate) async fn put_entry(
        &self,
        mut entry: Entry,
    ) -> Result<Option<re::ActionResult>, StorageError> {
        let large: Vec<(usize, re::Digest)> = entry
            .files
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let data = f.data.bytes()?;
                (data.len() >= SHARED_FROM).then(|| (i, digest_of(data)))
            })
            .collect();
        if large.is_empty() {
            return Ok(None);
        }
        let missing = self
            .find_missing(large.iter().map(|(_, d)| d.clone()).collect())
            .await
            .map_err(failed("put"))?;
        let held: Vec<(usize, re::Digest)> = large
            .into_iter()
            .filter(|(_, d)| !missing.contains(d))
            .collect();
        if held.is_empty() {
            return Ok(None);
        }
        let mut outputs = Vec::with_capacity(held.len() + 1);
        for (i, digest) in held {
            entry.files[i].data = FileData::Bytes(Vec::new());
            outputs.push(re::OutputFile {
                path: file_path(i),
                digest: Some(digest),
                is_executable: entry.files[i].mode & 0o111 != 0,
                ..Default::default()
            });
        }
        let skeleton = entry.encode().map_err(|e| StorageError::Remote {
            backend: "reapi",
            op: "put",
            message: e.to_string(),
        })?;
        let digest = digest_of(&skeleton);
        outputs.push(re::OutputFile {
            path: SKELETON.into(),
            digest: Some(digest.clone()),
            ..Default::default()
        });
        self.upload_many(vec![(digest, Blob::Bytes(skeleton))])
            .await
            .map_err(failed("put"))?;
        Ok(Some(re::ActionResult {
            output_files: outputs,
            ..Default::default()
        }))
    }

    /// The entry an `ActionResult` of [`Reapi::put_entry`] names, encoded;
    /// `None` when a blob is gone.
    pub(crate) async fn get_entry(
        &self,
        result: &re::ActionResult,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(skeleton_digest) = result
            .output_files
            .iter()
            .find(|f| f.path == SKELETON)
            .and_then(|f| f.digest.clone())
        else {
            return Ok(None);
        };
        // The files the engine held, by their index in the entry.
        let mut named: Vec<(usize, re::Digest)> = Vec::new();
        for f in &result.output_files {
            if let Some(i) = f.path.strip_prefix("f/").and_then(|i| i.parse().ok()) {
                match &f.digest {
                    Some(d) => named.push((i, d.clone())),
                    None => return Ok(None),
                }
            }
        }
        let mut wanted = vec![skeleton_digest.clone()];
        wanted.extend(named.iter().map(|(_, d)| d.clone()));
        let blobs = match self.read_many(&wanted).await {
            Ok(b) => b,
            Err(e) if e.failure() == crate::Failure::MissingBlob => return Ok(None),
            Err(e) => return Err(failed("get")(e)),
        };
        let corrupt = |message: String| StorageError::Remote {
            backend: "reapi",
            op: "get",
            message,
        };
        let skeleton = blobs
            .get(&skeleton_digest.hash)
            .ok_or_else(|| corrupt("the entry's skeleton is missing".into()))?;
        let mut entry = Entry::decode(skeleton).map_err(|e| corrupt(e.to_string()))?;
        for (i, d) in &named {
            let data = blobs
                .get(&d.hash)
                .cloned()
                .ok_or_else(|| corrupt("a file is missing".into()))?;
            let f = entry
                .files
                .get_mut(*i)
                .ok_or_else(|| corrupt(format!("the entry has no file {i}")))?;
            f.data = FileData::Bytes(data);
        }
        entry.encode().map(Some).map_err(|e| corrupt(e.to_string()))
    }
}
