//! The stored entry format, shared by all backends.
//!
//! An [`Entry`] is what one cached compilation produces: a list of output
//! files and a list of small named metadata blobs (stdout, stderr, a
//! manifest...). It is encoded as:
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! | 0      | 4    | magic `b"CPOT"`                                    |
//! | 4      | 4    | format version, u32 LE (currently 2)               |
//! | 8      | 32   | BLAKE3 digest of the compressed payload            |
//! | 40     | 8    | uncompressed payload length, u64 LE                |
//! | 48     | ...  | payload, one zstd frame                            |
//!
//! The uncompressed payload is a length-prefixed binary encoding (all
//! integers little-endian):
//!
//! ```text
//! u32 file_count
//!   file_count × { u32 name_len, name (UTF-8), u32 mode, u64 data_len, data }
//! u32 meta_count
//!   meta_count × { u32 name_len, name (UTF-8), u64 value_len, value }
//! ```
//!
//! Decoding validates everything: magic, version, checksum, the zstd frame's
//! declared size against the header, and every length against the bytes that
//! remain, so a truncated or bit-flipped entry yields [`EntryError`] rather
//! than a panic or an oversized allocation.
//!
//! File names are stored verbatim; it is the reader's job to check them
//! before using them as paths.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

/// Magic bytes at the start of every encoded entry.
pub const MAGIC: [u8; 4] = *b"CPOT";
/// The format version written by [`Entry::encode`] and accepted by
/// [`Entry::decode`]; also part of every entry's storage key (see
/// [`crate::StorageKey::for_entry`]). Version 2: manifest lists carry the
/// time each manifest was stored.
pub const FORMAT_VERSION: u32 = 2;
/// The zstd level used for new entries.
///
/// Measured on real rlibs (libstd 11 MB, librustls 7 MB, libcore 3 MB):
/// level 3 output is about 9% smaller, but level 1 compresses about twice
/// as fast and decompresses 10-15% faster (both well above 1 GB/s), and
/// decoding speed is what a cache hit waits on.
pub const ZSTD_LEVEL: i32 = 1;

/// Size of the fixed header before the compressed payload.
const HEADER_LEN: usize = 4 + 4 + 32 + 8;
const CHECKSUM_RANGE: std::ops::Range<usize> = 8..40;
const ULEN_RANGE: std::ops::Range<usize> = 40..48;
/// Smallest possible encoded file record (empty name, empty data).
const MIN_FILE_RECORD: usize = 4 + 4 + 8;
/// Smallest possible encoded meta record (empty name, empty value).
const MIN_META_RECORD: usize = 4 + 8;
/// Upper bound on the ratio used to pre-size the decompression buffer.
/// Larger (genuinely very compressible) payloads still decode; the buffer
/// just grows as real output arrives.
const PREALLOC_RATIO: usize = 64;

/// Errors from encoding or decoding an [`Entry`].
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The bytes are not a valid entry (truncated, bit-flipped, wrong magic,
    /// bad lengths...).
    #[error("corrupt cache entry: {0}")]
    Corrupt(String),
    /// The entry was written in a format version this build cannot read.
    #[error("unsupported cache entry format version {found} (this build reads {supported})")]
    Version {
        /// Version found in the entry header.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// A name, value or count does not fit the format's length fields.
    #[error("cache entry too large to encode: {0}")]
    TooLarge(String),
    /// The compressor failed.
    #[error("compressing cache entry: {0}")]
    Compress(#[source] std::io::Error),
}

/// The contents of an [`EntryFile`]: in memory, or a spooled copy on disk
/// that is read while the entry is encoded (so a store never holds a
/// large output in memory) and removed when the last handle drops.
#[derive(Debug, Clone)]
pub enum FileData {
    /// Bytes in memory (what decoding gives).
    Bytes(Vec<u8>),
    /// A private copy of `len` bytes.
    Spooled {
        /// The copy, removed on drop.
        path: Arc<tempfile::TempPath>,
        /// Its length.
        len: u64,
    },
}

impl FileData {
    /// The length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            FileData::Bytes(b) => b.len() as u64,
            FileData::Spooled { len, .. } => *len,
        }
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when they are in memory.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            FileData::Bytes(b) => Some(b),
            FileData::Spooled { .. } => None,
        }
    }

    /// Writes the contents to `w`; a spooled copy must still have its
    /// length.
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        match self {
            FileData::Bytes(b) => w.write_all(b),
            FileData::Spooled { path, len } => {
                let file = std::fs::File::open(path.as_ref() as &Path)?;
                let mut r = std::io::BufReader::with_capacity(COPY_BUFFER, file).take(*len);
                let copied = std::io::copy(&mut r, w)?;
                if copied != *len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("spooled file shrank from {len} to {copied} bytes"),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Default for FileData {
    fn default() -> Self {
        FileData::Bytes(Vec::new())
    }
}

impl From<Vec<u8>> for FileData {
    fn from(b: Vec<u8>) -> Self {
        FileData::Bytes(b)
    }
}

impl PartialEq for FileData {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FileData::Bytes(a), FileData::Bytes(b)) => a == b,
            (FileData::Spooled { path: a, len: x }, FileData::Spooled { path: b, len: y }) => {
                (a.as_ref() as &Path) == (b.as_ref() as &Path) && x == y
            }
            _ => false,
        }
    }
}

impl Eq for FileData {}

/// One output file stored in an [`Entry`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryFile {
    /// Logical name of the file (e.g. `"obj"`, `"dep-info"`). Not a path.
    pub name: String,
    /// Unix permission bits to restore (e.g. `0o644`).
    pub mode: u32,
    /// File contents.
    pub data: FileData,
}

/// Buffer of the streaming encoder's reads and writes.
const COPY_BUFFER: usize = 256 * 1024;

/// A writer that hashes what goes through it (the compressed payload).
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A cached compilation result: output files plus small named blobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Output files, in the order they were added.
    pub files: Vec<EntryFile>,
    /// Small named blobs such as stdout, stderr or a manifest.
    pub meta: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// Encodes the entry into the stored format (see the module docs).
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let ulen = self.payload_len()?;
        let mut out = Vec::with_capacity(HEADER_LEN + usize::try_from(ulen / 2).unwrap_or(0));
        out.extend_from_slice(&header(ulen));
        let mut out = self.compress_into(out, ulen)?;
        let digest = blake3::hash(&out[HEADER_LEN..]);
        out[CHECKSUM_RANGE].copy_from_slice(digest.as_bytes());
        Ok(out)
    }

    /// Encodes the entry into a new temporary file in `dir`, streaming
    /// spooled files through the compressor: memory stays at the
    /// compressor's and two buffers' size whatever the outputs weigh.
    pub fn encode_to_file(&self, dir: &Path) -> Result<tempfile::NamedTempFile, EntryError> {
        let ulen = self.payload_len()?;
        let mut tmp = tempfile::Builder::new()
            .prefix("tmp-entry-")
            .tempfile_in(dir)
            .map_err(EntryError::Compress)?;
        let file = tmp.as_file_mut();
        file.write_all(&header(ulen))
            .map_err(EntryError::Compress)?;
        let out = Hashing {
            inner: std::io::BufWriter::with_capacity(COPY_BUFFER, &mut *file),
            hasher: blake3::Hasher::new(),
        };
        let mut out = self.compress_into(out, ulen)?;
        out.flush().map_err(EntryError::Compress)?;
        let digest = out.hasher.finalize();
        drop(out);
        file.seek(SeekFrom::Start(CHECKSUM_RANGE.start as u64))
            .and_then(|_| file.write_all(digest.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(EntryError::Compress)?;
        Ok(tmp)
    }

    /// Writes the payload (`ulen` bytes uncompressed) as one zstd frame
    /// into `w`, and hands `w` back.
    fn compress_into<W: Write>(&self, w: W, ulen: u64) -> Result<W, EntryError> {
        let mut enc =
            zstd::stream::write::Encoder::new(w, ZSTD_LEVEL).map_err(EntryError::Compress)?;
        enc.set_pledged_src_size(Some(ulen))
            .map_err(EntryError::Compress)?;
        enc.include_contentsize(true)
            .map_err(EntryError::Compress)?;
        enc.include_checksum(false).map_err(EntryError::Compress)?;
        self.write_payload(&mut enc).map_err(EntryError::Compress)?;
        enc.finish().map_err(EntryError::Compress)
    }

    /// Decodes an entry produced by [`Entry::encode`], verifying it fully.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let (compressed, ulen) = check_header(bytes)?;
        let payload = decompress(compressed, ulen)?;
        parse_payload(&payload)
    }

    /// The first file called `name`, if any.
    pub fn file(&self, name: &str) -> Option<&EntryFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The first metadata blob called `name`, if any.
    pub fn meta(&self, name: &str) -> Option<&[u8]> {
        self.meta
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Length of the uncompressed payload, checking every field fits.
    fn payload_len(&self) -> Result<u64, EntryError> {
        check_u32("file count", self.files.len())?;
        check_u32("meta count", self.meta.len())?;
        let mut total: u64 = 8; // the two counts
        for f in &self.files {
            check_u32("file name", f.name.len())?;
            total = total
                .checked_add((MIN_FILE_RECORD + f.name.len()) as u64)
                .and_then(|t| t.checked_add(f.data.len()))
                .ok_or_else(|| EntryError::TooLarge("payload length overflows u64".into()))?;
        }
        for (name, value) in &self.meta {
            check_u32("meta name", name.len())?;
            total = total
                .checked_add((MIN_META_RECORD + name.len()) as u64)
                .and_then(|t| t.checked_add(value.len() as u64))
                .ok_or_else(|| EntryError::TooLarge("payload length overflows u64".into()))?;
        }
        Ok(total)
    }

    /// Writes the uncompressed payload. Lengths were checked by
    /// [`Entry::payload_len`], so the casts below cannot truncate.
    fn write_payload(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&(self.files.len() as u32).to_le_bytes())?;
        for f in &self.files {
            w.write_all(&(f.name.len() as u32).to_le_bytes())?;
            w.write_all(f.name.as_bytes())?;
            w.write_all(&f.mode.to_le_bytes())?;
            w.write_all(&f.data.len().to_le_bytes())?;
            f.data.write_to(w)?;
        }
        w.write_all(&(self.meta.len() as u32).to_le_bytes())?;
        for (name, value) in &self.meta {
            w.write_all(&(name.len() as u32).to_le_bytes())?;
            w.write_all(name.as_bytes())?;
            w.write_all(&(value.len() as u64).to_le_bytes())?;
            w.write_all(value)?;
        }
        Ok(())
    }
}

/// The fixed header with a zero checksum (filled in once the payload is
/// compressed).
fn header(ulen: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[ULEN_RANGE].copy_from_slice(&ulen.to_le_bytes());
    h
}

/// Checks the header, the checksum and the frame's declared size; returns
/// the compressed payload and its uncompressed length.
fn check_header(bytes: &[u8]) -> Result<(&[u8], u64), EntryError> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    let (header, compressed) = bytes.split_at(HEADER_LEN);
    if header[..4] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let version = le_u32(&header[4..8]);
    if version != FORMAT_VERSION {
        return Err(EntryError::Version {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if blake3::hash(compressed).as_bytes()[..] != header[CHECKSUM_RANGE] {
        return Err(corrupt("checksum mismatch"));
    }
    let ulen = le_u64(&header[ULEN_RANGE]);
    match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(n)) if n == ulen => Ok((compressed, ulen)),
        other => Err(corrupt(format!(
            "header length {ulen} does not match zstd frame size {other:?}"
        ))),
    }
}

fn corrupt(msg: impl Into<String>) -> EntryError {
    EntryError::Corrupt(msg.into())
}

fn check_u32(what: &str, n: usize) -> Result<(), EntryError> {
    if u32::try_from(n).is_ok() {
        Ok(())
    } else {
        Err(EntryError::TooLarge(format!("{what} {n} exceeds u32")))
    }
}

/// Decompresses one zstd frame that must yield exactly `ulen` bytes.
///
/// The usual case allocates exactly `ulen` bytes and decompresses in one
/// call (about 10% faster than streaming). That is only done when `ulen` is
/// at most [`PREALLOC_RATIO`] times the compressed size; otherwise the
/// output grows as real data arrives and reading stops one byte past `ulen`,
/// so a lying header cannot force a large allocation.
fn decompress(compressed: &[u8], ulen: u64) -> Result<Vec<u8>, EntryError> {
    let zstd_err = |e: std::io::Error| corrupt(format!("zstd: {e}"));
    let Ok(n) = usize::try_from(ulen) else {
        return Err(corrupt(format!("payload length {ulen} exceeds memory")));
    };
    let out = if n <= compressed.len().saturating_mul(PREALLOC_RATIO) {
        zstd::bulk::decompress(compressed, n).map_err(zstd_err)?
    } else {
        let mut out = Vec::with_capacity(compressed.len().saturating_mul(PREALLOC_RATIO));
        zstd::stream::read::Decoder::with_buffer(compressed)
            .map_err(zstd_err)?
            .single_frame()
            .take(ulen.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(zstd_err)?;
        out
    };
    if out.len() != n {
        return Err(corrupt(format!(
            "payload decompressed to {} bytes, header says {ulen}",
            out.len()
        )));
    }
    Ok(out)
}

/// A bounds-checked reader over the uncompressed payload.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, len: u64, what: &str) -> Result<&'a [u8], EntryError> {
        match usize::try_from(len) {
            Ok(n) if n <= self.buf.len() => {
                let (head, tail) = self.buf.split_at(n);
                self.buf = tail;
                Ok(head)
            }
            _ => Err(corrupt(format!(
                "{what}: length {len} exceeds the {} bytes remaining",
                self.buf.len()
            ))),
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32, EntryError> {
        self.bytes(4, what).map(le_u32)
    }

    fn u64(&mut self, what: &str) -> Result<u64, EntryError> {
        self.bytes(8, what).map(le_u64)
    }

    fn name(&mut self, what: &str) -> Result<String, EntryError> {
        let len = self.u32(what)?;
        let raw = self.bytes(u64::from(len), what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| corrupt(format!("{what} is not UTF-8")))
    }

    /// A capacity for `count` records of at least `min_record` bytes each,
    /// capped by what the remaining input could possibly hold.
    fn capacity(&self, count: u32, min_record: usize) -> usize {
        (count as usize).min(self.buf.len() / min_record)
    }
}

fn parse_payload(payload: &[u8]) -> Result<Entry, EntryError> {
    let mut r = Reader { buf: payload };

    let file_count = r.u32("file count")?;
    let mut files = Vec::with_capacity(r.capacity(file_count, MIN_FILE_RECORD));
    for _ in 0..file_count {
        let name = r.name("file name")?;
        let mode = r.u32("file mode")?;
        let len = r.u64("file length")?;
        let data = r.bytes(len, "file data")?.to_vec();
        files.push(EntryFile {
            name,
            mode,
            data: data.into(),
        });
    }

    let meta_count = r.u32("meta count")?;
    let mut meta = Vec::with_capacity(r.capacity(meta_count, MIN_META_RECORD));
    for _ in 0..meta_count {
        let name = r.name("meta name")?;
        let len = r.u64("meta length")?;
        let value = r.bytes(len, "meta value")?.to_vec();
        meta.push((name, value));
    }

    if !r.buf.is_empty() {
        return Err(corrupt(format!(
            "{} trailing bytes after payload",
            r.buf.len()
        )));
    }
    Ok(Entry { files, meta })
}

/// Reads a u32 LE from a slice of exactly 4 bytes (callers guarantee it).
fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// Reads a u64 LE from a slice of exactly 8 bytes (callers guarantee it).
fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

mod stream;
pub use stream::{decode_streaming, StreamError};

#[cfg(test)]
mod tests;
