//! The files a Linux boot reads, on every architecture: opened and checked (a regular
//! file of sane size, never a FIFO that would block) before any VM exists, and read
//! straight into guest memory.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vm_memory::{Bytes, GuestAddress};

use super::BootError;
use crate::memory::GuestRam;

/// Files larger than this are refused rather than read into memory.
const MAX_FILE: u64 = 2 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelFormat {
    BzImage,
    Elf,
    /// arm64 Image.
    Image,
    /// arm64 Image, gzip-compressed (decompressed by granule).
    ImageGz,
}

/// Opens a file, checking it is a regular file of sane size; returns it and its length.
pub fn open_file(what: &'static str, path: &Path) -> Result<(File, u64), BootError> {
    let err = |error| BootError::ReadFile {
        what,
        path: path.to_owned(),
        error,
    };
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then refused below
    // as not a regular file); on a regular file the flag changes nothing.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(BootError::NotAFile {
            what,
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_FILE {
        return Err(BootError::FileTooLarge {
            what,
            path: path.to_owned(),
            size: meta.len(),
            max: MAX_FILE,
        });
    }
    Ok((file, meta.len()))
}

/// The first `n` bytes of the kernel `file` (fewer if it is shorter), for its header.
pub fn read_head(path: &Path, file: &File, n: u64) -> Result<Vec<u8>, BootError> {
    let mut head = Vec::with_capacity(n as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(file, n), &mut head).map_err(|error| {
        BootError::ReadFile {
            what: "kernel",
            path: path.to_owned(),
            error,
        }
    })?;
    Ok(head)
}

/// An initramfs, opened and checked: not empty, and what [`open_file`] checks.
pub type Initrd = (PathBuf, File, u64);

/// Opens `path` as the initramfs, if there is one.
pub fn open_initrd(path: Option<&PathBuf>) -> Result<Option<Initrd>, BootError> {
    let Some(p) = path else {
        return Ok(None);
    };
    let (file, len) = open_file("initramfs", p)?;
    if len == 0 {
        return Err(BootError::EmptyInitrd(p.clone()));
    }
    Ok(Some((p.clone(), file, len)))
}

/// Reads `len` bytes of `file` straight into guest memory at `gpa` (no copy through a
/// buffer: an initramfs may be hundreds of MiB).
pub fn read_into(
    ram: &GuestRam,
    gpa: u64,
    what: &'static str,
    path: &Path,
    file: &mut File,
    len: u64,
) -> Result<(), BootError> {
    ram.guest_memory()
        .read_exact_volatile_from(GuestAddress(gpa), file, len as usize)
        .map_err(|e| BootError::ReadFile {
            what,
            path: path.to_owned(),
            error: std::io::Error::other(e.to_string()),
        })
}
