//! `granule stress` settings, their defaults for this machine, and their checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::memory::Backing;
use crate::units::format_size;

/// What a vCPU does when a store hits read-only memory in stage 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OnFault {
    /// Skip the faulting store (x86 RIP += 3, arm64 PC += 4) and keep going until the
    /// guest sees the read-only flag: every vCPU faults on every page.
    Skip,
    /// Stop at the first fault and wait until memory is writable again.
    Stop,
}

pub const GIB: u64 = 1 << 30;
/// Guest memory starts at 4 GiB, as upstream (slot 0 below holds code and tables).
pub const START_GPA: u64 = 4 * GIB;

#[derive(Debug, Clone, Serialize)]
pub struct StressConfig {
    pub vcpus: usize,
    /// Guest memory to map, GiB (upstream -m).
    pub max_mem_gib: u64,
    /// Size of each memslot and of the one host chunk they alias, GiB (upstream -s).
    pub slot_gib: u64,
    pub backing: Backing,
    pub on_fault: OnFault,
    /// The guest's stage-1 page size; None: the architecture's default.
    pub guest_page: Option<u64>,
    /// Longest any one phase may take before the run is stopped with an error.
    pub phase_timeout: Duration,
    pub progress: bool,
    /// Debug: this vCPU crashes at its first instruction.
    pub crash_vcpu: Option<usize>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("-c/--vcpus must be at least 1")]
    NoVcpus,
    #[error("-s/--slot-size must be at least 1 GiB")]
    NoSlot,
    #[error("-m {mem} GiB is smaller than the slot size -s {slot} GiB; use -m >= -s")]
    MemSmallerThanSlot { mem: u64, slot: u64 },
    #[error("{mem} GiB in {slot} GiB slots needs {need} memslots, but KVM offers {have} (NR_MEMSLOTS {nr} minus slot 0); use a larger -s or a smaller -m")]
    TooManySlots {
        mem: u64,
        slot: u64,
        need: u64,
        have: u64,
        nr: u64,
    },
    #[error("guest memory would end at {end:#x}, beyond the guest's {bits}-bit physical address space; use a smaller -m")]
    BeyondPhysBits { end: u64, bits: u32 },
    #[error("the {} chunk (-s) exceeds this host's RAM ({})", format_size(*slot), format_size(*host))]
    SlotTooLarge { slot: u64, host: u64 },
    #[error("{vcpus} vCPUs requested, but this host's KVM allows at most {max}")]
    TooManyVcpus { vcpus: usize, max: usize },
    #[error("--guest-page {}: the guest CPU does not offer it (it offers {offered}); use one of those", format_size(*page))]
    GuestPage { page: u64, offered: String },
    #[error("--guest-page {} over {} of guest-physical space needs {} of page tables, more than the {} of low RAM below the MMIO hole; use a smaller -m or a larger --guest-page", format_size(*page), format_size(*top), format_size(*need), format_size(*room))]
    TablesTooLarge {
        page: u64,
        top: u64,
        need: u64,
        room: u64,
    },
}

/// What the checks derive: the number of slots and where guest memory ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub slots: u64,
    pub slot_size: u64,
    pub end: u64,
}

/// Checks `c` against KVM's limits and the host, as upstream's main() but with errors
/// instead of silently mapping less than asked.
pub fn check(
    c: &StressConfig,
    nr_memslots: u64,
    max_vcpus: usize,
    phys_bits: u32,
    host_ram: u64,
) -> Result<Geometry, ConfigError> {
    if c.vcpus == 0 {
        return Err(ConfigError::NoVcpus);
    }
    if c.vcpus > max_vcpus {
        return Err(ConfigError::TooManyVcpus {
            vcpus: c.vcpus,
            max: max_vcpus,
        });
    }
    if c.slot_gib == 0 {
        return Err(ConfigError::NoSlot);
    }
    if c.max_mem_gib < c.slot_gib {
        return Err(ConfigError::MemSmallerThanSlot {
            mem: c.max_mem_gib,
            slot: c.slot_gib,
        });
    }
    let slot_size = c.slot_gib * GIB;
    if host_ram > 0 && slot_size > host_ram {
        return Err(ConfigError::SlotTooLarge {
            slot: slot_size,
            host: host_ram,
        });
    }
    let slots = c.max_mem_gib.div_ceil(c.slot_gib);
    let have = nr_memslots.saturating_sub(1);
    if slots > have {
        return Err(ConfigError::TooManySlots {
            mem: c.max_mem_gib,
            slot: c.slot_gib,
            need: slots,
            have,
            nr: nr_memslots,
        });
    }
    let end = START_GPA + slots * slot_size;
    if phys_bits < 64 && end > 1u64 << phys_bits {
        return Err(ConfigError::BeyondPhysBits {
            end,
            bits: phys_bits,
        });
    }
    Ok(Geometry {
        slots,
        slot_size,
        end,
    })
}

/// RAM below the stress memory for the program image and stacks; the page tables come
/// on top (upstream's slot 0).
pub const LOW_RAM: u64 = 64 << 20;
/// Low RAM ends below the [3 GiB, 4 GiB) MMIO hole.
const LOW_RAM_LIMIT: u64 = 3 * GIB;

/// The guest's stage-1 page size: the one asked for if the guest offers it, else the
/// largest offered (`offered` ascending, not empty).
pub fn guest_page(requested: Option<u64>, offered: &[u64]) -> Result<u64, ConfigError> {
    let largest = offered.last().copied().unwrap_or(GIB);
    match requested {
        None => Ok(largest),
        Some(p) if offered.contains(&p) => Ok(p),
        Some(page) => Err(ConfigError::GuestPage {
            page,
            offered: offered
                .iter()
                .map(|&o| format_size(o))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Low RAM for `tables` bytes of page tables over `[0, top)` with `page` leaves:
/// [`LOW_RAM`] plus the tables, in whole 2 MiB, below the MMIO hole.
pub fn low_ram(tables: u64, page: u64, top: u64) -> Result<u64, ConfigError> {
    let room = LOW_RAM_LIMIT - LOW_RAM;
    let rounded = tables.checked_next_multiple_of(2 << 20).unwrap_or(u64::MAX);
    if rounded > room {
        return Err(ConfigError::TablesTooLarge {
            page,
            top,
            need: tables,
            room,
        });
    }
    Ok(LOW_RAM + rounded)
}

/// Defaults that fit the machine: upstream's 3/4 of the CPUs; upstream's 128 GiB in
/// 2 GiB slots where stage 2 is hardware, but 8 GiB under shadow paging, where every
/// guest page costs a shadow-page fault (hours for 128 GiB on a small host); and a
/// chunk no larger than a quarter of host RAM.
pub fn defaults(cpus: usize, hardware_stage2: bool, host_ram: u64) -> (usize, u64, u64) {
    let vcpus = (cpus * 3 / 4).max(1);
    let mem = if hardware_stage2 { 128 } else { 8 };
    let quarter = (host_ram / 4 / GIB).max(1);
    (vcpus, mem, 2.min(quarter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vcpus: usize, mem: u64, slot: u64) -> StressConfig {
        StressConfig {
            vcpus,
            max_mem_gib: mem,
            slot_gib: slot,
            backing: Backing::Anon4k,
            on_fault: OnFault::Skip,
            guest_page: None,
            phase_timeout: Duration::from_secs(60),
            progress: false,
            crash_vcpu: None,
        }
    }

    #[test]
    fn geometry_follows_upstream() {
        let g = check(&cfg(2, 128, 2), 32764, 1024, 46, 24 * GIB).unwrap();
        assert_eq!(
            (g.slots, g.slot_size, g.end),
            (64, 2 * GIB, START_GPA + 128 * GIB)
        );
        let g = check(&cfg(2, 5, 2), 32764, 1024, 46, 24 * GIB).unwrap();
        assert_eq!(
            g.slots, 3,
            "a partial last slot still gets a whole slot, as upstream"
        );
    }

    #[test]
    fn bad_configs_are_named() {
        let host = 24 * GIB;
        assert_eq!(
            check(&cfg(0, 4, 1), 32764, 1024, 46, host),
            Err(ConfigError::NoVcpus)
        );
        assert_eq!(
            check(&cfg(2, 1, 2), 32764, 1024, 46, host),
            Err(ConfigError::MemSmallerThanSlot { mem: 1, slot: 2 })
        );
        assert!(matches!(
            check(&cfg(2, 64, 1), 32, 1024, 46, host),
            Err(ConfigError::TooManySlots {
                need: 64,
                have: 31,
                ..
            })
        ));
        assert!(matches!(
            check(&cfg(2, 64, 1), 32764, 1024, 36, host),
            Err(ConfigError::BeyondPhysBits { .. })
        ));
        assert!(matches!(
            check(&cfg(2, 64, 32), 32764, 1024, 46, host),
            Err(ConfigError::SlotTooLarge { .. })
        ));
        assert!(matches!(
            check(&cfg(4096, 4, 1), 32764, 1024, 46, host),
            Err(ConfigError::TooManyVcpus { .. })
        ));
        let e = check(&cfg(2, 1, 2), 32764, 1024, 46, host)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("-m 1 GiB is smaller than the slot size -s 2 GiB"),
            "{e}"
        );
    }

    #[test]
    fn guest_page_is_one_the_guest_offers() {
        let arm = [4 << 10, 2 << 20, GIB];
        assert_eq!(guest_page(None, &arm), Ok(GIB));
        assert_eq!(guest_page(Some(4 << 10), &arm), Ok(4 << 10));
        let e = guest_page(Some(GIB), &[2 << 20]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--guest-page 1 GiB: the guest CPU does not offer it (it offers 2 MiB); use one of those"
        );
    }

    #[test]
    fn low_ram_grows_with_the_tables_up_to_the_hole() {
        assert_eq!(low_ram(0, GIB, 5 * GIB), Ok(LOW_RAM));
        assert_eq!(low_ram(1, GIB, 5 * GIB), Ok(LOW_RAM + (2 << 20)));
        // 4 KiB pages over 1 TiB (arm64's 40-bit limit) take 2 GiB of tables and fit;
        // 3 GiB of tables would not.
        assert!(low_ram(2 * GIB + (4 << 20), 4 << 10, 1 << 40).is_ok());
        let e = low_ram(3 * GIB, 4 << 10, 3 << 39).unwrap_err();
        assert!(matches!(e, ConfigError::TablesTooLarge { .. }));
        assert!(
            e.to_string()
                .contains("use a smaller -m or a larger --guest-page"),
            "{e}"
        );
        assert!(low_ram(u64::MAX, 4 << 10, 1 << 40).is_err(), "no overflow");
    }

    #[test]
    fn defaults_scale_to_the_machine() {
        assert_eq!(defaults(2, false, 24 * GIB), (1, 8, 2));
        assert_eq!(defaults(64, true, 512 * GIB), (48, 128, 2));
        assert_eq!(defaults(1, true, 2 * GIB), (1, 128, 1));
    }
}
