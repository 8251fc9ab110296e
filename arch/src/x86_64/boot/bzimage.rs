//! The bzImage setup header: just the fields granule needs, read from the image bytes
//! at the offsets the boot protocol fixes, with the checks that turn a wrong file into
//! a clear error instead of a guest that never prints anything.

use super::KernelError;

const HDRS: u32 = 0x5372_6448; // "HdrS"
/// xloadflags bit 0: the kernel has the 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// Offset of the 64-bit entry from where the protected-mode kernel is loaded.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// Where the setup header starts in the image (and in the zero page).
pub const SETUP_HEADER_START: usize = 0x1f1;

/// What granule reads from a bzImage's setup header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BzImageInfo {
    /// The real-mode setup code's size; the protected-mode kernel follows it.
    pub setup_size: usize,
    /// Boot protocol version (0x20f is 2.15).
    pub version: u16,
    pub loadflags: u8,
    pub xloadflags: u16,
    /// Highest address the initramfs may end at.
    pub initrd_addr_max: u32,
    /// Longest command line the kernel accepts, without the NUL.
    pub cmdline_size: u32,
    /// Memory the kernel needs from its load address while it decompresses.
    pub init_size: u32,
    /// Where the compressed kernel lies, from the protected-mode kernel's start (boot
    /// protocol 2.08), and its length.
    pub payload_offset: u32,
    pub payload_length: u32,
    /// The setup header as in the image, to copy into the zero page.
    pub header: Vec<u8>,
}

impl BzImageInfo {
    /// The compressed kernel's byte range in the file, if the header's payload fields
    /// lie inside a file of `file_len` bytes.
    pub fn payload_range(&self, file_len: u64) -> Option<std::ops::Range<u64>> {
        let start = (self.setup_size as u64).checked_add(u64::from(self.payload_offset))?;
        let end = start.checked_add(u64::from(self.payload_length))?;
        (self.payload_length > 0 && end <= file_len).then_some(start..end)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// True when `image` carries a bzImage setup header (it may still be unusable).
pub fn is_bzimage(image: &[u8]) -> bool {
    image.len() >= 0x206 && u32_at(image, 0x202) == HDRS
}

/// Parses and checks a bzImage from its first bytes (`head`, at least the setup
/// header) and the file's length.
pub fn parse(head: &[u8], file_len: u64) -> Result<BzImageInfo, KernelError> {
    let image = head;
    if file_len == 0 {
        return Err(KernelError::Empty);
    }
    if !is_bzimage(image) {
        return Err(KernelError::Unknown {
            len: file_len as usize,
        });
    }
    // The header's own length: a jump at 0x200 whose byte offset ends it.
    let header_end = 0x202 + usize::from(image[0x201]);
    let needed = header_end.max(0x264);
    if image.len() < needed {
        return Err(KernelError::Truncated {
            expected: needed as u64,
            actual: file_len,
        });
    }
    let version = u16_at(image, 0x206);
    if version < 0x20c {
        return Err(KernelError::OldProtocol {
            major: (version >> 8) as u8,
            minor: version as u8,
        });
    }
    let xloadflags = u16_at(image, 0x236);
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(KernelError::No64BitEntry);
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let setup_size = (setup_sects + 1) * 512;
    // syssize counts the protected-mode kernel in 16-byte paragraphs.
    let expected = setup_size as u64 + u64::from(u32_at(image, 0x1f4)) * 16;
    if file_len < expected {
        return Err(KernelError::Truncated {
            expected,
            actual: file_len,
        });
    }
    Ok(BzImageInfo {
        setup_size,
        version,
        loadflags: image[0x211],
        xloadflags,
        initrd_addr_max: u32_at(image, 0x22c),
        cmdline_size: u32_at(image, 0x238),
        init_size: u32_at(image, 0x260),
        payload_offset: u32_at(image, 0x248),
        payload_length: u32_at(image, 0x24c),
        header: image[SETUP_HEADER_START..header_end].to_vec(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal bzImage: one setup sector plus the boot sector, then `payload` bytes.
    pub(crate) fn fake_bzimage(payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 1024 + payload];
        b[0x1f1] = 1;
        b[0x1f4..0x1f8].copy_from_slice(&((payload as u32).div_ceil(16)).to_le_bytes());
        b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[0x201] = 0x66;
        b[0x202..0x206].copy_from_slice(&HDRS.to_le_bytes());
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        b[0x211] = 1;
        b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&0x7fu16.to_le_bytes());
        b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        b[0x260..0x264].copy_from_slice(&0x100_0000u32.to_le_bytes());
        b
    }

    #[test]
    fn a_good_header_parses() {
        let img = fake_bzimage(4096);
        let info = parse(&img, img.len() as u64).unwrap();
        assert_eq!(info.setup_size, 1024);
        assert_eq!(info.version, 0x20f);
        assert_eq!(info.cmdline_size, 2047);
        assert_eq!(info.init_size, 0x100_0000);
        assert_eq!(info.header.len(), 0x202 + 0x66 - 0x1f1);
        assert_eq!(info.payload_range(img.len() as u64), None);
    }

    #[test]
    fn the_payload_range_must_lie_inside_the_file() {
        let mut img = fake_bzimage(4096);
        img[0x248..0x24c].copy_from_slice(&0x100u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&0x200u32.to_le_bytes());
        let info = parse(&img, img.len() as u64).unwrap();
        assert_eq!(
            info.payload_range(img.len() as u64),
            Some(1024 + 0x100..1024 + 0x300)
        );
        assert_eq!(info.payload_range(1024 + 0x2ff), None);
        img[0x248..0x24c].copy_from_slice(&u32::MAX.to_le_bytes());
        let info = parse(&img, img.len() as u64).unwrap();
        assert_eq!(info.payload_range(img.len() as u64), None);
    }

    #[test]
    fn empty_unknown_truncated_old_and_32bit_images_are_refused() {
        assert_eq!(parse(&[], 0), Err(KernelError::Empty));
        assert_eq!(
            parse(b"#!/bin/sh\necho hi\n", 18),
            Err(KernelError::Unknown { len: 18 })
        );
        let img = fake_bzimage(4096);
        assert_eq!(
            parse(&img[..3000], 3000),
            Err(KernelError::Truncated {
                expected: 1024 + 4096,
                actual: 3000
            })
        );
        assert!(matches!(
            parse(&img[..0x210], 0x210),
            Err(KernelError::Truncated { .. })
        ));
        let mut old = img.clone();
        old[0x206] = 0x0b;
        assert_eq!(
            parse(&old, old.len() as u64),
            Err(KernelError::OldProtocol {
                major: 2,
                minor: 0x0b
            })
        );
        let mut no64 = img.clone();
        no64[0x236] = 0;
        assert_eq!(
            parse(&no64, no64.len() as u64),
            Err(KernelError::No64BitEntry)
        );
        // Only the head was read: a file shorter than the header says is truncated.
        assert!(matches!(
            parse(&img[..2048], 2048),
            Err(KernelError::Truncated { actual: 2048, .. })
        ));
    }
}
