//! Where a Linux guest's platform devices sit on arm64 and which interrupts they use.
//! The addresses come from [`crate::address_map::AARCH64`] (QEMU `virt`'s layout), so
//! `granule plan` and the VM agree.

use crate::address_map::AARCH64;

/// A fixed region of the arm64 address map by name, as `(base, size)`.
const fn fixed(index: usize) -> (u64, u64) {
    let r = AARCH64.fixed[index];
    (r.base, r.size)
}

/// The GICv3 distributor (64 KiB).
pub const GIC_DIST: (u64, u64) = fixed(0);
/// The GICv3 ITS (two 64 KiB frames).
pub const GIC_ITS: (u64, u64) = fixed(1);
/// The redistributors: two 64 KiB frames per vCPU, so this region holds
/// [`MAX_VCPUS`] of them.
pub const GIC_REDIST: (u64, u64) = fixed(2);
/// The 16550 UART's page.
pub const UART: (u64, u64) = fixed(3);
/// The boot timer's page: init writes [`BOOT_TIMER_MAGIC`] to its first byte.
pub const BOOT_TIMER: (u64, u64) = fixed(5);
pub const BOOT_TIMER_MAGIC: u8 = 123;
/// The pvpanic device's page (QEMU's pvpanic-mmio binding; its registers are 2 bytes).
pub const PVPANIC: (u64, u64) = fixed(6);
pub const PVPANIC_REG_LEN: u64 = 2;

/// Bytes of redistributor space each vCPU needs (RD and SGI frames).
pub const REDIST_PER_VCPU: u64 = 0x2_0000;
/// The most vCPUs the redistributor region holds.
pub const MAX_VCPUS: u64 = GIC_REDIST.1 / REDIST_PER_VCPU;

/// The UART's shared peripheral interrupt (SPI 1, INTID 33). KVM routes GSI n to
/// SPI n by default, so its irqfd uses GSI 1.
pub const UART_SPI: u32 = 1;
/// Shared peripheral interrupts the vGIC provides (INTIDs 32..32+N); a multiple of 32.
pub const SPI_COUNT: u32 = 96;

/// The architected timer's private interrupts (PPI numbers, INTID - 16): secure and
/// non-secure physical, virtual, hypervisor; what KVM gives its guests by default.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// The GIC maintenance interrupt (PPI 9).
pub const GIC_MAINTENANCE_PPI: u32 = 9;

/// The device tree's size limit (arm64 booting.rst) and the alignment granule puts it
/// at, below the top of the first RAM range.
pub const FDT_MAX: u64 = 2 << 20;
/// The kernel's load base is aligned to this (arm64 booting.rst).
pub const KERNEL_ALIGN: u64 = 2 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_names_the_regions_it_means() {
        let name = |i: usize| AARCH64.fixed[i].name;
        assert_eq!(name(0), "GIC distributor");
        assert_eq!(name(1), "GIC ITS");
        assert_eq!(name(2), "GIC redistributors");
        assert_eq!(name(3), "UART");
        assert_eq!(name(5), "boot timer");
        assert_eq!(name(6), "pvpanic");
        assert_eq!(MAX_VCPUS, 123);
        assert_eq!(SPI_COUNT % 32, 0);
    }
}
