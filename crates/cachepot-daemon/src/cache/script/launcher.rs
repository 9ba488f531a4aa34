//! The launcher put where cargo expects a build script's binary.
//!
//! Cargo hard-links the binary rustc wrote (`build_script_build-<hash>`)
//! to `build-script-build` once the compile returns, and runs that. After
//! a build script's compile (a hit or a miss), the binary is renamed to
//! `<name>.cachepot-real` beside it and a small shell script takes its
//! name: it runs `cachepot --run-build-script <real> ARGS…`, or the real
//! binary itself when cachepot is gone. Any failure here leaves the real
//! binary in place: the build goes on uncached.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::ffi::OsString;

use cachepot_compiler::digest::FileDigester;
use cachepot_compiler::key::env_value;
use cachepot_compiler::rust::{CrateType, Role, RustCompile};

use crate::Shared;

/// The suffix of the real binary's name.
pub const REAL_SUFFIX: &str = ".cachepot-real";

/// Whether `compile` builds a build script that is to run through the
/// cache (not turned off, globally or for its package, as the compile's
/// `CARGO_PKG_NAME` names it). Cheap for every other compile: it is asked
/// after each one.
pub(in crate::cache) fn is_cached_script(
    shared: &Shared,
    compile: &RustCompile,
    env: &[(OsString, OsString)],
) -> bool {
    let settings = &shared.config.build_scripts;
    settings.enabled
        && compile.crate_name.starts_with("build_script_")
        && compile.crate_types == [CrateType::Bin]
        && (settings.skip.is_empty()
            || !env_value(env, "CARGO_PKG_NAME")
                .and_then(|p| p.into_string().ok())
                .is_some_and(|p| settings.skip.contains(&p)))
}

/// The binary rustc wrote for a build script (see [`is_cached_script`]).
pub(in crate::cache) fn script_binary(
    outputs: &[cachepot_compiler::rust::Output],
) -> Option<PathBuf> {
    outputs
        .iter()
        .find(|o| o.role == Role::Linked(CrateType::Bin))
        .map(|o| o.path.clone())
}

/// Single-quotes a path for `sh`.
fn quoted(p: &Path) -> String {
    let text = String::from_utf8_lossy(p.as_os_str().as_bytes());
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The launcher's text.
fn script(cachepot: &Path, real_name: &str) -> String {
    let me = quoted(cachepot);
    let real = real_name.replace('\'', r"'\''");
    format!(
        "#!/bin/sh\n\
         # Written by cachepot: runs this build script through its cache\n\
         # (CACHEPOT_BUILD_SCRIPTS=off turns this off). The script is beside.\n\
         case $0 in */*) d=${{0%/*}} ;; *) d=. ;; esac\n\
         real=\"$d\"/'{real}'\n\
         if [ -x {me} ]; then exec {me} --run-build-script \"$real\" \"$@\"; fi\n\
         exec \"$real\" \"$@\"\n"
    )
}

/// Puts the launcher in place of the build script binary at `binary`.
/// Returns whether it did; on failure the real binary stays where it was.
pub(in crate::cache) fn install(shared: &Shared, binary: &Path) -> bool {
    match try_install(shared, binary) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(binary = %binary.display(), error = %e, "could not put the build script launcher in place");
            false
        }
    }
}

fn try_install(shared: &Shared, binary: &Path) -> io::Result<()> {
    let cachepot = std::env::current_exe()?;
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("build script name is not UTF-8"))?;
    let dir = binary
        .parent()
        .ok_or_else(|| io::Error::other("build script without a directory"))?;
    let real_name = format!("{name}{REAL_SUFFIX}");
    let real = dir.join(&real_name);
    // The digest travels with the binary: its runs are keyed by it.
    let digest = shared.digests.digest(binary).ok();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.launcher"))
        .tempfile_in(dir)?;
    tmp.write_all(script(&cachepot, &real_name).as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(binary, &real)?;
    if let Err(e) = tmp.persist(binary) {
        let _ = std::fs::rename(&real, binary);
        return Err(e.error);
    }
    if let (Some(d), Ok(meta)) = (digest, std::fs::metadata(&real)) {
        shared.digests.remember(&real, &meta, d);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_runs_cachepot_or_else_the_real_binary() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("build_script_build-1.cachepot-real");
        std::fs::write(&real, "#!/bin/sh\necho real \"$@\"\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fake = dir.path().join("it's cachepot");
        std::fs::write(&fake, "#!/bin/sh\necho cachepot \"$@\"\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let launcher = dir.path().join("build-script-build");
        std::fs::write(
            &launcher,
            script(&fake, "build_script_build-1.cachepot-real"),
        )
        .unwrap();
        std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = || {
            let out = std::process::Command::new(&launcher)
                .arg("x y")
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(
            run(),
            format!("cachepot --run-build-script {} x y\n", real.display())
        );
        std::fs::remove_file(&fake).unwrap();
        assert_eq!(run(), "real x y\n");
    }
}
