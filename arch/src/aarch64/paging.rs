//! Stage-1 identity tables: 4 KiB granule, 48-bit VA, leaves of 1 GiB (level-1 blocks),
//! 2 MiB (level-2 blocks) or 4 KiB (level-3 pages).
//!
//! The tables of each level lie in one contiguous run, so entry `i` of a level (counted
//! across all of that level's tables) maps `[i * span, (i + 1) * span)` and, when it is
//! a table descriptor, points at table `i` of the next level.

use thiserror::Error;

use super::layout::{MMIO_HOLE_END, MMIO_HOLE_START};

pub const PAGE: u64 = 4 << 10;
pub const PAGE_2M: u64 = 2 << 20;
pub const GIB: u64 = 1 << 30;
/// What one level-0 table maps (48-bit VA).
pub const MAX_IDENTITY_MAP: u64 = 512 * 512 * GIB;

const VALID_TABLE: u64 = 0b11;
const VALID_BLOCK: u64 = 0b01;
const VALID_PAGE: u64 = 0b11;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 3 << 8;
/// MAIR index 0: normal write-back memory; 1: Device-nGnRnE (see regs::MAIR).
const ATTR_NORMAL: u64 = 0 << 2;
const ATTR_DEVICE: u64 = 1 << 2;
/// What one entry maps at levels 0 to 3.
const SPAN: [u64; 4] = [512 * GIB, GIB, PAGE_2M, PAGE];
const ENTRIES: u64 = 512;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PagingError {
    #[error("guest page size {0:#x} is not 4 KiB, 2 MiB or 1 GiB")]
    PageSize(u64),
    #[error("identity map of {0:#x} bytes exceeds the supported {MAX_IDENTITY_MAP:#x}")]
    TooLarge(u64),
}

/// The level whose entries are the leaves for `page`.
fn leaf_level(page: u64) -> Result<usize, PagingError> {
    match page {
        GIB => Ok(1),
        PAGE_2M => Ok(2),
        PAGE => Ok(3),
        other => Err(PagingError::PageSize(other)),
    }
}

/// Tables per level (0 to the leaf level) for `[0, top)`, `top` rounded up to `page`.
fn tables_per_level(top: u64, page: u64) -> Result<Vec<u64>, PagingError> {
    if top > MAX_IDENTITY_MAP {
        return Err(PagingError::TooLarge(top));
    }
    let leaf = leaf_level(page)?;
    Ok((0..=leaf)
        .map(|l| top.div_ceil(SPAN[l]).max(1).div_ceil(ENTRIES))
        .collect())
}

/// Bytes the tables for `[0, top)` take with `page` leaves.
pub fn table_bytes(top: u64, page: u64) -> Result<u64, PagingError> {
    Ok(tables_per_level(top, page)?.iter().sum::<u64>() * PAGE)
}

/// Tables at `base` mapping `[0, top)` (rounded up to `page`) with `page` leaves; the
/// MMIO hole is Device memory, everything else Normal.
pub fn identity_map(base: u64, top: u64, page: u64) -> Result<Vec<u8>, PagingError> {
    let tables = tables_per_level(top, page)?;
    let leaf = tables.len() - 1;
    let mut bytes = vec![0u8; (tables.iter().sum::<u64>() * PAGE) as usize];
    let mut level_off = 0;
    for (l, &n) in tables.iter().enumerate() {
        let next_off = level_off + n * PAGE;
        let used = top.div_ceil(SPAN[l]).max(1);
        for i in 0..used {
            let at = (level_off + i * 8) as usize;
            let pa = i * SPAN[l];
            let entry = if l < leaf {
                (base + next_off + i * PAGE) | VALID_TABLE
            } else {
                let attr = if (MMIO_HOLE_START..MMIO_HOLE_END).contains(&pa) {
                    ATTR_DEVICE
                } else {
                    ATTR_NORMAL
                };
                let kind = if l == 3 { VALID_PAGE } else { VALID_BLOCK };
                pa | AF | SH_INNER | attr | kind
            };
            bytes[at..at + 8].copy_from_slice(&entry.to_le_bytes());
        }
        level_off = next_off;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: &[u8], at: u64) -> u64 {
        u64::from_le_bytes(t[at as usize..at as usize + 8].try_into().unwrap())
    }

    /// Walks the tables at `base` like the MMU: (output address, leaf size, descriptor).
    fn walk(t: &[u8], base: u64, va: u64) -> Option<(u64, u64, u64)> {
        let mut table = base;
        for (l, span) in SPAN.iter().enumerate() {
            let d = entry(t, table - base + ((va / span) % ENTRIES) * 8);
            match (d & 0b11, l) {
                (0b11, 3) | (0b01, 1 | 2) => {
                    let oa = d & 0x0000_ffff_ffff_f000 & !(span - 1);
                    return Some((oa + va % span, *span, d));
                }
                (0b11, _) => table = d & 0x0000_ffff_ffff_f000,
                _ => return None,
            }
        }
        None
    }

    #[test]
    fn gib_blocks_are_identity_normal_except_the_hole() {
        let t = identity_map(0x8000, 600 * GIB, GIB).unwrap();
        assert_eq!(t.len() as u64, 3 * PAGE, "L0 + two L1 tables");
        assert_eq!(entry(&t, 0), 0x9000 | 0b11);
        assert_eq!(entry(&t, 8), 0xa000 | 0b11);
        let block = |g: u64| entry(&t, PAGE + g * 8);
        assert_eq!(block(4), (4 * GIB) | AF | SH_INNER | VALID_BLOCK);
        assert_eq!(
            block(3) & 0b11100,
            ATTR_DEVICE,
            "the MMIO hole is Device memory"
        );
        assert_eq!(
            block(513) & !0xfff,
            513 * GIB,
            "second L1 table continues the map"
        );
    }

    #[test]
    fn every_leaf_size_maps_identity_with_its_own_size() {
        let base = 0x10_0000;
        for page in [PAGE, PAGE_2M, GIB] {
            let top = 5 * GIB + 3 * PAGE;
            let t = identity_map(base, top, page).unwrap();
            assert_eq!(t.len() as u64, table_bytes(top, page).unwrap());
            for va in [
                0,
                0x1234,
                GIB + PAGE_2M + 8,
                4 * GIB,
                5 * GIB + 2 * PAGE + 16,
            ] {
                let (pa, size, d) = walk(&t, base, va).unwrap();
                assert_eq!((pa, size), (va, page), "{va:#x} with {page:#x} leaves");
                assert_eq!(d & 0b11100, ATTR_NORMAL, "RAM is Normal memory");
            }
            let (_, _, d) = walk(&t, base, MMIO_HOLE_START + 0x1000).unwrap();
            assert_eq!(d & 0b11100, ATTR_DEVICE, "the hole is Device memory");
        }
    }

    #[test]
    fn table_sizes_follow_the_leaf() {
        // 4 KiB pages over 5 GiB: one L0, one L1, five L2 and 2560 L3 tables.
        assert_eq!(
            table_bytes(5 * GIB, PAGE).unwrap(),
            (1 + 1 + 5 + 2560) * PAGE
        );
        assert_eq!(table_bytes(5 * GIB, PAGE_2M).unwrap(), (1 + 1 + 5) * PAGE);
        assert_eq!(table_bytes(5 * GIB, GIB).unwrap(), 2 * PAGE);
        assert_eq!(
            table_bytes(GIB, 64 << 10),
            Err(PagingError::PageSize(64 << 10))
        );
        assert_eq!(
            table_bytes(MAX_IDENTITY_MAP + 1, GIB),
            Err(PagingError::TooLarge(MAX_IDENTITY_MAP + 1))
        );
    }
}
