//! Decompressed kernels kept on disk, so a second boot of the same bzImage skips
//! decompression. An entry is named by a BLAKE3 hash of the whole bzImage (its
//! content, not its path or time) and holds a header (magic, length, BLAKE3 of the
//! data) before the vmlinux, so an entry that was cut short or changed on disk is
//! recognised, removed and rebuilt instead of booted.
//!
//! Runs may share the directory: an entry is written to a file of its own and renamed
//! into place, so a reader sees a whole entry or none. The directory is kept under a
//! size bound by removing the least recently used entries after each write.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use thiserror::Error;

/// Magic and format version at the start of every entry.
const MAGIC: &[u8; 16] = b"granule-vmlinux\x01";
/// Magic, the data's length (u64 LE), its BLAKE3 hash.
const HEADER_LEN: usize = 16 + 8 + 32;
const SUFFIX: &str = ".vmlinux";
/// A temporary file this old belongs to a run that died while writing it.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// What names an entry: the BLAKE3 hash of the bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    pub fn of(image: &[u8]) -> Self {
        Self(*blake3::hash(image).as_bytes())
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

    /// The entry's data for `key`, if there is a whole one. A damaged entry is removed
    /// and reported as [`CacheError::Damaged`].
    pub fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, CacheError> {
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
        match read_entry(&file, self.max_bytes) {
            Ok(data) => {
                // Recently used entries are the last to be evicted; a failure to note
                // the use only makes this one an earlier candidate.
                let _ = file.set_modified(SystemTime::now());
                Ok(Some(data))
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
        if (data.len() + HEADER_LEN) as u64 > self.max_bytes {
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
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(data.len() as u64).to_le_bytes());
    header.extend_from_slice(blake3::hash(data).as_bytes());
    f.write_all(&header)?;
    f.write_all(data)
}

enum Problem {
    Io(std::io::Error),
    Damaged(String),
}

fn read_entry(mut file: &File, max_bytes: u64) -> Result<Vec<u8>, Problem> {
    let meta = file.metadata().map_err(Problem::Io)?;
    if !meta.is_file() {
        return Err(Problem::Damaged("not a regular file".into()));
    }
    let mut header = [0u8; HEADER_LEN];
    match file.read_exact(&mut header) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(Problem::Damaged("shorter than its header".into()));
        }
        other => other.map_err(Problem::Io)?,
    }
    if &header[..16] != MAGIC {
        return Err(Problem::Damaged("no granule entry header".into()));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[16..24]);
    let len = u64::from_le_bytes(len);
    let on_disk = meta.len().saturating_sub(HEADER_LEN as u64);
    if len != on_disk || len > max_bytes {
        return Err(Problem::Damaged(format!(
            "{on_disk} bytes of data where its header says {len}"
        )));
    }
    let mut data = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut data).map_err(Problem::Io)?;
    if data.len() as u64 != len {
        return Err(Problem::Damaged(format!(
            "{} bytes of data where its header says {len}",
            data.len()
        )));
    }
    if blake3::hash(&data).as_bytes() != &header[24..] {
        return Err(Problem::Damaged(
            "its data does not match the hash in its header".into(),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests;
