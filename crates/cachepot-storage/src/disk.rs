//! [`DiskCache`]: a local-disk LRU backend.
//!
//! Layout: `<dir>/v1/<shard>/<key>`, where `<shard>` is the first two
//! characters of the key after any namespace prefix (everything up to the
//! last `-`). Writes go to a temporary file in the shard directory and are
//! renamed into place, so readers and concurrent writers only ever see whole
//! values. A value's mtime is its LRU clock: `get` bumps it to now.
//!
//! Size accounting: the tree is scanned once at [`DiskCache::open`]; after
//! that the totals are kept in memory and adjusted by `put`/`remove`. When a
//! `put` takes the total above the limit, the tree is rescanned (which also
//! corrects any drift caused by other processes sharing the directory) and
//! the least recently used values are deleted until the total is at most
//! 90% of the limit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tracing::debug;

use crate::{is_valid_key, Storage, StorageError, StorageInfo, StorageKey};

/// Name of the versioned data directory under the cache root.
const DATA_DIR: &str = "v1";
/// Prefix of in-progress temporary files. `.` never occurs in a key.
const TEMP_PREFIX: &str = ".tmp.";
/// Temporary files older than this are considered left over from a crash.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

/// In-memory usage totals.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    size_bytes: u64,
    entries: u64,
}

/// One value found by a scan.
struct ScannedEntry {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
}

/// A local-disk LRU cache implementing [`Storage`].
#[derive(Debug)]
pub struct DiskCache {
    root: PathBuf,
    data_dir: PathBuf,
    max_size_bytes: u64,
    /// Usage totals. Also held across the stat+rename of a `put` and across
    /// an eviction scan so that in-process accounting stays consistent.
    totals: Mutex<Totals>,
    /// Serialises evictions so that only one thread rescans at a time.
    evicting: Mutex<()>,
    /// Makes temporary file names unique within this process.
    temp_counter: AtomicU64,
}

impl DiskCache {
    /// Opens (creating if needed) a cache rooted at `dir` that keeps at most
    /// `max_size_bytes` of values.
    ///
    /// Scans the tree once to learn the current size, removing temporary
    /// files left behind by crashed writers.
    pub fn open(dir: &Path, max_size_bytes: u64) -> Result<DiskCache, StorageError> {
        let data_dir = dir.join(DATA_DIR);
        fs::create_dir_all(&data_dir).map_err(|e| StorageError::io("create dir", &data_dir, e))?;
        let cache = DiskCache {
            root: dir.to_path_buf(),
            data_dir,
            max_size_bytes,
            totals: Mutex::new(Totals::default()),
            evicting: Mutex::new(()),
            temp_counter: AtomicU64::new(0),
        };
        let scanned = cache.scan()?;
        let mut totals = cache.lock_totals();
        totals.entries = scanned.len() as u64;
        totals.size_bytes = scanned.iter().map(|e| e.len).sum();
        drop(totals);
        debug!(dir = %dir.display(), "opened disk cache");
        Ok(cache)
    }

    /// The largest value `put` accepts: anything bigger could not stay in
    /// the cache once eviction brings it down to its low-water mark.
    pub fn max_value_size(&self) -> u64 {
        self.low_water()
    }

    /// Eviction target: 90% of the limit.
    fn low_water(&self) -> u64 {
        self.max_size_bytes - self.max_size_bytes / 10
    }

    fn lock_totals(&self) -> MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shard_dir(&self, key: &StorageKey) -> PathBuf {
        let s = key.as_str();
        let rest = s.rsplit('-').next().unwrap_or(s);
        // Keys are ASCII, so byte slicing is safe; very short keys share "00".
        let shard = rest.get(..2).unwrap_or("00");
        self.data_dir.join(shard)
    }

    /// Path where the value for `key` is stored.
    pub fn path_for(&self, key: &StorageKey) -> PathBuf {
        self.shard_dir(key).join(key.as_str())
    }

    /// Creates a uniquely named temporary file in `dir`.
    fn create_temp(&self, dir: &Path) -> Result<(PathBuf, File), StorageError> {
        let pid = std::process::id();
        let mut attempts = 0;
        loop {
            let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = dir.join(format!("{TEMP_PREFIX}{pid}.{n}.{nanos}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 100 => {
                    attempts += 1;
                }
                Err(e) => return Err(StorageError::io("create temp file", path, e)),
            }
        }
    }

    /// Writes `value` to a fresh temporary file in `dir`.
    fn write_temp(
        &self,
        dir: &Path,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<PathBuf, StorageError> {
        let (path, mut file) = match self.create_temp(dir) {
            Ok(t) => t,
            Err(StorageError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                // Shard directory missing (first write, or removed under us).
                fs::create_dir_all(dir).map_err(|e| StorageError::io("create dir", dir, e))?;
                self.create_temp(dir)?
            }
            Err(e) => return Err(e),
        };
        if let Err(e) = fill(&mut file) {
            drop(file);
            remove_quietly(&path);
            return Err(StorageError::io("write", path, e));
        }
        Ok(path)
    }

    /// Writes a value of `size` bytes (what `fill` writes) to a temporary
    /// file in the key's shard, renames it into place and keeps the totals.
    fn put_with(
        &self,
        key: &StorageKey,
        size: u64,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), StorageError> {
        if size > self.max_value_size() {
            return Err(StorageError::TooLarge {
                size,
                limit: self.max_value_size(),
            });
        }
        let dir = self.shard_dir(key);
        let final_path = dir.join(key.as_str());
        let temp = self.write_temp(&dir, fill)?;

        let over_limit = {
            let mut totals = self.lock_totals();
            let old = match existing_len(&final_path) {
                Ok(old) => old,
                Err(e) => {
                    remove_quietly(&temp);
                    return Err(StorageError::io("stat", final_path, e));
                }
            };
            if let Err(e) = fs::rename(&temp, &final_path) {
                remove_quietly(&temp);
                return Err(StorageError::io("rename", final_path, e));
            }
            match old {
                Some(old_len) => {
                    totals.size_bytes = totals
                        .size_bytes
                        .saturating_sub(old_len)
                        .saturating_add(size);
                }
                None => {
                    totals.size_bytes = totals.size_bytes.saturating_add(size);
                    totals.entries += 1;
                }
            }
            totals.size_bytes > self.max_size_bytes
        };
        if over_limit {
            self.evict()?;
        }
        Ok(())
    }

    /// Scans the data directory: returns every stored value and removes
    /// stale temporary files. Entries that vanish mid-scan are skipped.
    fn scan(&self) -> Result<Vec<ScannedEntry>, StorageError> {
        let now = SystemTime::now();
        let mut found = Vec::new();
        let shards = fs::read_dir(&self.data_dir)
            .map_err(|e| StorageError::io("read dir", &self.data_dir, e))?;
        for shard in shards {
            let shard = shard.map_err(|e| StorageError::io("read dir", &self.data_dir, e))?;
            let shard_path = shard.path();
            let files = match fs::read_dir(&shard_path) {
                Ok(f) => f,
                // Removed concurrently, or not a directory: nothing of ours.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    continue
                }
                Err(e) => return Err(StorageError::io("read dir", shard_path, e)),
            };
            for file in files {
                let file = file.map_err(|e| StorageError::io("read dir", &shard_path, e))?;
                let name = file.file_name();
                let Some(name) = name.to_str() else { continue };
                let meta = match file.metadata() {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io("stat", file.path(), e)),
                };
                let Ok(modified) = meta.modified() else {
                    continue;
                };
                if name.starts_with(TEMP_PREFIX) {
                    let stale = now
                        .duration_since(modified)
                        .is_ok_and(|age| age > STALE_TEMP_AGE);
                    if stale {
                        debug!(path = %file.path().display(), "removing stale temp file");
                        remove_quietly(&file.path());
                    }
                } else if is_valid_key(name) {
                    found.push(ScannedEntry {
                        path: file.path(),
                        len: meta.len(),
                        modified,
                    });
                }
            }
        }
        Ok(found)
    }

    /// Rescans and deletes least recently used values until the total is
    /// at most the low-water mark. Copes with files deleted concurrently.
    fn evict(&self) -> Result<(), StorageError> {
        let _evicting = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = {
            let mut totals = self.lock_totals();
            if totals.size_bytes <= self.max_size_bytes {
                // Another thread evicted while we waited.
                return Ok(());
            }
            let entries = self.scan()?;
            totals.entries = entries.len() as u64;
            totals.size_bytes = entries.iter().map(|e| e.len).sum();
            if totals.size_bytes <= self.max_size_bytes {
                return Ok(());
            }
            entries
        };
        entries.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.path.cmp(&b.path)));
        let target = self.low_water();
        let mut removed = 0u64;
        for entry in entries {
            // Held across stat+remove so in-process puts/removes of the same
            // key cannot interleave with the accounting.
            let mut totals = self.lock_totals();
            if totals.size_bytes <= target {
                break;
            }
            // Skip values touched (read or rewritten) since the scan.
            let len = match fs::metadata(&entry.path) {
                Ok(m) if m.modified().ok() == Some(entry.modified) => m.len(),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("stat", entry.path, e)),
            };
            match fs::remove_file(&entry.path) {
                Ok(()) => {
                    removed += 1;
                    totals.size_bytes = totals.size_bytes.saturating_sub(len);
                    totals.entries = totals.entries.saturating_sub(1);
                }
                // Another process got there first; the next scan will notice.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("remove", entry.path, e)),
            }
        }
        debug!(removed, "disk cache eviction finished");
        Ok(())
    }
}

/// Removes `path`, logging (not returning) any failure.
fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != ErrorKind::NotFound {
            debug!(path = %path.display(), error = %e, "failed to remove file");
        }
    }
}

/// Size of the file at `path`, `None` if it does not exist.
fn existing_len(path: &Path) -> io::Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Storage for DiskCache {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path_for(key);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("open", path, e)),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut value = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut value)
            .map_err(|e| StorageError::io("read", &path, e))?;
        if let Err(e) = file.set_modified(SystemTime::now()) {
            debug!(path = %path.display(), error = %e, "could not bump mtime");
        }
        Ok(Some(value))
    }

    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        self.put_with(key, value.len() as u64, |f| f.write_all(value))
    }

    fn put_file(&self, key: &StorageKey, path: &Path) -> Result<(), StorageError> {
        let mut source = File::open(path).map_err(|e| StorageError::io("open", path, e))?;
        let size = source
            .metadata()
            .map_err(|e| StorageError::io("stat", path, e))?
            .len();
        // A kernel copy (copy_file_range): the bytes never pass through
        // this process.
        self.put_with(key, size, |f| {
            let copied = io::copy(&mut source, f)?;
            if copied == size {
                Ok(())
            } else {
                Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "source changed size",
                ))
            }
        })
    }

    fn contains(&self, key: &StorageKey) -> Result<bool, StorageError> {
        let path = self.path_for(key);
        match fs::metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io("stat", path, e)),
        }
    }

    fn remove(&self, key: &StorageKey) -> Result<(), StorageError> {
        let path = self.path_for(key);
        let mut totals = self.lock_totals();
        let len = match existing_len(&path) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(()),
            Err(e) => return Err(StorageError::io("stat", path, e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {
                totals.size_bytes = totals.size_bytes.saturating_sub(len);
                totals.entries = totals.entries.saturating_sub(1);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove", path, e)),
        }
    }

    fn describe(&self) -> StorageInfo {
        let totals = *self.lock_totals();
        StorageInfo {
            kind: "disk".to_owned(),
            location: self.root.display().to_string(),
            size_bytes: totals.size_bytes,
            max_size_bytes: self.max_size_bytes,
            entries: totals.entries,
        }
    }
}

#[cfg(test)]
mod tests;
