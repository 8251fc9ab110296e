//! x86_64 guest-physical layout and the I/O ports granule's built-in programs use.

use crate::RamRange;

/// Start of the 32-bit MMIO hole (PCI, IOAPIC, LAPIC) that RAM must avoid; RAM beyond it
/// continues at 4 GiB. 3 GiB keeps the low RAM block 1 GiB-aligned at both ends so huge
/// guest and stage-2 mappings fit it exactly.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;

/// PCI Express ECAM for bus 0 (1 MiB: 32 devices x 8 functions x 4 KiB), inside the
/// 32-bit MMIO window and taken out of it.
pub const PCI_ECAM_BASE: u64 = 0xe000_0000;
pub const PCI_ECAM_SIZE: u64 = 1 << 20;

/// KVM's three-page TSS region for Intel real-mode emulation; must not overlap RAM.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;

/// COM1, where the built-in programs and (later) Linux print.
pub const COM1_PORT: u16 = 0x3f8;
/// The built-in programs' report port (see [`crate::report`]).
pub const REPORT_PORT: u16 = 0x0510;

/// Where the built-in program image starts: above the real-mode IVT/BDA area.
pub const IMAGE_BASE: u64 = 0x1000;

/// Splits `size` bytes of RAM around the MMIO hole.
pub fn ram_ranges(size: u64) -> Vec<RamRange> {
    if size <= MMIO_HOLE_START {
        vec![RamRange { gpa: 0, size }]
    } else {
        vec![
            RamRange {
                gpa: 0,
                size: MMIO_HOLE_START,
            },
            RamRange {
                gpa: MMIO_HOLE_END,
                size: size - MMIO_HOLE_START,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ram_is_one_range_large_ram_skips_the_hole() {
        assert_eq!(
            ram_ranges(1 << 30),
            vec![RamRange {
                gpa: 0,
                size: 1 << 30
            }]
        );
        assert_eq!(ram_ranges(MMIO_HOLE_START).len(), 1);
        let r = ram_ranges(8 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].end(), MMIO_HOLE_START);
        assert_eq!(r[1].gpa, 1 << 32);
        assert_eq!(r.iter().map(|r| r.size).sum::<u64>(), 8 << 30);
    }
}
