//! What comes back from the engine: checked, cleaned of the worker's
//! root, and written in place.

use std::path::{Path, PathBuf};

use cachepot_compiler::depinfo;
use cachepot_compiler::key::env_value;
use cachepot_dist::Executed;

use super::action::{not_utf8, root_path, ROOT_FILE};
use super::{Fallback, Ran, RemoteExec, MISSING_INPUT};
use crate::cache::restore::temp_beside;
use crate::cache::Pending;

/// An output the action writes.
pub(super) struct Wanted {
    /// Its path in the input root.
    pub name: String,
    /// Where it goes here; `None`: only checked.
    pub dest: Option<PathBuf>,
    /// A dependency file: it proves what the compile read.
    pub depinfo: bool,
    /// The compile may not write it.
    pub optional: bool,
}

impl Wanted {
    /// An output that goes to `dest`, at its own path in the root.
    pub(super) fn file(dest: PathBuf, depinfo: bool, optional: bool) -> std::io::Result<Wanted> {
        Ok(Wanted {
            name: root_path(&dest).ok_or_else(|| not_utf8(&dest))?,
            dest: Some(dest),
            depinfo,
            optional,
        })
    }
}

/// Which failed compiles on the worker are the compiler's own answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Errors {
    /// rustc's exit code 1 with a located diagnostic (`--> file:line`),
    /// no sign of a missing input, and the dep-info (checked below): one
    /// process, which writes dep-info once it read every input.
    Located,
    /// None: gcc's and clang's drivers run several programs (`cc1`
    /// writes the dependency file before the assembler runs), so an exit
    /// code that is not 0 may be the worker's own trouble. The compile
    /// runs here and its error is this machine's.
    CompiledHere,
}

/// Checks the engine's result and writes the outputs in place, unless
/// the wrapper has gone (`alive`).
pub(super) fn finish(
    remote: &RemoteExec,
    p: &Pending,
    wanted: Vec<Wanted>,
    errors: Errors,
    mut executed: Executed,
    alive: &dyn Fn() -> bool,
) -> Result<(Ran, Executed), (Fallback, String)> {
    let root = executed
        .outputs
        .remove(ROOT_FILE)
        .ok_or((Fallback::Outputs, format!("no {ROOT_FILE}")))?;
    // Text that names the worker's root names this machine's paths once
    // the root is taken out; any trace of it left is a difference.
    let strip =
        |what: &dyn std::fmt::Display, bytes: &[u8]| -> Result<Vec<u8>, (Fallback, String)> {
            let out = strip_root(bytes, &root);
            if names_root(&out, &root) {
                return Err((Fallback::WorkerPath, what.to_string()));
            }
            Ok(out)
        };
    let stdout = strip(&"stdout", &executed.stdout)?;
    let stderr = strip(&"stderr", &executed.stderr)?;
    match (executed.exit_code, errors) {
        (0, _) => {}
        (1, Errors::Located) => {
            let text = String::from_utf8_lossy(&stderr);
            if let Some(sign) = MISSING_INPUT.iter().find(|s| text.contains(*s)) {
                return Err((Fallback::MissingInput, (*sign).to_string()));
            }
            // `--> file:line` as text (also colored), or a span in
            // cargo's JSON diagnostics.
            if !text.contains("-->") && !text.contains("\"spans\":[{") {
                return Err((Fallback::Unproven, "no located diagnostic".into()));
            }
        }
        (code, Errors::CompiledHere) => {
            return Err((Fallback::CompileError, format!("exit code {code}")))
        }
        (code, _) => return Err((Fallback::Crashed, format!("exit code {code}"))),
    }
    let mut writes: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut depinfo_seen = false;
    for w in wanted {
        let Some(bytes) = executed.outputs.remove(&w.name) else {
            if w.optional || executed.exit_code != 0 {
                continue;
            }
            return Err((Fallback::Outputs, format!("{} not written", w.name)));
        };
        let bytes = if w.depinfo {
            same_environment(p, &bytes, &root).map_err(|e| (Fallback::Environment, e))?;
            depinfo_seen = true;
            strip(&w.name, &bytes)?
        } else if names_root(&bytes, &root) {
            return Err((Fallback::WorkerPath, w.name));
        } else {
            bytes
        };
        if let Some(path) = w.dest {
            writes.push((path, bytes));
        }
    }
    // A compile error is the compiler's own only when the compiler got as far
    // as its dep-info, and that shows the worker read what this machine has.
    if !depinfo_seen {
        return Err((Fallback::Unproven, "no dep-info".into()));
    }
    if !alive() {
        return Err((Fallback::WrapperGone, String::new()));
    }
    write_outputs(&writes).map_err(|e| (Fallback::Outputs, e.to_string()))?;
    for (path, bytes) in &writes {
        remote.executor.remember(path, bytes);
    }
    let ran = Ran {
        exit_code: executed.exit_code,
        stdout,
        stderr,
    };
    Ok((ran, executed))
}

/// Whether the worker's compile saw this machine's environment, as its
/// dep-info tells: every `env!` variable with the value it has here, and
/// no absolute path outside the input root.
fn same_environment(p: &Pending, raw: &[u8], root: &[u8]) -> Result<(), String> {
    let root = String::from_utf8_lossy(root);
    let stripped = String::from_utf8_lossy(&strip_root(raw, root.as_bytes())).into_owned();
    let raw = String::from_utf8_lossy(raw);
    // The worker's working directory; a relative path with enough `..`
    // leaves the root (the input root holds no links: `..` is lexical).
    let root_dir = Path::new(root.as_ref());
    let worker_cwd = root_dir.join(p.cwd.strip_prefix("/").unwrap_or(&p.cwd));
    for f in depinfo::parse(&raw).files {
        if root.is_empty() {
            break;
        }
        let read = super::action::clean(&worker_cwd, Path::new(&f));
        if !read.starts_with(root_dir) || read == root_dir {
            return Err(format!("read {f} outside its inputs"));
        }
    }
    for (name, value) in depinfo::parse(&stripped).env {
        let here =
            env_value(&p.env, &name).map(|v| depinfo::escape_env_value(&v.to_string_lossy()));
        if here != value {
            return Err(format!("{name} differs"));
        }
    }
    Ok(())
}

/// `bytes` with the worker's root taken out where a path starts (at the
/// start, after white space, `:`, `=`, `"` or `'`): `ROOT/a` becomes `/a`.
fn strip_root(bytes: &[u8], root: &[u8]) -> Vec<u8> {
    if root.is_empty() {
        return bytes.to_vec();
    }
    let mut needle = root.to_vec();
    needle.push(b'/');
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(at) = memchr::memmem::find(&bytes[i..], &needle) {
        let at = i + at;
        let starts_path = at == 0
            || matches!(
                bytes[at - 1],
                b' ' | b'\t' | b'\n' | b':' | b'=' | b'"' | b'\''
            );
        out.extend_from_slice(&bytes[i..at]);
        if starts_path {
            out.push(b'/');
        } else {
            out.extend_from_slice(&needle);
        }
        i = at + needle.len();
    }
    out.extend_from_slice(&bytes[i..]);
    out
}

/// Whether `bytes` still name the worker's root (as is, or with its
/// spaces escaped as make does).
fn names_root(bytes: &[u8], root: &[u8]) -> bool {
    if root.is_empty() {
        return false;
    }
    let escaped: Vec<u8> = root
        .iter()
        .flat_map(|&b| {
            if b == b' ' {
                vec![b'\\', b' ']
            } else {
                vec![b]
            }
        })
        .collect();
    memchr::memmem::find(bytes, root).is_some() || memchr::memmem::find(bytes, &escaped).is_some()
}

/// Writes every file beside its destination, then renames them all into
/// place: an error leaves none of them half done.
fn write_outputs(writes: &[(PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    let mut temps = Vec::with_capacity(writes.len());
    let staged = writes.iter().try_for_each(|(dest, bytes)| {
        let tmp = temp_beside(dest)?;
        temps.push(tmp.clone());
        std::fs::write(&tmp, bytes)
    });
    let renamed = staged.and_then(|()| {
        temps
            .iter()
            .zip(writes)
            .try_for_each(|(tmp, (dest, _))| std::fs::rename(tmp, dest))
    });
    if renamed.is_err() {
        for t in &temps {
            let _ = std::fs::remove_file(t);
        }
    }
    renamed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_root_comes_out_where_a_path_starts() {
        let r = b"/w/a1";
        assert_eq!(
            strip_root(b"/w/a1/x/a.rs: /w/a1/x/b.rs\n", r),
            b"/x/a.rs: /x/b.rs\n"
        );
        // The root as a part of a longer path, or of a name, stays.
        assert_eq!(strip_root(b"/w/a10/x /h/w/a1/y", r), b"/w/a10/x /h/w/a1/y");
        assert_eq!(
            strip_root(b"{\"file\":\"/w/a1/src/lib.rs\"}", r),
            b"{\"file\":\"/src/lib.rs\"}"
        );
        assert!(names_root(b"x /h/w/a1/y", r));
        assert!(names_root(b"/w/my\\ root/x", b"/w/my root"));
        assert!(!names_root(b"/x/a.rs", r));
        assert!(!names_root(b"anything", b""));
    }
}
