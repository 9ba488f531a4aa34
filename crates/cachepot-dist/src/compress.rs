//! zstd `compressed-blobs`, when the server's capabilities offer them:
//! ByteStream reads and writes and batch reads when `supported_compressors`
//! lists ZSTD, batch uploads when `supported_batch_update_compressors`
//! does. Digests always name the uncompressed bytes.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use crate::reapi::digest_of;

/// The ByteStream resource kind of compressed blobs.
pub(crate) const ZSTD_BLOBS: &str = "compressed-blobs/zstd";

/// zstd's level: fast, since the bytes cross a network once and the CPU
/// is the build's.
const LEVEL: i32 = 1;

/// What the server accepts compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Compression {
    /// ByteStream and batch reads.
    pub stream: bool,
    /// Batch uploads.
    pub batch_update: bool,
}

impl Compression {
    pub(crate) fn of(caps: &re::CacheCapabilities) -> Compression {
        let zstd = re::compressor::Value::Zstd as i32;
        Compression {
            stream: caps.supported_compressors.contains(&zstd),
            batch_update: caps.supported_batch_update_compressors.contains(&zstd),
        }
    }

    /// The compressors a batch read accepts.
    pub(crate) fn acceptable(self) -> Vec<i32> {
        if self.stream {
            vec![re::compressor::Value::Zstd as i32]
        } else {
            Vec::new()
        }
    }

    /// A blob as a batch upload sends it: its data and compressor.
    pub(crate) fn for_batch(self, data: Vec<u8>) -> Result<(Vec<u8>, i32), String> {
        if !self.batch_update || data.is_empty() {
            return Ok((data, re::compressor::Value::Identity as i32));
        }
        Ok((compress(&data)?, re::compressor::Value::Zstd as i32))
    }
}

/// `data` compressed.
pub(crate) fn compress(data: &[u8]) -> Result<Vec<u8>, String> {
    zstd::bulk::compress(data, LEVEL).map_err(|e| format!("zstd: {e}"))
}

/// A blob that came back with `compressor`, as the bytes `digest` names;
/// an error if it does not decompress to them.
pub(crate) fn decode(
    data: Vec<u8>,
    compressor: i32,
    digest: &re::Digest,
) -> Result<Vec<u8>, String> {
    let data = if compressor == re::compressor::Value::Zstd as i32 {
        let size = usize::try_from(digest.size_bytes).map_err(|_| "negative size".to_string())?;
        zstd::bulk::decompress(&data, size).map_err(|e| format!("zstd: {e}"))?
    } else if compressor == re::compressor::Value::Identity as i32 {
        data
    } else {
        return Err(format!(
            "blob {} came back with compressor {compressor}",
            digest.hash
        ));
    };
    if digest_of(&data) != *digest {
        return Err(format!("blob {} came back with other content", digest.hash));
    }
    Ok(data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_a_wrong_one_is_refused() {
        let data = b"int x = 1;\n".repeat(1000);
        let digest = digest_of(&data);
        let on = Compression {
            stream: true,
            batch_update: true,
        };
        let (sent, compressor) = on.for_batch(data.clone()).unwrap();
        assert!(sent.len() < data.len() / 10);
        assert_eq!(decode(sent.clone(), compressor, &digest).unwrap(), data);
        let other = digest_of(b"other");
        assert!(decode(sent, compressor, &other).is_err());
        let (plain, identity) = Compression::default().for_batch(data.clone()).unwrap();
        assert_eq!(plain, data);
        assert_eq!(decode(plain, identity, &digest).unwrap(), data);
        assert!(Compression::default().acceptable().is_empty());
    }
}
