//! The arm64 kernel file: an Image, or an Image.gz granule decompresses on the host
//! (the kernel has no decompressor of its own on arm64). Checked before any memory is
//! mapped, loaded through linux-loader's Image loader.

use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::Path;

use granule_arch::aarch64::boot::image::{is_gzip, HEADER_LEN};
use granule_arch::aarch64::boot::ImageHeader;
use linux_loader::loader::{KernelLoader, PE};
use vm_memory::GuestAddress;

use crate::linux::files::{open_file, read_head, KernelFormat};
use crate::linux::BootError;
use crate::memory::GuestRam;

/// An Image.gz must not decompress to more than this (Debian's arm64 Image is ~45 MiB).
const MAX_DECOMPRESSED: u64 = 512 << 20;

enum Source {
    File(File),
    Decompressed(Vec<u8>),
}

/// A checked kernel, ready to load.
pub struct KernelImage {
    source: Source,
    pub header: ImageHeader,
}

/// Opens and checks the kernel; an Image.gz is decompressed now, so every check on the
/// Image itself happens before any memory is mapped.
pub fn open(path: &Path) -> Result<KernelImage, BootError> {
    let (file, len) = open_file("kernel", path)?;
    let head = read_head(path, &file, HEADER_LEN as u64)?;
    let image_err = |error| BootError::Image {
        path: path.to_owned(),
        error,
    };
    if is_gzip(&head) {
        let bytes = decompress(path, file, len)?;
        let header = ImageHeader::parse(&bytes, bytes.len() as u64).map_err(image_err)?;
        return Ok(KernelImage {
            source: Source::Decompressed(bytes),
            header,
        });
    }
    let header = ImageHeader::parse(&head, len).map_err(image_err)?;
    Ok(KernelImage {
        source: Source::File(file),
        header,
    })
}

/// Decompresses the gzip stream of the file at `path`, at most [`MAX_DECOMPRESSED`]
/// bytes.
fn decompress(path: &Path, mut file: File, len: u64) -> Result<Vec<u8>, BootError> {
    let error = |error| BootError::Decompress {
        path: path.to_owned(),
        error,
    };
    file.rewind().map_err(error)?;
    let mut out = Vec::with_capacity(len.saturating_mul(3).min(MAX_DECOMPRESSED) as usize);
    flate2::read::GzDecoder::new(file)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(error)?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(BootError::DecompressedTooLarge {
            path: path.to_owned(),
            max: MAX_DECOMPRESSED,
        });
    }
    Ok(out)
}

impl KernelImage {
    pub fn format(&self) -> KernelFormat {
        match self.source {
            Source::File(_) => KernelFormat::Image,
            Source::Decompressed(_) => KernelFormat::ImageGz,
        }
    }

    /// Copies the Image to `base` (2 MiB-aligned) plus its text offset; returns the
    /// load address, where the kernel is entered.
    pub fn load(&mut self, ram: &GuestRam, base: u64) -> Result<u64, BootError> {
        let mem = ram.guest_memory();
        let result = match &mut self.source {
            Source::File(f) => PE::load(mem, Some(GuestAddress(base)), f, None),
            Source::Decompressed(bytes) => PE::load(
                mem,
                Some(GuestAddress(base)),
                &mut Cursor::new(bytes.as_slice()),
                None,
            ),
        };
        let loaded = result.map_err(BootError::Load)?;
        Ok(loaded.kernel_load.0)
    }
}
