//! Guest RAM: zones of host memory with chosen backings, laid out so GPA and HVA are
//! congruent modulo the largest page, registered with KVM as memslots.

pub mod backing;
pub mod default_backing;
pub mod hypothetical;
pub mod layout;
pub mod memslot;
pub mod mmap;
pub mod pool;
mod prefault;
pub use prefault::populate;
pub mod zone;

use std::time::Instant;

use granule_arch::RamRange;
use kvm_ioctls::VmFd;
use serde::Serialize;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

pub use backing::Backing;
pub use zone::{parse_zone, ZoneConfig};

use crate::stage2::{HostMapping, PlanInput, SlotSpec, Target};
use crate::units::format_size;
use mmap::AlignedMmap;

#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("no guest memory zones given")]
    NoZones,
    #[error("guest memory of {} exceeds this host's RAM ({})", format_size(*total), format_size(*host))]
    TooLarge { total: u64, host: u64 },
    #[error(transparent)]
    Pool(#[from] pool::PoolError),
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("memory zone {zone} ({} {}): {source}", format_size(*size), backing.name())]
    Map {
        zone: usize,
        size: u64,
        backing: Backing,
        source: std::io::Error,
    },
    #[error("memory zone {zone}: {source}")]
    Prefault { zone: usize, source: std::io::Error },
    #[error("cannot describe guest memory at {gpa:#x} to vm-memory")]
    Region { gpa: u64 },
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

/// One memslot: a piece of a zone at one guest-physical range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RamSlot {
    pub slot: u32,
    pub zone: usize,
    pub gpa: u64,
    pub size: u64,
    pub hva: u64,
}

/// A zone's host memory and what setting it up cost.
#[derive(Debug)]
pub struct Zone {
    pub config: ZoneConfig,
    pub map: AlignedMmap,
    /// Seconds spent mapping (for hugetlb: includes reserving the pool pages).
    pub map_s: f64,
    /// Seconds spent prefaulting, when asked to.
    pub prefault_s: Option<f64>,
}

/// The guest's RAM.
pub struct GuestRam {
    // Field order is drop order: the vm-memory views go before the mappings they view.
    mem: GuestMemoryMmap,
    slots: Vec<RamSlot>,
    zones: Vec<Zone>,
}

/// Maps zone `i` at its alignment and prefaults it when asked.
fn map_zone(i: usize, z: &ZoneConfig, threads: usize) -> Result<Zone, MemoryError> {
    let err = |source| MemoryError::Map {
        zone: i,
        size: z.size,
        backing: z.backing,
        source,
    };
    let size = usize::try_from(z.size).map_err(|_| err(std::io::ErrorKind::InvalidInput.into()))?;
    let t = Instant::now();
    let map = AlignedMmap::new(
        z.backing,
        size,
        layout::zone_align(z) as usize,
        z.misalign as usize,
    )
    .map_err(err)?;
    let map_s = t.elapsed().as_secs_f64();
    let prefault_s = if z.prefault {
        let t = Instant::now();
        // SAFETY: `map` is the live read-write mapping of `size` bytes made above.
        unsafe { prefault::populate(map.as_ptr(), size, z.backing.page_size() as usize, threads) }
            .map_err(|source| MemoryError::Prefault { zone: i, source })?;
        Some(t.elapsed().as_secs_f64())
    } else {
        None
    };
    Ok(Zone {
        config: z.clone(),
        map,
        map_s,
        prefault_s,
    })
}

impl GuestRam {
    /// Checks, lays out, maps (and prefaults) `zones`, avoiding `holes`. On any error
    /// everything mapped so far is unmapped again.
    pub fn new(
        zones: &[ZoneConfig],
        holes: &[(u64, u64)],
        host_ram: u64,
    ) -> Result<Self, MemoryError> {
        Self::with_base(zones, 0, holes, host_ram)
    }

    /// As [`GuestRam::new`], with RAM starting at `base` rather than 0 (arm64 RAM
    /// starts above the platform devices).
    pub fn with_base(
        zones: &[ZoneConfig],
        base: u64,
        holes: &[(u64, u64)],
        host_ram: u64,
    ) -> Result<Self, MemoryError> {
        if zones.is_empty() {
            return Err(MemoryError::NoZones);
        }
        // Saturating: a sum past 64 bits is more than any host has, and says so below.
        let total = zones.iter().fold(0u64, |t, z| t.saturating_add(z.size));
        if host_ram > 0 && total > host_ram {
            return Err(MemoryError::TooLarge {
                total,
                host: host_ram,
            });
        }
        pool::check(&pool::pages_needed(zones), pool::read_pool)?;
        let placements = layout::place(zones, base, holes)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

        let mapped = zones
            .iter()
            .enumerate()
            .map(|(i, z)| map_zone(i, z, threads))
            .collect::<Result<Vec<Zone>, _>>()?;

        let slots: Vec<RamSlot> = placements
            .iter()
            .enumerate()
            .map(|(i, p)| RamSlot {
                slot: i as u32,
                zone: p.zone,
                gpa: p.gpa,
                size: p.size,
                hva: mapped[p.zone].map.as_ptr() as u64 + p.offset,
            })
            .collect();
        let regions = slots
            .iter()
            .map(|s| {
                // SAFETY: the slot's range lies inside a zone mapping owned by `mapped`,
                // which this struct keeps alive longer than `mem` (field order).
                let region = unsafe {
                    MmapRegion::build_raw(
                        s.hva as *mut u8,
                        s.size as usize,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                    )
                }
                .map_err(|_| MemoryError::Region { gpa: s.gpa })?;
                GuestRegionMmap::new(region, GuestAddress(s.gpa))
                    .ok_or(MemoryError::Region { gpa: s.gpa })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mem =
            GuestMemoryMmap::from_regions(regions).map_err(|_| MemoryError::Region { gpa: 0 })?;
        Ok(Self {
            mem,
            slots,
            zones: mapped,
        })
    }

    /// Guest RAM ranges in guest-physical order.
    pub fn ranges(&self) -> Vec<RamRange> {
        let mut r: Vec<RamRange> = self
            .slots
            .iter()
            .map(|s| RamRange {
                gpa: s.gpa,
                size: s.size,
            })
            .collect();
        r.sort_by_key(|r| r.gpa);
        r
    }

    pub fn slots(&self) -> &[RamSlot] {
        &self.slots
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Registers every slot with KVM.
    pub fn register(&self, vm: &VmFd) -> Result<(), MemoryError> {
        for s in &self.slots {
            // SAFETY: the range is a live mapping owned by `self.zones`, which outlives
            // the VM (the VM fd is dropped first), and placements never overlap.
            unsafe { memslot::set_memslot(vm, s.slot, s.gpa, s.size, s.hva) }.map_err(
                |source| MemoryError::Memslot {
                    slot: s.slot,
                    gpa: s.gpa,
                    size: s.size,
                    source,
                },
            )?;
        }
        Ok(())
    }

    /// The planner's input for this RAM on `target`.
    pub fn plan_input(&self, target: Target, write_tracked: Vec<(u64, u64)>) -> PlanInput {
        PlanInput {
            target,
            slots: self
                .slots
                .iter()
                .map(|s| SlotSpec {
                    slot: s.slot,
                    gpa: s.gpa,
                    size: s.size,
                    hva: s.hva,
                    dirty_log: false,
                })
                .collect(),
            mappings: self
                .zones
                .iter()
                .map(|z| HostMapping {
                    hva: z.map.as_ptr() as u64,
                    size: z.map.len() as u64,
                    kind: z.config.backing.host_kind(),
                    page_size: z.config.backing.page_size(),
                })
                .collect(),
            write_tracked,
            nx_split: vec![],
        }
    }

    /// The vm-memory view, for loaders that write guest memory themselves.
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
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

    const HOLE: (u64, u64) = (0xc000_0000, 0x1_0000_0000);

    #[test]
    fn zones_map_aligned_and_congruent_and_access_is_bounded() {
        let zones = [
            ZoneConfig::new(64 << 20, Backing::Thp),
            ZoneConfig::new(4 << 20, Backing::Memfd),
        ];
        let ram = GuestRam::new(&zones, &[HOLE], 0).unwrap();
        for s in ram.slots() {
            assert_eq!((s.gpa ^ s.hva) % (2 << 20), 0, "{s:?}");
        }
        ram.write((64 << 20) + 8, &7u64.to_le_bytes()).unwrap();
        assert_eq!(ram.read_u64((64 << 20) + 8).unwrap(), 7);
        assert!(matches!(
            ram.read_u64(68 << 20),
            Err(MemoryError::Access { .. })
        ));
    }

    #[test]
    fn too_much_memory_is_refused_before_mapping() {
        let zones = [ZoneConfig::new(64 << 30, Backing::Anon4k)];
        assert!(matches!(
            GuestRam::new(&zones, &[HOLE], 8 << 30),
            Err(MemoryError::TooLarge { .. })
        ));
        assert!(matches!(
            GuestRam::new(&[], &[HOLE], 0),
            Err(MemoryError::NoZones)
        ));
    }
}
