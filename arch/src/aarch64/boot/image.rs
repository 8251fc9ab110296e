//! The arm64 Image header (Documentation/arch/arm64/booting.rst, "Call the kernel
//! image"): 64 bytes at the start of the Image saying where in a 2 MiB-aligned window
//! the kernel wants to sit, how much memory it occupies with its BSS, and which page
//! size and byte order it was built for. A compressed Image (`Image.gz`) is recognised
//! so the VMM can decompress it first.

use thiserror::Error;

/// Length of the header.
pub const HEADER_LEN: usize = 64;
/// "ARM\x64" at offset 56.
const MAGIC: u32 = 0x644d_5241;
const MAGIC_OFFSET: usize = 56;
/// The gzip magic, for `Image.gz`.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// An EFI zboot image: "MZ" then "zimg" at offset 4.
const ZBOOT_MAGIC: &[u8; 4] = b"zimg";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the kernel file is empty")]
    Empty,
    #[error("the kernel file is {len} bytes, shorter than the 64-byte arm64 Image header")]
    Short { len: usize },
    #[error("not an arm64 Image: no \"ARM\\x64\" magic at offset 56 (found {found:#010x}); pass the kernel's Image or Image.gz")]
    NoMagic { found: u32 },
    #[error("an EFI zboot kernel (vmlinuz.efi); granule boots the Image inside it: extract it (the payload is compressed with the algorithm named at offset 24)")]
    Zboot,
    #[error(
        "the Image header's image_size is 0: a kernel older than 3.17, which granule does not boot"
    )]
    NoImageSize,
    #[error(
        "the Image is built big-endian (header flags bit 0); granule boots little-endian kernels"
    )]
    BigEndian,
    #[error("the Image header says it is {image_size} bytes in memory, less than the {file} bytes of the file")]
    SizeBelowFile { image_size: u64, file: u64 },
}

/// The fields of the header granule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the kernel from the 2 MiB-aligned base it is loaded at.
    pub text_offset: u64,
    /// Bytes the kernel occupies from its load address, BSS included.
    pub image_size: u64,
    /// The kernel's page size (4, 16 or 64 KiB), when the header says.
    pub page_size: Option<u64>,
    /// The kernel may sit anywhere in RAM (flags bit 3), not only near the start.
    pub anywhere: bool,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// True when `bytes` start like a gzip stream (an `Image.gz`).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

impl ImageHeader {
    /// Parses and checks the header of an Image of `file_len` bytes whose first bytes
    /// are `bytes`.
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<Self, ImageError> {
        if bytes.is_empty() {
            return Err(ImageError::Empty);
        }
        if bytes.len() < HEADER_LEN {
            return Err(ImageError::Short { len: bytes.len() });
        }
        let mut m = [0u8; 4];
        m.copy_from_slice(&bytes[MAGIC_OFFSET..MAGIC_OFFSET + 4]);
        let magic = u32::from_le_bytes(m);
        if magic != MAGIC {
            if bytes.starts_with(b"MZ") && &bytes[4..8] == ZBOOT_MAGIC {
                return Err(ImageError::Zboot);
            }
            return Err(ImageError::NoMagic { found: magic });
        }
        let text_offset = u64_at(bytes, 8);
        let image_size = u64_at(bytes, 16);
        let flags = u64_at(bytes, 24);
        if image_size == 0 {
            return Err(ImageError::NoImageSize);
        }
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        if image_size < file_len {
            return Err(ImageError::SizeBelowFile {
                image_size,
                file: file_len,
            });
        }
        let page_size = match (flags >> 1) & 3 {
            1 => Some(4 << 10),
            2 => Some(16 << 10),
            3 => Some(64 << 10),
            _ => None,
        };
        Ok(Self {
            text_offset,
            image_size,
            page_size,
            anywhere: flags & (1 << 3) != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as the kernel's head.S writes it.
    fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..4].copy_from_slice(b"MZ@\xfa");
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    #[test]
    fn a_modern_4k_image_header_is_read() {
        // Debian 6.12: text_offset 0, 4K pages, anywhere in RAM (flags 0xa).
        let h = ImageHeader::parse(&header(0, 0x2c3_0000, 0xa), 0x2a2_b200).unwrap();
        assert_eq!(h.text_offset, 0);
        assert_eq!(h.image_size, 0x2c3_0000);
        assert_eq!(h.page_size, Some(4096));
        assert!(h.anywhere);
        let h = ImageHeader::parse(&header(0, 1 << 20, 3 << 1), 4096).unwrap();
        assert_eq!(h.page_size, Some(64 << 10));
        assert!(!h.anywhere);
    }

    #[test]
    fn foreign_and_unbootable_headers_say_what_they_are() {
        assert_eq!(ImageHeader::parse(&[], 0), Err(ImageError::Empty));
        assert_eq!(
            ImageHeader::parse(&[0; 10], 10),
            Err(ImageError::Short { len: 10 })
        );
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert_eq!(
            ImageHeader::parse(&elf, 64),
            Err(ImageError::NoMagic { found: 0 })
        );
        let mut zboot = vec![0u8; 64];
        zboot[..2].copy_from_slice(b"MZ");
        zboot[4..8].copy_from_slice(b"zimg");
        assert_eq!(ImageHeader::parse(&zboot, 64), Err(ImageError::Zboot));
        assert_eq!(
            ImageHeader::parse(&header(0x80000, 0, 0), 64),
            Err(ImageError::NoImageSize)
        );
        assert_eq!(
            ImageHeader::parse(&header(0, 1 << 20, 1), 64),
            Err(ImageError::BigEndian)
        );
        assert_eq!(
            ImageHeader::parse(&header(0, 4096, 2), 8192),
            Err(ImageError::SizeBelowFile {
                image_size: 4096,
                file: 8192
            })
        );
        assert!(is_gzip(&[0x1f, 0x8b, 8]) && !is_gzip(&header(0, 1, 0)));
    }
}
