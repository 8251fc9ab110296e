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

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// Magic and format version at the end of every entry.
const MAGIC: &[u8; 16] = b"granule-vmlinux\x02";
/// The data's XXH3-128 (16 bytes LE), its length (u64 LE), the magic.
const TRAILER_LEN: usize = 16 + 8 + 16;
const SUFFIX: &str = ".vmlinux";
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

    fn file_name(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}{SUFFIX}")
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
        match check_entry(&file, self.max_bytes) {
            Ok(len) => {
                // Recently used entries are the last to be evicted; a failure to note
                // the use only makes this one an earlier candidate.
                let _ = file.set_modified(SystemTime::now());
                Ok(Some(Entry { file, len }))
            }
            Err(Problem::Io(error)) => Err(CacheError::Read { path, error }),
            Err(Problem::Damaged(why)) => {
                let _ = fs::remove_file(&path);
                Err(CacheError::Damaged { path, why })
            }
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
        let written = write_entry(&temp, data).and_then(|()| fs::rename(&temp, &path));
        if let Err(error) = written {
            let _ = fs::remove_file(&temp);
            return Err(CacheError::Write { path, error });
        }
        self.evict(&path)
            .map_err(|error| CacheError::Write { path, error })?;
        Ok(true)
    }

    /// Removes the least recently used entries (never `keep`) until the rest fit the
    /// bound, and temporary files runs left behind.
    fn evict(&self, keep: &Path) -> std::io::Result<()> {
        let mut entries = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = e.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.ends_with(".tmp") {
                let age = SystemTime::now()
                    .duration_since(modified)
                    .unwrap_or_default();
                if age > STALE_TEMP {
                    let _ = fs::remove_file(e.path());
                }
            } else if name.ends_with(SUFFIX) && meta.is_file() {
                entries.push((modified, meta.len(), e.path()));
            }
        }
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if path != keep && fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        Ok(())
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

fn write_entry(temp: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)?;
    f.write_all(data)?;
    f.write_all(&trailer(xxh3_128(data), data.len() as u64))
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

/// Checks an entry's trailer and checksum; returns the vmlinux's length.
fn check_entry(file: &File, max_bytes: u64) -> Result<u64, Problem> {
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
    Ok(len)
}

#[cfg(test)]
mod tests;
