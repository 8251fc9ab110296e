//! The boot GDT and identity map the 64-bit entry expects: flat __BOOT_CS (0x10) and
//! __BOOT_DS (0x18) descriptors, and page tables identity-mapping the low 4 GiB where
//! the kernel, zero page, command line and initramfs are.

use super::layout::{GDT_ADDR, IDENTITY_MAPPED, PAGE_TABLES_ADDR};
use crate::x86_64::gdt::{descriptor, KERNEL_CODE64, KERNEL_DATA};
use crate::x86_64::paging::{identity_map, IdentityMap, PagingError, PAGE_2M};

pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

/// The boot GDT: null, unused, code (0x10), data (0x18).
pub fn gdt() -> [u64; 4] {
    [
        0,
        0,
        descriptor(KERNEL_CODE64, 0, 0xfffff),
        descriptor(KERNEL_DATA, 0, 0xfffff),
    ]
}

/// The GDT as bytes to copy to [`GDT_ADDR`], and its limit.
pub fn gdt_bytes() -> (u64, Vec<u8>, u16) {
    let g = gdt();
    let bytes: Vec<u8> = g.iter().flat_map(|d| d.to_le_bytes()).collect();
    (GDT_ADDR, bytes, (g.len() * 8 - 1) as u16)
}

/// Identity map of the low 4 GiB with 2 MiB pages (every x86_64 CPU has them).
pub fn page_tables() -> Result<IdentityMap, PagingError> {
    identity_map(PAGE_TABLES_ADDR, IDENTITY_MAPPED, PAGE_2M)
}

#[cfg(test)]
mod tests {
    use super::super::layout::{CMDLINE_ADDR, ZERO_PAGE_ADDR};
    use super::*;

    #[test]
    fn boot_selectors_index_flat_code_and_data() {
        let g = gdt();
        assert_eq!(
            g[usize::from(BOOT_CS >> 3)],
            descriptor(KERNEL_CODE64, 0, 0xfffff)
        );
        assert_eq!(
            g[usize::from(BOOT_DS >> 3)],
            descriptor(KERNEL_DATA, 0, 0xfffff)
        );
        assert_eq!(gdt_bytes().2, 31);
    }

    #[test]
    fn page_tables_cover_4g_and_stay_clear_of_the_other_boot_structures() {
        let map = page_tables().unwrap();
        assert_eq!(map.mapped, 1 << 32);
        let end = map.base + map.bytes.len() as u64;
        assert!(map.base > ZERO_PAGE_ADDR + 0x1000 - 1);
        assert!(end <= CMDLINE_ADDR, "tables end at {end:#x}");
    }
}
