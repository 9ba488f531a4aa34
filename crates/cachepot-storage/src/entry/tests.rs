#![allow(clippy::unwrap_used)]

use super::*;

fn sample() -> Entry {
    Entry {
        files: vec![
            EntryFile {
                name: "obj".into(),
                mode: 0o644,
                data: b"\x7fELF some object bytes".to_vec().into(),
            },
            EntryFile {
                name: "dep-info".into(),
                mode: 0o600,
                data: Vec::new().into(),
            },
        ],
        meta: vec![
            ("stdout".into(), b"hello".to_vec()),
            ("stderr".into(), Vec::new()),
        ],
    }
}

/// Builds an entry around an arbitrary (possibly malformed) payload with a
/// correct header, checksum and zstd frame, to exercise payload parsing.
fn wrap_payload(payload: &[u8]) -> Vec<u8> {
    let compressed = zstd::bulk::compress(payload, 1).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(blake3::hash(&compressed).as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&compressed);
    out
}

/// Decodes with the streaming decoder, collecting the files.
fn streamed(bytes: &[u8]) -> Result<Entry, StreamError> {
    let mut files = Vec::new();
    let meta = decode_streaming(bytes, &mut |name, mode, data| {
        let mut buf = Vec::new();
        data.read_to_end(&mut buf)?;
        files.push(EntryFile {
            name: name.to_string(),
            mode,
            data: buf.into(),
        });
        Ok(())
    })?;
    Ok(Entry { files, meta })
}

/// Decodes with both decoders, checking that they agree: the same entry,
/// or the same kind of error.
fn both(bytes: &[u8]) -> Result<Entry, EntryError> {
    let whole = Entry::decode(bytes);
    let stream = streamed(bytes);
    match (&whole, &stream) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(EntryError::Corrupt(_)), Err(StreamError::Entry(EntryError::Corrupt(_))))
        | (Err(EntryError::Version { .. }), Err(StreamError::Entry(EntryError::Version { .. }))) => {
        }
        _ => panic!("the decoders disagree: {whole:?} and {stream:?}"),
    }
    whole
}

fn assert_corrupt(result: Result<Entry, EntryError>, context: &str) {
    match result {
        Err(EntryError::Corrupt(_)) => {}
        other => panic!("{context}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn round_trip() {
    let entry = sample();
    let bytes = entry.encode().unwrap();
    assert_eq!(&bytes[..4], b"CPOT");
    assert_eq!(&bytes[4..8], &FORMAT_VERSION.to_le_bytes());
    let decoded = both(&bytes).unwrap();
    assert_eq!(decoded, entry);
}

#[test]
fn round_trip_empty_and_large() {
    let empty = Entry::default();
    assert_eq!(both(&empty.encode().unwrap()).unwrap(), empty);

    // 3 MB of mixed data spans many zstd blocks and the streaming buffers.
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ (i % 251) as u8)
        .collect();
    let big = Entry {
        files: vec![EntryFile {
            name: "lib.rlib".into(),
            mode: 0o755,
            data: data.into(),
        }],
        meta: vec![("manifest".into(), vec![7; 1000])],
    };
    assert_eq!(both(&big.encode().unwrap()).unwrap(), big);

    // Zeros compress far beyond PREALLOC_RATIO: exercises the streaming path.
    let zeros = Entry {
        files: vec![EntryFile {
            name: "zeros".into(),
            mode: 0o644,
            data: vec![0; 4 << 20].into(),
        }],
        meta: Vec::new(),
    };
    let encoded = zeros.encode().unwrap();
    assert!((encoded.len() - HEADER_LEN) * PREALLOC_RATIO < 4 << 20);
    assert_eq!(both(&encoded).unwrap(), zeros);
}

#[test]
fn lookup_by_name() {
    let entry = sample();
    assert_eq!(entry.file("obj").map(|f| f.mode), Some(0o644));
    assert_eq!(entry.file("dep-info").map(|f| f.data.len()), Some(0));
    assert!(entry.file("missing").is_none());
    assert_eq!(entry.meta("stdout"), Some(&b"hello"[..]));
    assert_eq!(entry.meta("stderr"), Some(&b""[..]));
    assert!(entry.meta("missing").is_none());
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().encode().unwrap();
    for len in 0..bytes.len() {
        assert_corrupt(both(&bytes[..len]), &format!("truncated to {len}"));
    }
}

#[test]
fn every_flipped_byte_is_an_error() {
    let bytes = sample().encode().unwrap();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            let result = both(&bad);
            if (4..8).contains(&i) {
                assert!(
                    matches!(result, Err(EntryError::Version { .. })),
                    "byte {i} mask {mask:#x}: {result:?}"
                );
            } else {
                assert_corrupt(result, &format!("byte {i} mask {mask:#x}"));
            }
        }
    }
}

#[test]
fn appended_garbage_is_an_error() {
    let mut bytes = sample().encode().unwrap();
    bytes.push(0);
    assert_corrupt(both(&bytes), "trailing byte");
}

#[test]
fn wrong_version_is_distinct() {
    let mut bytes = sample().encode().unwrap();
    bytes[4..8].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    match both(&bytes) {
        Err(EntryError::Version { found, supported }) => {
            assert_eq!(found, FORMAT_VERSION + 1);
            assert_eq!(supported, FORMAT_VERSION);
        }
        other => panic!("expected Version, got {other:?}"),
    }
}

#[test]
fn wrong_magic_is_corrupt() {
    let mut bytes = sample().encode().unwrap();
    bytes[..4].copy_from_slice(b"XPOT");
    assert_corrupt(both(&bytes), "magic");
}

#[test]
fn wrapped_valid_payload_decodes() {
    // Sanity check for the helper used by the malformed-payload tests.
    let mut p = Vec::new();
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(b"a");
    p.extend_from_slice(&0o644u32.to_le_bytes());
    p.extend_from_slice(&2u64.to_le_bytes());
    p.extend_from_slice(b"xy");
    p.extend_from_slice(&0u32.to_le_bytes());
    let entry = both(&wrap_payload(&p)).unwrap();
    assert_eq!(
        entry.file("a").and_then(|f| f.data.bytes()),
        Some(&b"xy"[..])
    );
}

#[test]
fn huge_counts_and_lengths_are_rejected_without_allocating() {
    // Claims u32::MAX files in an 8-byte payload.
    let mut p = Vec::new();
    p.extend_from_slice(&u32::MAX.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    assert_corrupt(both(&wrap_payload(&p)), "huge file count");

    // One file whose data length claims u64::MAX.
    let mut p = Vec::new();
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&0o644u32.to_le_bytes());
    p.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_corrupt(both(&wrap_payload(&p)), "huge data length");

    // A name length larger than the rest of the payload.
    let mut p = Vec::new();
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&1000u32.to_le_bytes());
    p.extend_from_slice(b"abc");
    assert_corrupt(both(&wrap_payload(&p)), "long name");
}

#[test]
fn lying_uncompressed_length_is_rejected() {
    let mut bytes = sample().encode().unwrap();
    // Header claims an enormous payload; checksum still matches because it
    // only covers the compressed bytes.
    bytes[40..48].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert_corrupt(both(&bytes), "lying length");
}

#[test]
fn invalid_utf8_name_and_trailing_payload_are_rejected() {
    let mut p = Vec::new();
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&2u32.to_le_bytes());
    p.extend_from_slice(&[0xff, 0xfe]);
    p.extend_from_slice(&0u64.to_le_bytes());
    assert_corrupt(both(&wrap_payload(&p)), "bad utf-8");

    let mut p = Vec::new();
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.push(0);
    assert_corrupt(both(&wrap_payload(&p)), "trailing payload");
}

#[test]
fn a_streaming_sink_may_stop_early_and_its_errors_are_its_own() {
    let bytes = sample().encode().unwrap();
    // Reading nothing: the rest of each file is skipped, the meta still comes.
    let meta = decode_streaming(&bytes, &mut |_, _, _| Ok(())).unwrap();
    assert_eq!(meta, sample().meta);
    let failed = decode_streaming(&bytes, &mut |_, _, _| {
        Err(std::io::Error::other("disk full"))
    });
    assert!(matches!(failed, Err(StreamError::Sink(_))), "{failed:?}");
}

#[test]
fn spooled_files_encode_to_a_file_like_bytes_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    let path = dir.path().join("out.rlib");
    std::fs::write(&path, &big).unwrap();
    let spooled = Entry {
        files: vec![EntryFile {
            name: "rlib".into(),
            mode: 0o644,
            data: FileData::Spooled {
                path: std::sync::Arc::new(tempfile::TempPath::try_from_path(&path).unwrap()),
                len: big.len() as u64,
            },
        }],
        meta: vec![("stdout".into(), b"ok".to_vec())],
    };
    let in_memory = Entry {
        files: vec![EntryFile {
            name: "rlib".into(),
            mode: 0o644,
            data: big.clone().into(),
        }],
        meta: spooled.meta.clone(),
    };
    let encoded = spooled.encode_to_file(dir.path()).unwrap();
    let bytes = std::fs::read(encoded.path()).unwrap();
    assert_eq!(bytes, in_memory.encode().unwrap());
    assert_eq!(both(&bytes).unwrap(), in_memory);
    // The spooled copy goes away with the last handle.
    drop(spooled);
    assert!(!path.exists());
}

#[test]
fn a_spooled_file_that_shrank_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.o");
    std::fs::write(&path, b"short").unwrap();
    let entry = Entry {
        files: vec![EntryFile {
            name: "obj".into(),
            mode: 0o644,
            data: FileData::Spooled {
                path: std::sync::Arc::new(tempfile::TempPath::try_from_path(&path).unwrap()),
                len: 100,
            },
        }],
        meta: Vec::new(),
    };
    assert!(entry.encode_to_file(dir.path()).is_err());
}
