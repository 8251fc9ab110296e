//! Guest RAM: host mappings for each RAM range, registered with KVM as memslots.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use granule_arch::RamRange;

#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("cannot map {size:#x} bytes of guest RAM: {source}")]
    Map {
        size: u64,
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("range {gpa:#x}+{size:#x} does not fit the host address space")]
    TooLarge { gpa: u64, size: u64 },
    #[error("KVM refused memslot {slot} ({gpa:#x}+{size:#x}): {source}")]
    Memslot {
        slot: u32,
        gpa: u64,
        size: u64,
        source: kvm_ioctls::Error,
    },
    #[error("guest address {gpa:#x} (+{len:#x}) is not in guest RAM")]
    Access { gpa: u64, len: usize },
}

/// The guest's RAM, one host mapping and one memslot per range.
pub struct GuestRam {
    mem: GuestMemoryMmap,
    ranges: Vec<RamRange>,
}

impl GuestRam {
    /// Maps anonymous, lazily populated memory for every range.
    pub fn new(ranges: &[RamRange]) -> Result<Self, MemoryError> {
        let spec = ranges
            .iter()
            .map(|r| {
                usize::try_from(r.size)
                    .map(|s| (GuestAddress(r.gpa), s))
                    .map_err(|_| MemoryError::TooLarge {
                        gpa: r.gpa,
                        size: r.size,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let size = ranges.iter().map(|r| r.size).sum();
        let mem = GuestMemoryMmap::from_ranges(&spec)
            .map_err(|source| MemoryError::Map { size, source })?;
        Ok(Self {
            mem,
            ranges: ranges.to_vec(),
        })
    }

    pub fn ranges(&self) -> &[RamRange] {
        &self.ranges
    }

    /// Registers every range as memslot 0, 1, ...
    pub fn register(&self, vm: &VmFd) -> Result<(), MemoryError> {
        for (slot, region) in self.mem.iter().enumerate() {
            let slot = slot as u32;
            let region_desc = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the region is a live mapping of exactly `memory_size` bytes owned by
            // `self.mem`, which outlives the VM (the Vm struct drops its VmFd first), and
            // slots never overlap because RAM ranges come from a validated layout.
            unsafe { vm.set_user_memory_region(region_desc) }.map_err(|source| {
                MemoryError::Memslot {
                    slot,
                    gpa: region_desc.guest_phys_addr,
                    size: region_desc.memory_size,
                    source,
                }
            })?;
        }
        Ok(())
    }

    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), MemoryError> {
        self.mem
            .write_slice(bytes, GuestAddress(gpa))
            .map_err(|_| MemoryError::Access {
                gpa,
                len: bytes.len(),
            })
    }

    pub fn read_u64(&self, gpa: u64) -> Result<u64, MemoryError> {
        self.mem
            .read_obj::<u64>(GuestAddress(gpa))
            .map_err(|_| MemoryError::Access { gpa, len: 8 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_stay_inside_ram() {
        let ram = GuestRam::new(&[
            RamRange {
                gpa: 0,
                size: 0x10000,
            },
            RamRange {
                gpa: 0x100000,
                size: 0x1000,
            },
        ])
        .unwrap();
        ram.write(0x100ff8, &7u64.to_le_bytes()).unwrap();
        assert_eq!(ram.read_u64(0x100ff8).unwrap(), 7);
        assert!(matches!(
            ram.read_u64(0x100ffc),
            Err(MemoryError::Access { .. })
        ));
        assert!(matches!(
            ram.write(0x20000, &[1]),
            Err(MemoryError::Access { .. })
        ));
    }
}
