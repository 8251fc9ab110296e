//! The files a Linux boot reads, on every architecture: opened and checked (a regular
//! file of sane size, never a FIFO that would block) before any VM exists, and read
//! straight into guest memory.

use std::fs::File;
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
    Ok(crate::user_io::input::open_regular(what, path, MAX_FILE)?)
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
    let mut head = [0u8; 6];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).map_err(|error| {
        BootError::ReadFile {
            what: "initramfs",
            path: p.clone(),
            error,
        }
    })?;
    if !is_initramfs(&head[..n]) {
        return Err(BootError::NotAnInitrd {
            path: p.clone(),
            head: head[..n].iter().map(|b| format!("{b:02x}")).collect(),
        });
    }
    Ok(Some((p.clone(), file, len)))
}

/// Whether `head` starts like something the kernel unpacks as an initramfs: a newc cpio
/// archive, or one compressed in a format the kernel decompresses. (A microcode cpio
/// glued in front of a compressed one starts as cpio too.)
fn is_initramfs(head: &[u8]) -> bool {
    const MAGICS: [&[u8]; 9] = [
        b"070701",                          // cpio newc
        b"070702",                          // cpio newc with checksums
        &[0x1f, 0x8b],                      // gzip
        &[0xfd, b'7', b'z', b'X', b'Z', 0], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],          // zstd
        &[0x02, 0x21, 0x4c, 0x18],          // lz4 legacy
        b"BZh",                             // bzip2
        &[0x5d, 0, 0],                      // lzma
        &[0x89, b'L', b'Z', b'O'],          // lzop
    ];
    MAGICS.iter().any(|m| head.starts_with(m))
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

#[cfg(test)]
mod tests {
    #[test]
    fn initramfs_magics_are_known_and_text_is_not() {
        assert!(super::is_initramfs(b"070701000"));
        assert!(super::is_initramfs(&[0x1f, 0x8b, 8, 0]));
        assert!(super::is_initramfs(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]));
        assert!(!super::is_initramfs(b"#!/bin"));
        assert!(!super::is_initramfs(b"07"));
    }
}
