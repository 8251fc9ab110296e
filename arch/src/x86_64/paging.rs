//! Identity-mapped 4-level page tables for the guest, user-accessible so the CPL3
//! workload can reach all of guest-physical space (RAM and MMIO alike).
//!
//! The guest page size is part of granule's stage-2 story: under shadow paging KVM maps
//! at most the smaller of the guest's and the host's page size, so the tables use the
//! largest leaf the guest CPU offers (1 GiB with pdpe1gb, else 2 MiB).

use thiserror::Error;

pub const PAGE_4K: u64 = 4 << 10;
pub const PAGE_2M: u64 = 2 << 20;
pub const PAGE_1G: u64 = 1 << 30;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const TABLE_FLAGS: u64 = PRESENT | WRITABLE | USER;

/// One PML4 maps 512 GiB per entry; granule's identity map stays within one PML4 page.
pub const MAX_IDENTITY_MAP: u64 = 512 * PAGE_1G * 512;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PagingError {
    #[error("guest page size {0:#x} is not 2 MiB or 1 GiB")]
    PageSize(u64),
    #[error("identity map of {0:#x} bytes exceeds the supported {MAX_IDENTITY_MAP:#x}")]
    TooLarge(u64),
}

/// Page tables ready to copy into guest memory at `base`, with CR3 = `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMap {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Guest-physical addresses `[0, mapped)` are identity mapped.
    pub mapped: u64,
}

/// Bytes the tables for `[0, size)` need with leaves of `page_size`.
pub fn table_bytes(size: u64, page_size: u64) -> Result<u64, PagingError> {
    let gib = size.div_ceil(PAGE_1G).max(1);
    let pdpts = gib.div_ceil(512);
    Ok(match page_size {
        PAGE_1G => (1 + pdpts) * PAGE_4K,
        PAGE_2M => (1 + pdpts + gib) * PAGE_4K,
        other => return Err(PagingError::PageSize(other)),
    })
}

/// Builds tables at `base` (4 KiB aligned) mapping `[0, size)` rounded up to 1 GiB.
pub fn identity_map(base: u64, size: u64, page_size: u64) -> Result<IdentityMap, PagingError> {
    if size > MAX_IDENTITY_MAP {
        return Err(PagingError::TooLarge(size));
    }
    let len = table_bytes(size, page_size)?;
    let gib = size.div_ceil(PAGE_1G).max(1);
    let pdpts = gib.div_ceil(512);
    let mut bytes = vec![0u8; len as usize];
    let mut put = |table_off: u64, index: u64, value: u64| {
        let at = (table_off + index * 8) as usize;
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    };
    let pdpt_off = PAGE_4K;
    let pd_off = pdpt_off + pdpts * PAGE_4K;
    for p in 0..pdpts {
        put(0, p, (base + pdpt_off + p * PAGE_4K) | TABLE_FLAGS);
    }
    for g in 0..gib {
        let pdpte = if page_size == PAGE_1G {
            (g * PAGE_1G) | TABLE_FLAGS | HUGE
        } else {
            let pd = pd_off + g * PAGE_4K;
            for e in 0..512 {
                put(pd, e, (g * PAGE_1G + e * PAGE_2M) | TABLE_FLAGS | HUGE);
            }
            (base + pd) | TABLE_FLAGS
        };
        put(pdpt_off, g, pdpte);
    }
    Ok(IdentityMap {
        base,
        bytes,
        mapped: gib * PAGE_1G,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables the way the MMU does, for a guest-physical = virtual address.
    fn walk(map: &IdentityMap, va: u64) -> Option<(u64, u64)> {
        let read = |pa: u64| -> u64 {
            let off = (pa - map.base) as usize;
            u64::from_le_bytes(map.bytes[off..off + 8].try_into().unwrap())
        };
        let addr = |e: u64| e & 0x000f_ffff_ffff_f000;
        let pml4e = read(map.base + ((va >> 39) & 511) * 8);
        if pml4e & PRESENT == 0 || pml4e & USER == 0 {
            return None;
        }
        let pdpte = read(addr(pml4e) + ((va >> 30) & 511) * 8);
        if pdpte & PRESENT == 0 {
            return None;
        }
        if pdpte & HUGE != 0 {
            return Some((addr(pdpte) | (va & (PAGE_1G - 1)), PAGE_1G));
        }
        let pde = read(addr(pdpte) + ((va >> 21) & 511) * 8);
        if pde & PRESENT == 0 || pde & HUGE == 0 || pde & USER == 0 {
            return None;
        }
        Some((addr(pde) | (va & (PAGE_2M - 1)), PAGE_2M))
    }

    #[test]
    fn two_mib_map_is_identity_everywhere_it_claims() {
        let map = identity_map(0x10000, 5 * PAGE_1G + 1, PAGE_2M).unwrap();
        assert_eq!(map.mapped, 6 * PAGE_1G);
        for va in [
            0,
            0x1234,
            PAGE_2M + 7,
            3 * PAGE_1G + 0x12_3456,
            6 * PAGE_1G - 8,
        ] {
            assert_eq!(walk(&map, va), Some((va, PAGE_2M)), "va {va:#x}");
        }
        assert_eq!(walk(&map, 6 * PAGE_1G), None);
    }

    #[test]
    fn one_gib_map_uses_huge_pdptes_and_crosses_512_gib() {
        let map = identity_map(0x10000, 600 * PAGE_1G, PAGE_1G).unwrap();
        assert_eq!(map.bytes.len() as u64, 3 * PAGE_4K); // PML4 + 2 PDPTs
        for va in [
            0,
            PAGE_1G + 5,
            511 * PAGE_1G + 9,
            512 * PAGE_1G,
            599 * PAGE_1G + 1,
        ] {
            assert_eq!(walk(&map, va), Some((va, PAGE_1G)), "va {va:#x}");
        }
        assert_eq!(walk(&map, 600 * PAGE_1G), None);
    }

    #[test]
    fn sizes_and_limits_are_checked() {
        assert_eq!(table_bytes(PAGE_1G, PAGE_2M), Ok(3 * PAGE_4K));
        assert_eq!(table_bytes(0, PAGE_1G), Ok(2 * PAGE_4K));
        assert_eq!(
            identity_map(0, PAGE_1G, PAGE_4K),
            Err(PagingError::PageSize(PAGE_4K))
        );
        assert!(matches!(
            identity_map(0, MAX_IDENTITY_MAP + 1, PAGE_1G),
            Err(PagingError::TooLarge(_))
        ));
    }
}
