//! The CAS calls of remote execution: which blobs the engine lacks, many
//! blobs up in few calls, many down. Small blobs share batch calls up to
//! the server's limit; large ones go one by one through ByteStream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use crate::compress::decode;
use crate::execute::ExecError;
use crate::reapi::{digest_of, Reapi};

/// What a blob to upload is: bytes at hand, or a file read when it goes up
/// (and checked against its digest then).
pub(crate) enum Blob {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// A ByteStream transfer may take this long per MiB on top of the call
/// timeout (1 MiB/s: a slow link still moves a large rlib).
const PER_MIB: Duration = Duration::from_secs(1);

fn call_err(call: &'static str) -> impl Fn(tonic::Status) -> ExecError {
    move |s| ExecError::Call {
        call,
        code: s.code(),
        message: s.message().to_string(),
    }
}

fn storage_err(call: &'static str) -> impl Fn(cachepot_storage::StorageError) -> ExecError {
    move |e| ExecError::Call {
        call,
        code: tonic::Code::Unknown,
        message: e.to_string(),
    }
}

impl Reapi {
    /// Runs one CAS call under the call timeout, longer for `bytes` more.
    pub(crate) async fn timed<T>(
        &self,
        call: &'static str,
        bytes: u64,
        fut: impl std::future::Future<Output = Result<T, ExecError>>,
    ) -> Result<T, ExecError> {
        let limit = self.timeout + PER_MIB * u32::try_from(bytes >> 20).unwrap_or(u32::MAX);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(ExecError::Timeout {
                call,
                seconds: limit.as_secs(),
            }),
        }
    }

    /// The digests the engine does not have.
    pub(crate) async fn find_missing(
        &self,
        digests: Vec<re::Digest>,
    ) -> Result<Vec<re::Digest>, ExecError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let req = re::FindMissingBlobsRequest {
            instance_name: self.settings.instance.clone(),
            blob_digests: digests,
            ..Default::default()
        };
        self.timed("FindMissingBlobs", 0, async {
            Ok(self
                .cas()
                .find_missing_blobs(req)
                .await
                .map_err(call_err("FindMissingBlobs"))?
                .into_inner()
                .missing_blob_digests)
        })
        .await
    }

    /// Uploads the blobs; returns the bytes sent. A file whose content no
    /// longer has its digest is an error ([`ExecError::Changed`]).
    pub(crate) async fn upload_many(
        &self,
        blobs: Vec<(re::Digest, Blob)>,
    ) -> Result<u64, ExecError> {
        let limit = self.batch_limit().await;
        let compression = self.compression().await;
        let mut sent = 0u64;
        let mut batch: Vec<re::batch_update_blobs_request::Request> = Vec::new();
        let mut batch_size = 0u64;
        for (digest, blob) in blobs {
            let data = match blob {
                Blob::Bytes(b) => b,
                Blob::File(path) => {
                    let data = tokio::fs::read(&path)
                        .await
                        .map_err(|source| ExecError::Input {
                            path: path.clone(),
                            source,
                        })?;
                    if digest_of(&data) != digest {
                        return Err(ExecError::Changed(path));
                    }
                    data
                }
            };
            let size = data.len() as u64;
            sent += size;
            if size > limit {
                self.timed("ByteStream.Write", size, async {
                    self.write_blob(&digest, &data)
                        .await
                        .map_err(storage_err("ByteStream.Write"))
                })
                .await?;
                continue;
            }
            let (data, compressor) = compression.for_batch(data).map_err(ExecError::Result)?;
            let size = data.len() as u64;
            if batch_size + size > limit {
                self.batch_update(std::mem::take(&mut batch)).await?;
                batch_size = 0;
            }
            batch_size += size;
            batch.push(re::batch_update_blobs_request::Request {
                digest: Some(digest),
                data,
                compressor,
            });
        }
        self.batch_update(batch).await?;
        Ok(sent)
    }

    async fn batch_update(
        &self,
        requests: Vec<re::batch_update_blobs_request::Request>,
    ) -> Result<(), ExecError> {
        if requests.is_empty() {
            return Ok(());
        }
        let req = re::BatchUpdateBlobsRequest {
            instance_name: self.settings.instance.clone(),
            requests,
            ..Default::default()
        };
        let resp = self
            .timed("BatchUpdateBlobs", 0, async {
                self.cas()
                    .batch_update_blobs(req)
                    .await
                    .map_err(call_err("BatchUpdateBlobs"))
            })
            .await?
            .into_inner();
        match resp
            .responses
            .into_iter()
            .find_map(|r| r.status.filter(|s| s.code != 0))
        {
            Some(st) => Err(ExecError::Call {
                call: "BatchUpdateBlobs",
                code: tonic::Code::from_i32(st.code),
                message: st.message,
            }),
            None => Ok(()),
        }
    }

    /// Reads the blobs; every one must be there.
    pub(crate) async fn read_many(
        &self,
        digests: &[re::Digest],
    ) -> Result<HashMap<String, Vec<u8>>, ExecError> {
        let limit = self.batch_limit().await;
        let mut out = HashMap::new();
        let mut batch: Vec<re::Digest> = Vec::new();
        let mut batch_size = 0u64;
        for d in digests {
            if out.contains_key(&d.hash) || batch.contains(d) {
                continue;
            }
            let size = u64::try_from(d.size_bytes).unwrap_or(0);
            if size == 0 {
                out.insert(d.hash.clone(), Vec::new());
                continue;
            }
            if size > limit {
                let data = self
                    .timed("ByteStream.Read", size, async {
                        self.read_blob(d)
                            .await
                            .map_err(storage_err("ByteStream.Read"))
                    })
                    .await?
                    .ok_or_else(|| missing(d))?;
                out.insert(d.hash.clone(), data);
                continue;
            }
            if batch_size + size > limit {
                self.batch_read(std::mem::take(&mut batch), &mut out)
                    .await?;
                batch_size = 0;
            }
            batch_size += size;
            batch.push(d.clone());
        }
        self.batch_read(batch, &mut out).await?;
        Ok(out)
    }

    async fn batch_read(
        &self,
        digests: Vec<re::Digest>,
        out: &mut HashMap<String, Vec<u8>>,
    ) -> Result<(), ExecError> {
        if digests.is_empty() {
            return Ok(());
        }
        let req_len = digests.len();
        let req = re::BatchReadBlobsRequest {
            instance_name: self.settings.instance.clone(),
            digests,
            acceptable_compressors: self.compression().await.acceptable(),
            ..Default::default()
        };
        let resp = self
            .timed("BatchReadBlobs", 0, async {
                self.cas()
                    .batch_read_blobs(req)
                    .await
                    .map_err(call_err("BatchReadBlobs"))
            })
            .await?
            .into_inner();
        let asked = req_len;
        if resp.responses.len() < asked {
            return Err(ExecError::Call {
                call: "BatchReadBlobs",
                code: tonic::Code::NotFound,
                message: format!("{} of {asked} blobs came back", resp.responses.len()),
            });
        }
        for r in resp.responses {
            let d = r.digest.unwrap_or_default();
            if r.status.is_some_and(|s| s.code != 0) {
                return Err(missing(&d));
            }
            let data = decode(r.data, r.compressor, &d).map_err(ExecError::Result)?;
            out.insert(d.hash, data);
        }
        Ok(())
    }
}

fn missing(d: &re::Digest) -> ExecError {
    ExecError::Call {
        call: "BatchReadBlobs",
        code: tonic::Code::NotFound,
        message: format!("blob {}/{} is not in the CAS", d.hash, d.size_bytes),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ReapiSettings;

    /// The zstd test CAS of `scripts/services.sh` refuses every blob moved
    /// uncompressed: batch and ByteStream, up and down, must compress.
    #[test]
    fn blobs_move_compressed_where_the_server_offers_it() {
        let endpoint = std::env::var("CACHEPOT_TEST_REAPI_ZSTD").unwrap_or_else(|_| {
            panic!("CACHEPOT_TEST_REAPI_ZSTD is not set: run `scripts/services.sh start` and export `scripts/services.sh env`")
        });
        let settings = ReapiSettings {
            endpoint,
            ..ReapiSettings::default()
        };
        let reapi = Reapi::new(settings, Duration::from_secs(30)).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let small = format!("small {nanos}\n").repeat(100).into_bytes();
        // Over the 4 MiB batch limit: ByteStream.
        let big: Vec<u8> = (0..9_000_000u32)
            .map(|i| (i / 7 + nanos as u32) as u8)
            .collect();
        let blobs = [small, big, Vec::new()];
        let digests: Vec<re::Digest> = blobs.iter().map(|b| digest_of(b)).collect();
        reapi.rt.block_on(async {
            assert_eq!(reapi.find_missing(digests.clone()).await.unwrap().len(), 2);
            let upload = digests
                .iter()
                .cloned()
                .zip(blobs.iter().map(|b| Blob::Bytes(b.clone())))
                .collect();
            reapi.upload_many(upload).await.unwrap();
            assert!(reapi
                .find_missing(digests.clone())
                .await
                .unwrap()
                .is_empty());
            let back = reapi.read_many(&digests).await.unwrap();
            for (d, b) in digests.iter().zip(&blobs) {
                assert!(back[&d.hash] == *b, "blob {} differs", d.size_bytes);
            }
        });
    }
}
