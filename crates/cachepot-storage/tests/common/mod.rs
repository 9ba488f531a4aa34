//! Helpers of the storage crate's tests against real servers.

#![allow(dead_code)]

/// A variable that `scripts/services.sh env` prints; a test without it
/// fails (it never skips).
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test servers with `scripts/services.sh start` and export `scripts/services.sh env`, or run `bash scripts/test-all.sh`")
    })
}

/// Bytes that do not repeat, so that nothing could shorten them.
pub fn value(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
