//! Links the bundled SQLite and zstd C libraries for real: prints SQLite's
//! version and round-trips a buffer through zstd.

use std::ffi::CStr;

fn main() {
    // SAFETY: sqlite3_libversion returns a pointer to a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(libsqlite3_sys::sqlite3_libversion()) };
    println!("sqlite {}", version.to_string_lossy());

    let input = b"cachepot c-heavy workload ".repeat(1000);
    let compressed = zstd::encode_all(&input[..], 3).expect("zstd compression failed");
    let output = zstd::decode_all(&compressed[..]).expect("zstd decompression failed");
    assert_eq!(input, output);
    println!(
        "zstd {}: {} -> {} bytes",
        zstd::zstd_safe::version_number(),
        input.len(),
        compressed.len()
    );
}
