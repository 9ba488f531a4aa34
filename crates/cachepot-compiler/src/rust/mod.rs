//! rustc: argument parsing, outputs and keys.

pub mod args;
pub mod key;
pub mod kinds;
pub mod link;
pub mod linker;

pub use crate::manifest::{Manifest, ManifestError};
pub use crate::output::{Output, Role};
pub use args::{parse, Extern, OutputFamily, Parsed, RustCompile, Uncacheable};
pub use key::{base_dirs, env_in_key, key_a, KeyContext};
pub use kinds::{CrateType, EmitKind};
