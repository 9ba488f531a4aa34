//! C, C++, assembler and Objective-C compiles (gcc and clang): argument
//! parsing and the files a compile writes. Not wired into the daemon yet:
//! lookups for these compilers come with their key and preprocessor mode.

pub mod args;

pub use args::{parse, CCompile, CParsed, Language};
