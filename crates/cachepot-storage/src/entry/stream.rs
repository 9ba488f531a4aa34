//! Decoding an entry without holding its files in memory: each file is
//! handed to the caller as a reader while it is decompressed, so a hit
//! writes a large rlib through one small buffer instead of materialising
//! the whole payload, then a copy of each file, then the output.
//!
//! The checks are those of [`Entry::decode`]: magic, version, checksum
//! (verified before the first byte is handed out), the frame's size
//! against the header, and every length against what remains.

use std::io::{self, Read};

#[cfg(doc)]
use super::Entry;
use super::{check_header, corrupt, le_u32, le_u64, EntryError};

/// Why a streaming decode stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The entry itself is bad (corrupt, or another format version).
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The caller's handling of a file failed (writing the output).
    #[error("writing a restored file: {0}")]
    Sink(#[source] io::Error),
}

/// A reader that remembers whether the decoder under it failed, so that an
/// error seen by the caller's sink is told apart from a corrupt entry.
struct Tracked<R> {
    inner: R,
    failed: bool,
    /// Bytes of payload read so far.
    read: u64,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

impl<R: Read> Tracked<R> {
    fn exact<const N: usize>(&mut self, what: &str) -> Result<[u8; N], EntryError> {
        let mut b = [0u8; N];
        self.read_exact(&mut b)
            .map_err(|e| corrupt(format!("{what}: {e}")))?;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, EntryError> {
        self.exact::<4>(what).map(|b| le_u32(&b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, EntryError> {
        self.exact::<8>(what).map(|b| le_u64(&b))
    }

    /// `len` bytes into a buffer that grows as real data arrives (a lying
    /// length cannot force a large allocation).
    fn blob(&mut self, len: u64, what: &str) -> Result<Vec<u8>, EntryError> {
        let mut v = Vec::new();
        (&mut *self)
            .take(len)
            .read_to_end(&mut v)
            .map_err(|e| corrupt(format!("{what}: {e}")))?;
        if v.len() as u64 != len {
            return Err(corrupt(format!("{what}: truncated")));
        }
        Ok(v)
    }

    fn name(&mut self, what: &str) -> Result<String, EntryError> {
        let len = self.u32(what)?;
        let raw = self.blob(u64::from(len), what)?;
        String::from_utf8(raw).map_err(|_| corrupt(format!("{what} is not UTF-8")))
    }
}

/// Decodes an encoded entry, calling `sink(name, mode, data)` for each file
/// in order with a reader of exactly that file's bytes, and returns the
/// metadata blobs. A sink that reads less than the whole file is fine (the
/// rest is skipped). Nothing the sink was given is known to be intact
/// until this returns `Ok`: a caller writes to temporary files and keeps
/// them only then.
pub fn decode_streaming(
    bytes: &[u8],
    sink: &mut dyn FnMut(&str, u32, &mut dyn Read) -> io::Result<()>,
) -> Result<Vec<(String, Vec<u8>)>, StreamError> {
    let (compressed, ulen) = check_header(bytes)?;
    let decoder = zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(|e| corrupt(format!("zstd: {e}")))?
        .single_frame();
    let mut r = Tracked {
        inner: decoder,
        failed: false,
        read: 0,
    };
    let file_count = r.u32("file count")?;
    for _ in 0..file_count {
        let name = r.name("file name")?;
        let mode = r.u32("file mode")?;
        let len = r.u64("file length")?;
        if len > ulen.saturating_sub(r.read) {
            return Err(corrupt(format!("file data: length {len} exceeds the payload")).into());
        }
        let mut data = (&mut r).take(len);
        if let Err(e) = sink(&name, mode, &mut data) {
            return Err(if data.get_ref().failed {
                corrupt(format!("zstd: {e}")).into()
            } else {
                StreamError::Sink(e)
            });
        }
        // What the sink left unread.
        io::copy(&mut data, &mut io::sink()).map_err(|e| corrupt(format!("zstd: {e}")))?;
        if data.limit() != 0 {
            return Err(corrupt("file data: truncated").into());
        }
    }
    let meta_count = r.u32("meta count")?;
    let mut meta = Vec::new();
    for _ in 0..meta_count {
        let name = r.name("meta name")?;
        let len = r.u64("meta length")?;
        meta.push((name, r.blob(len, "meta value")?));
    }
    let mut probe = [0u8; 1];
    let trailing = r
        .read(&mut probe)
        .map_err(|e| corrupt(format!("zstd: {e}")))?;
    if trailing != 0 || r.read != ulen {
        return Err(corrupt(format!(
            "payload is {} bytes or more, header says {ulen}",
            r.read
        ))
        .into());
    }
    Ok(meta)
}
