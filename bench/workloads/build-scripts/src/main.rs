//! Uses every dependency, so that each library is really linked.

use std::io::{Read, Write};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(serde::Serialize)]
struct Report {
    blake3: String,
    sha256: String,
    bzip2: usize,
    xz: usize,
    zlib: String,
    zone: String,
}

fn main() -> anyhow::Result<()> {
    let data = b"cachepot build-script workload".repeat(64);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&data)?;
    let bz = bz.finish()?;
    let mut xz = Vec::new();
    xz2::read::XzEncoder::new(&data[..], 6).read_to_end(&mut xz)?;
    let sha = ring::digest::digest(&ring::digest::SHA256, &data);
    let tz: chrono_tz::Tz = "Europe/Paris".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = Report {
        blake3: blake3::hash(&data).to_hex().to_string(),
        sha256: sha.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        bzip2: bz.len(),
        xz: xz.len(),
        zlib: zlib_version(),
        zone: tz.name().to_string(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn zlib_version() -> String {
    // SAFETY: zlibVersion takes nothing and returns a static C string.
    let v = unsafe { std::ffi::CStr::from_ptr(libz_sys::zlibVersion()) };
    v.to_string_lossy().into_owned()
}
