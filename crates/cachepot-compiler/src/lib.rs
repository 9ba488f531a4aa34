//! Compilers, their arguments and cache keys.
//!
//! This crate knows what a compilation reads and writes and how to name it
//! in the cache. It knows nothing of the daemon or of storage: it runs a
//! compiler only to identify a toolchain or to ask what `native` is
//! (see [`native`]), and reads files only through the
//! caller's [`digest::FileDigester`] (plus `@argfile`s and the sysroot).

pub mod c;
pub mod depinfo;
pub mod digest;
pub mod key;
pub mod manifest;
pub mod native;
pub mod output;
pub mod paths;
pub mod rust;
pub mod script;
pub mod toolchain;

pub use digest::{Digest, FileDigester};
pub use paths::{BaseDirs, PathPolicy};
