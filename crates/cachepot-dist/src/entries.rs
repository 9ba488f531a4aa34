//! Entries (`e2-…` values) stored file by file, so that the engine's CAS
//! holds each output once: the rlib a remote compile wrote is the blob the
//! entry names, and two entries with one file share it.
//!
//! | output file of the `ActionResult` | blob |
//! |---|---|
//! | `entry` | the entry without its files' contents (names, modes, metadata), in the entry format |
//! | `f/0`, `f/1`, … | each file's contents, as they are restored |
//!
//! A read gets every blob (one batch call when they are small) and encodes
//! the entry again (zstd level 1, faster than the network that brought it);
//! a blob the engine has evicted makes the entry a miss.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use cachepot_storage::{Entry, EntryFile, FileData, StorageError};

use crate::cas::Blob;
use crate::reapi::{digest_of, Reapi};

/// The output file that holds the entry without its files.
pub(crate) const SKELETON: &str = "entry";

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
    /// Uploads an entry's files the engine lacks and its skeleton; returns
    /// the `ActionResult` that names them.
    pub(crate) async fn put_entry(&self, entry: Entry) -> Result<re::ActionResult, StorageError> {
        let mut skeleton = Entry {
            files: Vec::with_capacity(entry.files.len()),
            meta: entry.meta,
        };
        let mut outputs = Vec::with_capacity(entry.files.len() + 1);
        let mut blobs: Vec<(re::Digest, Blob)> = Vec::with_capacity(entry.files.len() + 1);
        for (i, f) in entry.files.into_iter().enumerate() {
            let FileData::Bytes(data) = f.data else {
                return Err(StorageError::Remote {
                    backend: "reapi",
                    op: "put",
                    message: "a decoded entry holds its files in memory".into(),
                });
            };
            let digest = digest_of(&data);
            outputs.push(re::OutputFile {
                path: file_path(i),
                digest: Some(digest.clone()),
                is_executable: f.mode & 0o111 != 0,
                ..Default::default()
            });
            blobs.push((digest, Blob::Bytes(data)));
            skeleton.files.push(EntryFile {
                name: f.name,
                mode: f.mode,
                data: FileData::Bytes(Vec::new()),
            });
        }
        let skeleton = skeleton.encode().map_err(|e| StorageError::Remote {
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
        blobs.push((digest, Blob::Bytes(skeleton)));
        let missing = self
            .find_missing(blobs.iter().map(|(d, _)| d.clone()).collect())
            .await
            .map_err(failed("put"))?;
        let uploads: Vec<(re::Digest, Blob)> = blobs
            .into_iter()
            .filter(|(d, _)| missing.contains(d))
            .collect();
        self.upload_many(uploads).await.map_err(failed("put"))?;
        Ok(re::ActionResult {
            output_files: outputs,
            ..Default::default()
        })
    }

    /// The entry an `ActionResult` of [`Reapi::put_entry`] names, encoded;
    /// `None` when a blob is gone.
    pub(crate) async fn get_entry(
        &self,
        result: &re::ActionResult,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let digest_of_path = |path: &str| {
            result
                .output_files
                .iter()
                .find(|f| f.path == path)
                .and_then(|f| f.digest.clone())
        };
        let Some(skeleton_digest) = digest_of_path(SKELETON) else {
            return Ok(None);
        };
        let file_count = result.output_files.len() - 1;
        let mut wanted = vec![skeleton_digest.clone()];
        for i in 0..file_count {
            match digest_of_path(&file_path(i)) {
                Some(d) => wanted.push(d),
                None => return Ok(None),
            }
        }
        let mut blobs = match self.read_many(&wanted).await {
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
        if entry.files.len() != file_count {
            return Err(corrupt(format!(
                "the entry names {} files, the result {file_count}",
                entry.files.len()
            )));
        }
        for (f, d) in entry.files.iter_mut().zip(&wanted[1..]) {
            // Two files of one content share a blob: the last one takes it.
            let data = if wanted[1..].iter().filter(|w| w.hash == d.hash).count() > 1 {
                blobs.get(&d.hash).cloned()
            } else {
                blobs.remove(&d.hash)
            };
            f.data = FileData::Bytes(data.ok_or_else(|| corrupt("a file is missing".into()))?);
        }
        entry.encode().map(Some).map_err(|e| corrupt(e.to_string()))
    }
}
