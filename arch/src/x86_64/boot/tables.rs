//! The boot GDT and identity map the 64-bit entry expects: flat __BOOT_CS (0x10) and
//! __BOOT_DS (0x18) descriptors, and page tables identity-mapping the low 4 GiB where
//! the kernel, zero page, command line and initramfs are. Also the one piece of
//! "firmware" granule has: code at the reset vector.

use super::layout::{ports, GDT_ADDR, IDENTITY_MAPPED, PAGE_TABLES_ADDR, RESET_VECTOR};
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

/// Real-mode code for the reset vector (0xf000:0xfff0): write the ACPI reset register,
/// then halt. Why: on hardware-reduced ACPI without EFI, x86 Linux reboots through
/// "EFI", then "BIOS", which drops to real mode and jumps to the reset vector (measured
/// in the x86 bed: `reboot` wrote CMOS and then hung). With this stub that path ends
/// in the same reset request as Linux's ACPI path.
pub fn reset_vector_stub() -> (u64, Vec<u8>) {
    let [lo, hi] = ports::ACPI_RESET.to_le_bytes();
    let code = vec![
        0xba,
        lo,
        hi, // mov dx, ACPI_RESET
        0xb0,
        ports::ACPI_RESET_VALUE, // mov al, value
        0xee,                    // out dx, al
        0xf4,                    // hlt
        0xeb,
        0xfd, // jmp to the hlt
    ];
    (RESET_VECTOR, code)
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
    fn reset_vector_stub_writes_the_reset_register_within_the_vector() {
        let (at, code) = reset_vector_stub();
        assert_eq!(at, 0xffff0);
        assert!(code.len() <= 16, "fits below 1 MiB");
        assert_eq!(u16::from_le_bytes([code[1], code[2]]), ports::ACPI_RESET);
        assert_eq!(code[4], ports::ACPI_RESET_VALUE);
        // The final jmp rel8 lands on the hlt.
        let hlt = code.iter().position(|b| *b == 0xf4).unwrap() as i64;
        let after_jmp = code.len() as i64;
        assert_eq!(after_jmp + i64::from(code[code.len() - 1] as i8), hlt);
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
