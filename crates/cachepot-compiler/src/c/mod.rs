//! C, C++, assembler and Objective-C compiles (gcc and clang): argument
//! parsing, the files a compile writes, compiler identity and cache keys.

pub mod args;
pub mod content;
pub mod key;
pub mod response;
pub mod toolchain;

pub use args::{parse, CCompile, CParsed, Language};
pub use content::{has_time_macros, ContentFlags};
pub use key::{args_use_time_macros, base_dirs, key_a, preprocessed_key, CKeyContext};
pub use toolchain::{CToolchain, Family};
