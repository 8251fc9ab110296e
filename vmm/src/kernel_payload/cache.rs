//! Decompressed kernels kept on disk, so a second boot of the same bzImage skips
//! decompression. An entry is named by the SHA-256 of the whole bzImage (its content,
//! not its path or time) and holds the vmlinux followed by a trailer (its XXH3-128
//! checksum, its length, a magic number), so an entry that was cut short or changed
//! on disk is recognised, removed and rebuilt instead of booted. With the trailer at
//! the end, the entry file is itself the ELF file: a hit is loaded from it directly.
//!
//! Runs may share the directory: an entry is written to a file of its own and renamed
//! into place, so a reader sees a whole entry or none. The directory is kept under a
//! size bound by removing the least recently used entries after each write.
//!
//! Two [`stamp`]s spare a boot from the cache the reading of whole files: beside each
//! entry, that this version of it (device, inode, size, times) matched its checksum;
//! in `sources/`, the SHA-256 of each bzImage file version booted. A changed file is a
//! new version and is read and hashed again. An entry is never written after it is
//! renamed into place, so its use is noted on its stamp, not on it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

pub mod stamp;
use stamp::Version;

/// Magic and format version at the end of every entry.
const MAGIC: &[u8; 16] = b"granule-vmlinux\x02";
/// The data's XXH3-128 (16 bytes LE), its length (u64 LE), the magic.
const TRAILER_LEN: usize = 16 + 8 + 16;
const SUFFIX: &str = ".vmlinux";
/// Beside an entry: the stamp saying which version of it matched its checksum.
const CHECKED_SUFFIX: &str = ".vmlinux.checked";
/// The directory of stamps naming each bzImage file version's SHA-256.
const SOURCES: &str = "sources";
/// How many bzImage files' stamps are kept (the most recently written).
const MAX_SOURCES: usize = 64;
/// A bzImage's hash is trusted from its stamp only if the file had been unchanged
/// this long when it was hashed (see [`stamp`]: a write within the same clock tick
/// would not move its change time).
const SOURCE_SETTLED: Duration = Duration::from_secs(1);
/// A temporary file this old belongs to a run that died while writing it.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// What names an entry: the SHA-256 of the bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    pub fn of(image: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(image).into())
    }

    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn file_name(&self) -> String {
        format!("{}{SUFFIX}", self.hex())
    }

    fn checked_name(&self) -> String {
        format!("{}{CHECKED_SUFFIX}", self.hex())
    }
}

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cannot create the kernel cache directory {path}: {error}")]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write the kernel cache entry {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read the kernel cache entry {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the kernel cache entry {path} is damaged ({why}); it was removed")]
    Damaged { path: PathBuf, why: String },
}

/// A directory of decompressed kernels, at most `max_bytes` in all.
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl KernelCache {
    /// The bound on the directory's size: room for a dozen distribution kernels.
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self { dir, max_bytes }
    }

    /// `$XDG_CACHE_HOME/granule/kernels`, else `$HOME/.cache/granule/kernels`; None
    /// when neither variable holds an absolute path.
    pub fn default_dir() -> Option<PathBuf> {
        let absolute = |v: &str| {
            std::env::var_os(v)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let base =
            absolute("XDG_CACHE_HOME").or_else(|| absolute("HOME").map(|h| h.join(".cache")))?;
        Some(base.join("granule").join("kernels"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry for `key`, if there is a whole one. A damaged entry is removed and
    /// reported as [`CacheError::Damaged`].
    pub fn get(&self, key: &Key) -> Result<Option<Entry>, CacheError> {
        let path = self.dir.join(key.file_name());
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(CacheError::Read { path, error }),
        };
        let checked = self.dir.join(key.checked_name());
        let version = file.metadata().map(|m| Version::of(&m)).ok();
        let known_sum = version
            .as_ref()
            .and_then(|v| stamp::recall(&checked, v, Duration::ZERO));
        match check_entry(&file, self.max_bytes, known_sum.as_deref()) {
            Ok((len, sum)) => {
                // The stamp's time is the entry's last use: recently used entries are
                // the last to be evicted. Failing to write it only means the next boot
                // checks the whole entry again.
                if let Some(v) = &version {
                    let _ = stamp::remember(&checked, v, &sum.to_le_bytes());
                }
                Ok(Some(Entry { file, len }))
            }
            Err(Problem::Io(error)) => Err(CacheError::Read { path, error }),
            Err(Problem::Damaged(why)) => {
                let _ = fs::remove_file(&path);
                let _ = fs::remove_file(&checked);
                Err(CacheError::Damaged { path, why })
            }
        }
    }

    /// The SHA-256 of a bzImage file version hashed before, if stamped long enough
    /// after its last change.
    pub fn known_key(&self, source: &Version) -> Option<Key> {
        let record = self.dir.join(SOURCES).join(source.file_id());
        let fact = stamp::recall(&record, source, SOURCE_SETTLED)?;
        Some(Key(fact.try_into().ok()?))
    }

    /// Remembers `key` as the SHA-256 of `source`. Best effort: without the stamp the
    /// next boot hashes the file again.
    pub fn note_key(&self, source: &Version, key: &Key) {
        let dir = self.dir.join(SOURCES);
        let made = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir);
        if let Err(e) =
            made.and_then(|()| stamp::remember(&dir.join(source.file_id()), source, &key.0))
        {
            tracing::debug!(
                "cannot remember the bzImage's hash in {}: {e}",
                dir.display()
            );
        }
    }

    /// Stores `data` under `key`; returns false when it alone exceeds the bound (it
    /// is then not stored). Older entries are evicted to keep the bound.
    pub fn put(&self, key: &Key, data: &[u8]) -> Result<bool, CacheError> {
        if (data.len() + TRAILER_LEN) as u64 > self.max_bytes {
            return Ok(false);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|error| CacheError::CreateDir {
                path: self.dir.clone(),
                error,
            })?;
        let path = self.dir.join(key.file_name());
        let temp = self.dir.join(temp_name(key));
        let written = write_entry(&temp, data).and_then(|sum| {
            fs::rename(&temp, &path)?;
            Ok(sum)
        });
        let sum = match written {
            Ok(sum) => sum,
            Err(error) => {
                let _ = fs::remove_file(&temp);
                return Err(CacheError::Write { path, error });
            }
        };
        // This version of the entry holds what was just checksummed: stamped, the next
        // boot need not read it whole.
        if let Ok(m) = fs::metadata(&path) {
            let _ = stamp::remember(
                &self.dir.join(key.checked_name()),
                &Version::of(&m),
                &sum.to_le_bytes(),
            );
        }
        self.evict(&path)
            .map_err(|error| CacheError::Write { path, error })?;
        Ok(true)
    }

    /// Removes the least recently used entries (never `keep`) until the rest fit the
    /// bound, stamps whose entry is gone, temporary files runs left behind, and the
    /// stamps of all but the [`MAX_SOURCES`] most recent bzImage files.
    fn evict(&self, keep: &Path) -> std::io::Result<()> {
        let mut entries = Vec::new();
        let mut checked = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = e.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.ends_with(".tmp") {
                remove_if_stale(&e.path(), modified);
            } else if name.ends_with(SUFFIX) && meta.is_file() {
                entries.push((modified, meta.len(), e.path()));
            } else if name.ends_with(CHECKED_SUFFIX) {
                checked.push(e.path());
            }
        }
        // An entry's last use is its stamp's time (written at each use).
        let stamp_of = |entry: &Path| {
            let mut p = entry.as_os_str().to_owned();
            p.push(".checked");
            PathBuf::from(p)
        };
        for (modified, _, path) in &mut entries {
            if let Ok(used) = fs::metadata(stamp_of(path)).and_then(|m| m.modified()) {
                *modified = (*modified).max(used);
            }
        }
        for c in checked {
            let entry = c.with_extension("");
            if !entry.exists() {
                let _ = fs::remove_file(&c);
            }
        }
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if path != keep && fs::remove_file(&path).is_ok() {
                let _ = fs::remove_file(stamp_of(&path));
                total -= len;
            }
        }
        self.prune_sources();
        Ok(())
    }

    /// Keeps the stamps of the [`MAX_SOURCES`] most recently booted bzImage files.
    fn prune_sources(&self) {
        let Ok(dir) = fs::read_dir(self.dir.join(SOURCES)) else {
            return;
        };
        let mut stamps: Vec<(SystemTime, PathBuf)> = Vec::new();
        for e in dir.flatten() {
            let Ok(modified) = e.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                remove_if_stale(&e.path(), modified);
            } else {
                stamps.push((modified, e.path()));
            }
        }
        stamps.sort();
        let excess = stamps.len().saturating_sub(MAX_SOURCES);
        for (_, path) in stamps.into_iter().take(excess) {
            let _ = fs::remove_file(path);
        }
    }
}

/// Removes a temporary file a run that died left behind (older than [`STALE_TEMP`]).
fn remove_if_stale(path: &Path, modified: SystemTime) {
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    if age > STALE_TEMP {
        let _ = fs::remove_file(path);
    }
}

/// A name no other writer uses at the same time: the process, a counter for its
/// threads, and a clock reading.
fn temp_name(key: &Key) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        ".{}.{}.{n}.{nanos}.tmp",
        key.file_name(),
        std::process::id()
    )
}

/// Writes an entry and flushes it to disk (so that once renamed into place and
/// stamped, it holds its data even after a crash); returns its checksum.
fn write_entry(temp: &Path, data: &[u8]) -> std::io::Result<u128> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)?;
    let sum = xxh3_128(data);
    f.write_all(data)?;
    f.write_all(&trailer(sum, data.len() as u64))?;
    f.sync_data()?;
    Ok(sum)
}

fn trailer(sum: u128, len: u64) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[..16].copy_from_slice(&sum.to_le_bytes());
    t[16..24].copy_from_slice(&len.to_le_bytes());
    t[24..].copy_from_slice(MAGIC);
    t
}

/// A whole cache entry, open: its first `len` bytes are the vmlinux.
#[derive(Debug)]
pub struct Entry {
    pub file: File,
    pub len: u64,
}

impl Entry {
    /// The first `n` bytes of the vmlinux (fewer if it is shorter).
    pub fn head(&self, n: u64) -> std::io::Result<Vec<u8>> {
        let mut head = vec![0u8; n.min(self.len) as usize];
        self.file.read_exact_at(&mut head, 0)?;
        Ok(head)
    }
}

enum Problem {
    Io(std::io::Error),
    Damaged(String),
}

/// Checks an entry's trailer and checksum; returns the vmlinux's length and the
/// checksum. `known_sum`: the checksum this version of the file was found to match
/// before; if the trailer still says it, the data is not read again.
fn check_entry(
    file: &File,
    max_bytes: u64,
    known_sum: Option<&[u8]>,
) -> Result<(u64, u128), Problem> {
    let damaged = |why: String| Problem::Damaged(why);
    let meta = file.metadata().map_err(Problem::Io)?;
    if !meta.is_file() {
        return Err(damaged("not a regular file".into()));
    }
    let size = meta.len();
    let Some(len) = size.checked_sub(TRAILER_LEN as u64) else {
        return Err(damaged(format!("{size} bytes, shorter than its trailer")));
    };
    if size > max_bytes {
        return Err(damaged(format!(
            "{size} bytes, more than the cache's bound"
        )));
    }
    let mut t = [0u8; TRAILER_LEN];
    file.read_exact_at(&mut t, len).map_err(Problem::Io)?;
    let mut said = [0u8; 8];
    said.copy_from_slice(&t[16..24]);
    let said = u64::from_le_bytes(said);
    if &t[24..] != MAGIC || said != len {
        return Err(damaged(format!(
            "no granule trailer for its {len} bytes of data (cut short or not an entry)"
        )));
    }
    let mut sum = [0u8; 16];
    sum.copy_from_slice(&t[..16]);
    if known_sum == Some(&sum[..]) {
        return Ok((len, u128::from_le_bytes(sum)));
    }
    // Read in pieces into one buffer: no copy of the whole kernel in memory.
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => damaged("it shrank while being read".into()),
                _ => Problem::Io(e),
            })?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    if hasher.digest128() != u128::from_le_bytes(sum) {
        return Err(damaged(
            "its data does not match the checksum in its trailer".into(),
        ));
    }
    Ok((len, u128::from_le_bytes(sum)))
}

#[cfg(test)]
mod tests;
