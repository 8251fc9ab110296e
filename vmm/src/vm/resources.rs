//! What a VM hands out beyond RAM: its MMIO windows, I/O ports, memslot ids and GSIs,
//! laid out from the architecture's address map so `granule plan` and the VM agree.

use granule_arch::{AddressMap, FixedRegion};

use thiserror::Error;

use crate::allocators::{AddressAllocator, AllocError, IdAllocator, IdError};

#[derive(Debug, Error)]
pub enum ResourceError {
    #[error(transparent)]
    Window(#[from] AllocError),
    #[error("guest RAM needs more memslots than KVM allows: {0}")]
    Memslots(#[from] IdError),
}

/// I/O ports for devices granule adds (above the legacy PC ports).
const PORTS: (u64, u64) = (0x1000, 0x1_0000);
/// GSIs for devices granule adds: the I/O APIC's 24 pins come first.
const FIRST_DEVICE_GSI: u32 = 24;
const LAST_GSI: u32 = 1023;

pub struct VmResources {
    pub mmio32: AddressAllocator,
    pub mmio64: AddressAllocator,
    pub ports: AddressAllocator,
    pub memslots: IdAllocator,
    pub gsis: IdAllocator,
}

impl VmResources {
    /// The resources of a VM laid out by `map`, whose RAM ends at `ram_end` and uses
    /// memslots `0..ram_slots` out of KVM's `max_memslots`.
    pub fn new(
        map: &AddressMap,
        ram_end: u64,
        ram_slots: u32,
        max_memslots: u32,
    ) -> Result<Self, ResourceError> {
        let mut mmio32 = AddressAllocator::new("32-bit MMIO window", map.mmio32.0, map.mmio32.1);
        for FixedRegion { base, size, .. } in map.fixed {
            // Fixed devices inside the window are taken out of it.
            if *base >= map.mmio32.0 && base + size <= map.mmio32.1 {
                mmio32.reserve(*base, *size)?;
            }
        }
        let start64 = map.mmio64_start(ram_end).unwrap_or(u64::MAX);
        let mmio64 = AddressAllocator::new(
            "64-bit MMIO window",
            start64,
            start64.saturating_add(map.mmio64_size),
        );
        let mut memslots = IdAllocator::new("memslot", 0, max_memslots.saturating_sub(1));
        for _ in 0..ram_slots {
            memslots.allocate()?;
        }
        Ok(Self {
            mmio32,
            mmio64,
            ports: AddressAllocator::new("I/O ports", PORTS.0, PORTS.1),
            memslots,
            gsis: IdAllocator::new("GSI", FIRST_DEVICE_GSI, LAST_GSI),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use granule_arch::address_map::{AARCH64, X86_64};

    const G: u64 = 1 << 30;

    #[test]
    fn bars_never_land_in_ram_or_on_fixed_devices() {
        // 6 GiB of x86 RAM: 0-3 GiB and 4-7 GiB.
        let mut r = VmResources::new(&X86_64, 7 * G, 2, 32764).unwrap();
        let big = r.mmio64.allocate_natural(G).unwrap();
        assert_eq!(big, 7 * G, "above RAM, 1 GiB aligned");
        let small = r.mmio32.allocate_natural(256 << 20).unwrap();
        assert!(small >= 3 * G && small + (256 << 20) <= 0xfec0_0000);
        // The whole 32-bit window is below the I/O APIC; nothing reaches it.
        while r.mmio32.allocate_natural(1 << 20).is_ok() {}
        let arm = VmResources::new(&AARCH64, 3 * G, 1, 512).unwrap();
        assert_eq!(arm.mmio64.clone().allocate_natural(G).unwrap(), 512 * G);
    }

    #[test]
    fn ram_keeps_its_memslots_and_removed_slots_are_reused() {
        let mut r = VmResources::new(&X86_64, 7 * G, 2, 8).unwrap();
        let bar = r.memslots.allocate().unwrap();
        assert_eq!(bar, 2, "RAM has 0 and 1");
        let other = r.memslots.allocate().unwrap();
        r.memslots.free(bar).unwrap();
        assert_eq!(r.memslots.allocate().unwrap(), bar);
        assert_eq!(other, 3);
        assert_eq!(r.gsis.allocate().unwrap(), 24);
        assert_eq!(r.ports.allocate_natural(0x100).unwrap(), 0x1000);
    }
}
