//! Each architecture's guest-physical address map for a Linux guest: where RAM starts,
//! what RAM must avoid, the MMIO windows device BARs are allocated from, and the fixed
//! platform devices. One description serves `granule plan` and the real VM, so the two
//! cannot drift apart.

/// A fixed platform region (interrupt controller, UART, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedRegion {
    pub name: &'static str,
    pub base: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressMap {
    /// Where the first RAM zone goes.
    pub ram_base: u64,
    /// Guest-physical ranges RAM must avoid, as (start, end).
    pub ram_holes: &'static [(u64, u64)],
    /// The window below 4 GiB that 32-bit BARs come from, as (start, end).
    pub mmio32: (u64, u64),
    /// The lowest start of the window above RAM that 64-bit BARs come from; it starts
    /// at the first 1 GiB boundary above both this and the end of RAM.
    pub mmio64_floor: u64,
    /// Size of the 64-bit window.
    pub mmio64_size: u64,
    pub fixed: &'static [FixedRegion],
}

impl AddressMap {
    /// The 32-bit MMIO window without the fixed devices inside it: what a PCI host
    /// bridge may hand to BARs, as `[start, end)` ranges in order.
    pub fn mmio32_ranges(&self) -> Vec<(u64, u64)> {
        let (mut at, end) = self.mmio32;
        let mut inside: Vec<&FixedRegion> = self
            .fixed
            .iter()
            .filter(|f| f.base >= self.mmio32.0 && f.base + f.size <= end)
            .collect();
        inside.sort_by_key(|f| f.base);
        let mut out = Vec::new();
        for f in inside {
            if f.base > at {
                out.push((at, f.base));
            }
            at = at.max(f.base + f.size);
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    /// Where the 64-bit window starts for RAM ending at `ram_end`; None if it would pass
    /// the end of the 64-bit space.
    pub fn mmio64_start(&self, ram_end: u64) -> Option<u64> {
        let start = ram_end
            .max(self.mmio64_floor)
            .checked_next_multiple_of(1 << 30)?;
        start.checked_add(self.mmio64_size).map(|_| start)
    }
}

const GIB: u64 = 1 << 30;

/// x86_64: RAM from 0, skipping the 32-bit hole at 3-4 GiB (PCI, I/O APIC, local APIC,
/// KVM's TSS pages); 3 GiB keeps low RAM 1 GiB-aligned at both ends. 32-bit BARs come
/// from the hole below the I/O APIC.
pub const X86_64: AddressMap = AddressMap {
    ram_base: 0,
    ram_holes: &[(3 * GIB, 4 * GIB)],
    mmio32: (3 * GIB, 0xfec0_0000),
    mmio64_floor: 4 * GIB,
    mmio64_size: 1 << 40,
    fixed: &[
        FixedRegion {
            name: "PCI ECAM",
            base: crate::x86_64::layout::PCI_ECAM_BASE,
            size: crate::x86_64::layout::PCI_ECAM_SIZE,
        },
        FixedRegion {
            name: "I/O APIC",
            base: 0xfec0_0000,
            size: 0x1000,
        },
        FixedRegion {
            name: "local APIC",
            base: 0xfee0_0000,
            size: 0x1000,
        },
        FixedRegion {
            name: "KVM TSS",
            base: 0xfffb_d000,
            size: 0x3000,
        },
    ],
};

/// arm64, as QEMU's `virt` machine lays it out (what Linux's arm64 defconfig and its
/// users expect): devices below 1 GiB, RAM from 1 GiB, 64-bit BARs from 512 GiB.
pub const AARCH64: AddressMap = AddressMap {
    ram_base: GIB,
    ram_holes: &[],
    mmio32: (0x1000_0000, 0x3eff_0000),
    mmio64_floor: 512 * GIB,
    mmio64_size: 512 * GIB,
    fixed: &[
        FixedRegion {
            name: "GIC distributor",
            base: 0x0800_0000,
            size: 0x1_0000,
        },
        FixedRegion {
            name: "GIC ITS",
            base: 0x0808_0000,
            size: 0x2_0000,
        },
        FixedRegion {
            name: "GIC redistributors",
            base: 0x080a_0000,
            size: 0xf6_0000,
        },
        FixedRegion {
            name: "UART",
            base: 0x0900_0000,
            size: 0x1000,
        },
        FixedRegion {
            name: "PCI ECAM",
            base: 0x3f00_0000,
            size: 0x100_0000,
        },
        FixedRegion {
            name: "boot timer",
            base: 0x0901_0000,
            size: 0x1000,
        },
        FixedRegion {
            name: "pvpanic",
            base: 0x0902_0000,
            size: 0x1000,
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
        a.0 < b.1 && b.0 < a.1
    }

    #[test]
    fn windows_and_fixed_regions_never_overlap_each_other_or_ram() {
        for map in [X86_64, AARCH64] {
            let fixed: Vec<(u64, u64)> = map
                .fixed
                .iter()
                .map(|f| (f.base, f.base + f.size))
                .collect();
            // A fixed device is either outside the 32-bit window or wholly inside it
            // (then the window's allocator reserves it, as VmResources does).
            let (w0, w1) = map.mmio32;
            for f in &fixed {
                let inside = f.0 >= w0 && f.1 <= w1;
                assert!(
                    inside || !overlaps(*f, map.mmio32),
                    "{f:x?} straddles the window"
                );
            }
            let mut regions = fixed;
            regions.push(map.mmio32);
            for (i, a) in regions.iter().enumerate() {
                for b in &regions[i + 1..] {
                    let window = *a == map.mmio32 || *b == map.mmio32;
                    assert!(window || !overlaps(*a, *b), "{a:x?} {b:x?}");
                }
                // Below RAM, or inside a hole RAM skips.
                let in_hole = map.ram_holes.iter().any(|h| a.0 >= h.0 && a.1 <= h.1);
                assert!(a.1 <= map.ram_base || in_hole, "{a:x?} would sit in RAM");
            }
        }
    }

    #[test]
    fn the_64_bit_window_starts_above_ram_on_a_gigabyte() {
        assert_eq!(X86_64.mmio64_start(1 << 30), Some(4 << 30));
        assert_eq!(X86_64.mmio64_start((6 << 30) + 1), Some(7 << 30));
        assert_eq!(AARCH64.mmio64_start(2 << 30), Some(512 << 30));
        assert_eq!(X86_64.mmio64_start(u64::MAX - 5), None);
    }

    #[test]
    fn the_32_bit_ranges_leave_out_fixed_devices() {
        assert_eq!(
            X86_64.mmio32_ranges(),
            vec![(3 * GIB, 0xe000_0000), (0xe010_0000, 0xfec0_0000)],
            "ECAM taken out"
        );
        // arm64's ECAM sits at the window's top end.
        assert_eq!(AARCH64.mmio32_ranges(), vec![(0x1000_0000, 0x3eff_0000)]);
    }
}
