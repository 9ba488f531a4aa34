//! File digests memoised by path and stamp (size, mtime, ctime, inode,
//! device), for the daemon's lifetime.
//!
//! A stamp names a file's version without reading it: any write changes
//! its mtime and ctime, and a file replaced by rename (as rustc and the
//! linker write) has another inode. ctime cannot be set back by a user
//! (`touch -d`, `cp -p` and `rsync -t` set mtime, and ctime moves to now),
//! so a content change under an old stamp would need a write within one
//! timestamp tick of the stamp being taken; files that recent are read
//! again instead of trusted ([`RACY_WINDOW_FINE`], [`RACY_WINDOW`]),
//! except the ones the daemon wrote itself or read after their compiler
//! exited ([`DigestMemo::remember`], [`DigestMemo::remember_read`]).
//!
//! Saving the memo for the next daemon was tried and measured: a warm
//! workload-a build with a saved memo was no faster (2.0 s either way;
//! hashing the toolchain's 160 MB of libraries takes about 35 ms), so the
//! memo lives in memory only.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use cachepot_compiler::digest::{digest_file, Digest, FileDigester};

/// A file is not memoised while its last change is this recent, on a
/// filesystem with whole-second timestamps (FAT, HFS+, ext3): a write
/// within the same timestamp could otherwise go unseen.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The same for a filesystem with sub-second timestamps (ext4, XFS,
/// btrfs, tmpfs): Linux stamps files from a clock that advances once per
/// scheduler tick (at most 10 ms), so a change this old is in an earlier
/// tick than any write still to come. Without it, each crate of a build
/// that depends on an rlib written a second ago would hash it again.
const RACY_WINDOW_FINE: Duration = Duration::from_millis(100);

/// What identifies a file's version without reading it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Stamp {
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl Stamp {
    /// The modification time, in nanoseconds since the epoch.
    pub(crate) fn mtime_ns(&self) -> i128 {
        self.mtime_ns
    }
}

pub(crate) fn stamp(meta: &std::fs::Metadata) -> Stamp {
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Stamp {
        len: meta.len(),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        ino: meta.ino(),
        dev: meta.dev(),
    }
}

/// Whether a file changed (content or metadata) too recently for its
/// stamp to be trusted: within [`RACY_WINDOW_FINE`] on a filesystem whose
/// timestamps have nanoseconds, [`RACY_WINDOW`] elsewhere.
pub(crate) fn is_recent(meta: &std::fs::Metadata) -> bool {
    let st = stamp(meta);
    let fine = meta.mtime_nsec() != 0 || meta.ctime_nsec() != 0;
    let window = if fine { RACY_WINDOW_FINE } else { RACY_WINDOW };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
        .unwrap_or(0);
    now - st.mtime_ns.max(st.ctime_ns) < window.as_nanos() as i128
}

/// File digests memoised by path and stamp.
#[derive(Default)]
pub struct DigestMemo {
    map: RwLock<HashMap<PathBuf, (Stamp, Digest)>>,
}

impl FileDigester for DigestMemo {
    fn digest(&self, path: &Path) -> io::Result<Digest> {
        let meta = std::fs::metadata(path)?;
        let st = stamp(&meta);
        if let Ok(map) = self.map.read() {
            if let Some((s, d)) = map.get(path) {
                if *s == st {
                    return Ok(*d);
                }
            }
        }
        // Settled before the read began: any later write has a new stamp.
        let settled = !is_recent(&meta);
        let d = digest_file(path)?;
        // Re-check: a file changed while it was read must not be memoised.
        let after = std::fs::metadata(path)?;
        if settled && stamp(&after) == st {
            if let Ok(mut map) = self.map.write() {
                map.insert(path.to_path_buf(), (st, d));
            }
        }
        Ok(d)
    }
}

impl DigestMemo {
    /// Remembers the digest of a file the daemon has just written, with the
    /// metadata of its own handle after the last change to it (so the
    /// stamp describes exactly those bytes), even though it is recent: the
    /// racy window guards a file read while someone may still write it
    /// within one timestamp tick, and nobody writes these in place (rustc
    /// and the linker write new files and rename them; a new inode is a
    /// new stamp). A warm build otherwise hashes each restored rlib once
    /// for every crate that depends on it.
    pub fn remember(&self, path: &Path, written: &std::fs::Metadata, digest: Digest) {
        if let Ok(mut map) = self.map.write() {
            map.insert(path.to_path_buf(), (stamp(written), digest));
        }
    }

    /// Remembers the digest of a file the daemon read after its compiler
    /// exited, from the metadata of the open file before and after the read:
    /// kept only when the two agree (nothing wrote to it meanwhile). Nobody
    /// writes a finished compile's outputs in place (see
    /// [`DigestMemo::remember`]), so they are trusted although recent.
    pub fn remember_read(
        &self,
        path: &Path,
        before: &std::fs::Metadata,
        after: &std::fs::Metadata,
        digest: Digest,
    ) {
        if stamp(before) == stamp(after) {
            self.remember(path, after, digest);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set_mtime(p: &Path, t: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn age(p: &Path) {
        set_mtime(p, SystemTime::now() - Duration::from_secs(3600));
    }

    #[test]
    fn digest_follows_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let memo = DigestMemo::default();
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"one"));
        std::fs::write(&p, "two!").unwrap();
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"two!"));
        assert!(memo.digest(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn recently_changed_files_are_not_memoised() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one").unwrap();
        // An old mtime, but setting it changed the ctime just now.
        age(&p);
        let changed = SystemTime::now();
        let memo = DigestMemo::default();
        memo.digest(&p).unwrap();
        let (meta, elapsed) = (std::fs::metadata(&p).unwrap(), changed.elapsed().unwrap());
        assert!(
            meta.ctime_nsec() != 0,
            "this test needs sub-second timestamps"
        );
        // (A machine that stalled past the window has nothing to show.)
        if elapsed < RACY_WINDOW_FINE {
            assert_eq!(memo.len(), 0);
        }
    }

    #[test]
    fn settled_files_are_memoised_and_a_read_is_remembered_only_if_unchanged() {
        // A system file, unchanged for far longer than either window.
        let memo = DigestMemo::default();
        let sh = Path::new("/bin/sh");
        memo.digest(sh).unwrap();
        assert_eq!(memo.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.rlib");
        std::fs::write(&p, "one").unwrap();
        let before = std::fs::metadata(&p).unwrap();
        std::fs::write(&p, "two, longer").unwrap();
        let after = std::fs::metadata(&p).unwrap();
        memo.remember_read(&p, &before, &after, Digest::of(b"one"));
        assert_eq!(memo.len(), 1, "changed while read: not remembered");
        memo.remember_read(&p, &after, &after, Digest::of(b"planted"));
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"planted"));
    }

    #[test]
    fn a_remembered_digest_serves_until_the_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let memo = DigestMemo::default();
        // Remembered although recent: the remembered value is what is served
        // (a planted one proves the file was not read again).
        let planted = Digest::of(b"planted");
        memo.remember(&p, &std::fs::metadata(&p).unwrap(), planted);
        assert_eq!(memo.digest(&p).unwrap(), planted);
        // A new file renamed over it (as rustc writes): another inode.
        let q = dir.path().join("g");
        std::fs::write(&q, "two").unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"two"));
        // Rewritten in place with the same length and its old mtime put
        // back: the ctime still tells.
        let planted = Digest::of(b"planted again");
        let meta = std::fs::metadata(&p).unwrap();
        memo.remember(&p, &meta, planted);
        std::fs::write(&p, "TWO").unwrap();
        set_mtime(&p, meta.modified().unwrap());
        assert_eq!(memo.digest(&p).unwrap(), Digest::of(b"TWO"));
    }
}
