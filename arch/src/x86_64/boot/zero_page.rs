//! The zero page (`struct boot_params`), written field by field at the offsets the boot
//! protocol documents, so no C struct layout has to be trusted.

use super::bzimage::SETUP_HEADER_START;
use super::e820::E820Entry;

pub const ZERO_PAGE_SIZE: usize = 4096;

const ACPI_RSDP_ADDR: usize = 0x070;
const E820_ENTRIES: usize = 0x1e8;
const BOOT_FLAG: usize = 0x1fe;
const HEADER: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const CMD_LINE_PTR: usize = 0x228;
const KERNEL_ALIGNMENT: usize = 0x230;
const CMDLINE_SIZE: usize = 0x238;
const E820_TABLE: usize = 0x2d0;
const E820_ENTRY_SIZE: usize = 20;

/// loadflags bit 0: the protected-mode kernel is loaded at 1 MiB.
const LOADED_HIGH: u8 = 1 << 0;
/// "Undefined boot loader" type, as other VMMs report themselves.
const LOADER_UNDEFINED: u8 = 0xff;

/// Where the loader put things, for [`build`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootFacts {
    /// The bzImage's setup header bytes; empty for an ELF kernel (granule writes a
    /// minimal header then).
    pub setup_header: Vec<u8>,
    pub cmdline_addr: u32,
    /// Initramfs address and size (0, 0 for none).
    pub initrd: (u32, u32),
    pub rsdp_addr: u64,
    pub e820: Vec<E820Entry>,
}

fn put(page: &mut [u8], at: usize, bytes: &[u8]) {
    page[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Builds the zero page. `facts.e820` must hold at most [`super::e820::E820_MAX`]
/// entries (what [`super::e820::build`] guarantees).
pub fn build(facts: &BootFacts) -> Vec<u8> {
    let mut page = vec![0u8; ZERO_PAGE_SIZE];
    if facts.setup_header.is_empty() {
        // An ELF vmlinux has no setup header: give the kernel the fields it checks.
        put(&mut page, BOOT_FLAG, &0xaa55u16.to_le_bytes());
        put(&mut page, HEADER, b"HdrS");
        put(&mut page, VERSION, &0x20fu16.to_le_bytes());
        put(&mut page, KERNEL_ALIGNMENT, &0x100_0000u32.to_le_bytes());
        put(&mut page, CMDLINE_SIZE, &2047u32.to_le_bytes());
    } else {
        let len = facts
            .setup_header
            .len()
            .min(ZERO_PAGE_SIZE - SETUP_HEADER_START);
        put(&mut page, SETUP_HEADER_START, &facts.setup_header[..len]);
    }
    page[TYPE_OF_LOADER] = LOADER_UNDEFINED;
    page[LOADFLAGS] |= LOADED_HIGH;
    put(&mut page, CMD_LINE_PTR, &facts.cmdline_addr.to_le_bytes());
    put(&mut page, RAMDISK_IMAGE, &facts.initrd.0.to_le_bytes());
    put(&mut page, RAMDISK_SIZE, &facts.initrd.1.to_le_bytes());
    put(&mut page, ACPI_RSDP_ADDR, &facts.rsdp_addr.to_le_bytes());
    page[E820_ENTRIES] = facts.e820.len() as u8;
    for (i, e) in facts.e820.iter().enumerate() {
        let at = E820_TABLE + i * E820_ENTRY_SIZE;
        put(&mut page, at, &e.addr.to_le_bytes());
        put(&mut page, at + 8, &e.size.to_le_bytes());
        put(&mut page, at + 16, &e.kind.to_le_bytes());
    }
    page
}

#[cfg(test)]
mod tests {
    use super::super::bzimage;
    use super::super::e820::E820_RAM;
    use super::*;

    fn u32_at(p: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(p[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn bzimage_header_is_copied_and_loader_fields_are_set() {
        let img = bzimage::tests::fake_bzimage(4096);
        let info = bzimage::parse(&img, img.len() as u64).unwrap();
        let facts = BootFacts {
            setup_header: info.header,
            cmdline_addr: 0x2_0000,
            initrd: (0x3000_0000, 0x1234),
            rsdp_addr: 0xe_0000,
            e820: vec![E820Entry {
                addr: 0,
                size: 0x9_fc00,
                kind: E820_RAM,
            }],
        };
        let p = build(&facts);
        assert_eq!(&p[HEADER..HEADER + 4], b"HdrS");
        assert_eq!(u32_at(&p, CMDLINE_SIZE), 2047, "copied from the image");
        assert_eq!(p[TYPE_OF_LOADER], 0xff);
        assert_eq!(u32_at(&p, CMD_LINE_PTR), 0x2_0000);
        assert_eq!(u32_at(&p, RAMDISK_IMAGE), 0x3000_0000);
        assert_eq!(u32_at(&p, RAMDISK_SIZE), 0x1234);
        assert_eq!(p[E820_ENTRIES], 1);
        assert_eq!(u32_at(&p, E820_TABLE + 8), 0x9_fc00);
        assert_eq!(u32_at(&p, E820_TABLE + 16), E820_RAM);
        assert_eq!(p[ACPI_RSDP_ADDR + 2], 0x0e);
    }

    #[test]
    fn elf_kernels_get_a_minimal_header() {
        let p = build(&BootFacts::default());
        assert_eq!(&p[HEADER..HEADER + 4], b"HdrS");
        assert_eq!(u16::from_le_bytes([p[BOOT_FLAG], p[BOOT_FLAG + 1]]), 0xaa55);
        assert_eq!(p[LOADFLAGS] & LOADED_HIGH, LOADED_HIGH);
    }
}
