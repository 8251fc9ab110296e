//! The E820 memory map the kernel gets: exactly granule's RAM ranges, with the legacy
//! area between the EBDA and 1 MiB (which holds the ACPI tables) marked reserved. The
//! MMIO hole is simply absent, as on real firmware.

use super::layout::{EBDA_START, HIMEM_START};
use crate::RamRange;

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
/// Entries the zero page holds.
pub const E820_MAX: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum E820Error {
    #[error("a Linux guest needs RAM from guest-physical 0 up to at least {min:#x}; the first RAM range is {gpa:#x}+{size:#x}")]
    NoLowMemory { gpa: u64, size: u64, min: u64 },
    #[error("{0} RAM ranges do not fit the zero page's {E820_MAX}-entry memory map")]
    TooMany(usize),
}

/// Builds the map for `ram` (sorted, non-overlapping). The first range must start at 0
/// and reach past 1 MiB plus `min_high` bytes, where the kernel loads.
pub fn build(ram: &[RamRange], min_high: u64) -> Result<Vec<E820Entry>, E820Error> {
    let min = HIMEM_START + min_high;
    let first = ram.first().copied().unwrap_or(RamRange { gpa: 0, size: 0 });
    if first.gpa != 0 || first.size < min {
        return Err(E820Error::NoLowMemory {
            gpa: first.gpa,
            size: first.size,
            min,
        });
    }
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: E820_RESERVED,
        },
        E820Entry {
            addr: HIMEM_START,
            size: first.size - HIMEM_START,
            kind: E820_RAM,
        },
    ];
    map.extend(ram[1..].iter().map(|r| E820Entry {
        addr: r.gpa,
        size: r.size,
        kind: E820_RAM,
    }));
    if map.len() > E820_MAX {
        return Err(E820Error::TooMany(ram.len()));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_around_the_hole_becomes_ram_entries_and_the_bios_area_is_reserved() {
        let ram = [
            RamRange {
                gpa: 0,
                size: 3 << 30,
            },
            RamRange {
                gpa: 4 << 30,
                size: 1 << 30,
            },
        ];
        let map = build(&ram, 64 << 20).unwrap();
        assert_eq!(map.len(), 4);
        assert_eq!(map[1].kind, E820_RESERVED);
        assert_eq!(map[2].addr + map[2].size, 3 << 30);
        assert_eq!((map[3].addr, map[3].size), (4 << 30, 1 << 30));
        let ram_bytes: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram_bytes, (4 << 30) - (HIMEM_START - EBDA_START));
    }

    #[test]
    fn ram_that_does_not_start_at_zero_or_is_too_small_is_refused() {
        let high = [RamRange {
            gpa: 1 << 30,
            size: 1 << 30,
        }];
        assert!(matches!(
            build(&high, 0),
            Err(E820Error::NoLowMemory { .. })
        ));
        let small = [RamRange {
            gpa: 0,
            size: 8 << 20,
        }];
        assert!(build(&small, 64 << 20).is_err());
        assert!(build(&[], 0).is_err());
    }
}
