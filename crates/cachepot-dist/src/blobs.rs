//! The store's blob transfers: one batch call up to the server's limit,
//! ByteStream above it, zstd `compressed-blobs` where offered.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use cachepot_storage::StorageError;
use sha2::{Digest as _, Sha256};

use crate::compress::{compress, decode, ZSTD_BLOBS};
use crate::reapi::{Reapi, CHUNK, KIND};

impl Reapi {
    pub(crate) async fn read_blob(
        &self,
        digest: &re::Digest,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let size = u64::try_from(digest.size_bytes).unwrap_or(0);
        let compression = self.compression().await;
        let corrupt = |message: String| StorageError::Remote {
            backend: KIND,
            op: "get",
            message,
        };
        if size <= self.batch_limit().await {
            let resp = self
                .cas()
                .batch_read_blobs(re::BatchReadBlobsRequest {
                    instance_name: self.settings.instance.clone(),
                    digests: vec![digest.clone()],
                    acceptable_compressors: compression.acceptable(),
                    ..Default::default()
                })
                .await
                .map_err(|s| Self::failed("get", &s))?
                .into_inner();
            let Some(r) = resp.responses.into_iter().next() else {
                return Ok(None);
            };
            return match r.status {
                Some(st) if st.code == tonic::Code::NotFound as i32 => Ok(None),
                Some(st) if st.code != 0 => Err(StorageError::Remote {
                    backend: KIND,
                    op: "get",
                    message: st.message,
                }),
                _ => decode(r.data, r.compressor, digest)
                    .map(Some)
                    .map_err(corrupt),
            };
        }
        let kind = if compression.stream {
            ZSTD_BLOBS
        } else {
            "blobs"
        };
        let resource = self.resource(kind, digest, None);
        let mut stream = match self
            .byte_stream()
            .read(bs::ReadRequest {
                resource_name: resource,
                read_offset: 0,
                read_limit: 0,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(Self::failed("get", &s)),
        };
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        loop {
            match stream.message().await {
                Ok(Some(piece)) => data.extend_from_slice(&piece.data),
                Ok(None) => break,
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
                Err(s) => return Err(Self::failed("get", &s)),
            }
        }
        let compressor = if compression.stream {
            re::compressor::Value::Zstd
        } else {
            re::compressor::Value::Identity
        };
        decode(data, compressor as i32, digest)
            .map(Some)
            .map_err(corrupt)
    }

    /// A ByteStream resource name: `[instance/]KIND/HASH/SIZE`, or for
    /// writes `[instance/]uploads/UUID/KIND/HASH/SIZE`; `KIND` is `blobs`
    /// or `compressed-blobs/zstd` (the size is the uncompressed one).
    pub(crate) fn resource(&self, kind: &str, digest: &re::Digest, upload: Option<&str>) -> String {
        let mut name = String::new();
        if !self.settings.instance.is_empty() {
            name.push_str(&self.settings.instance);
            name.push('/');
        }
        if let Some(id) = upload {
            name.push_str(&format!("uploads/{id}/"));
        }
        name.push_str(&format!("{kind}/{}/{}", digest.hash, digest.size_bytes));
        name
    }

    pub(crate) async fn write_blob(
        &self,
        digest: &re::Digest,
        value: &[u8],
    ) -> Result<(), StorageError> {
        let compression = self.compression().await;
        let unencodable = |message: String| StorageError::Remote {
            backend: KIND,
            op: "put",
            message,
        };
        if (value.len() as u64) <= self.batch_limit().await {
            let (data, compressor) = compression.for_batch(value.to_vec()).map_err(unencodable)?;
            let resp = self
                .cas()
                .batch_update_blobs(re::BatchUpdateBlobsRequest {
                    instance_name: self.settings.instance.clone(),
                    requests: vec![re::batch_update_blobs_request::Request {
                        digest: Some(digest.clone()),
                        data,
                        compressor,
                    }],
                    ..Default::default()
                })
                .await
                .map_err(|s| Self::failed("put", &s))?
                .into_inner();
            return match resp.responses.into_iter().next().and_then(|r| r.status) {
                Some(st) if st.code != 0 => Err(StorageError::Remote {
                    backend: KIND,
                    op: "put",
                    message: st.message,
                }),
                _ => Ok(()),
            };
        }
        let upload = format!(
            "{:x}",
            Sha256::digest(format!(
                "{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ))
        );
        let compressed;
        let (kind, value) = if compression.stream {
            compressed = compress(value).map_err(unencodable)?;
            (ZSTD_BLOBS, compressed.as_slice())
        } else {
            ("blobs", value)
        };
        let resource = self.resource(kind, digest, Some(&upload[..32]));
        let mut requests = Vec::with_capacity(value.len() / CHUNK + 1);
        let mut offset = 0usize;
        while offset < value.len() || requests.is_empty() {
            let end = (offset + CHUNK).min(value.len());
            requests.push(bs::WriteRequest {
                resource_name: if offset == 0 {
                    resource.clone()
                } else {
                    String::new()
                },
                write_offset: offset as i64,
                finish_write: end == value.len(),
                data: value[offset..end].to_vec(),
            });
            offset = end;
        }
        self.byte_stream()
            .write(futures_util::stream::iter(requests))
            .await
            .map_err(|s| Self::failed("put", &s))?;
        Ok(())
    }
}
