//! Stage-1 identity tables: 4 KiB granule, 48-bit VA, level-1 1 GiB block descriptors.

use super::layout::{MMIO_HOLE_END, MMIO_HOLE_START};

pub const PAGE: u64 = 4 << 10;
pub const GIB: u64 = 1 << 30;

const VALID_TABLE: u64 = 0b11;
const VALID_BLOCK: u64 = 0b01;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 3 << 8;
/// MAIR index 0: normal write-back memory; 1: Device-nGnRnE (see regs::MAIR).
const ATTR_NORMAL: u64 = 0 << 2;
const ATTR_DEVICE: u64 = 1 << 2;

/// Tables at `base` mapping `[0, top)` (rounded up to 1 GiB); returns the bytes.
/// The 1 GiB blocks in the MMIO hole are Device memory, all others Normal.
pub fn identity_map(base: u64, top: u64) -> Vec<u8> {
    let gib = top.div_ceil(GIB).max(1);
    let l1_tables = gib.div_ceil(512);
    let mut bytes = vec![0u8; ((1 + l1_tables) * PAGE) as usize];
    let mut put =
        |at: u64, v: u64| bytes[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    for t in 0..l1_tables {
        put(t * 8, (base + (1 + t) * PAGE) | VALID_TABLE);
    }
    for g in 0..gib {
        let pa = g * GIB;
        let attr = if (MMIO_HOLE_START..MMIO_HOLE_END).contains(&pa) {
            ATTR_DEVICE
        } else {
            ATTR_NORMAL
        };
        put(PAGE + g * 8, pa | AF | SH_INNER | attr | VALID_BLOCK);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: &[u8], at: u64) -> u64 {
        u64::from_le_bytes(t[at as usize..at as usize + 8].try_into().unwrap())
    }

    #[test]
    fn blocks_are_identity_normal_except_the_hole() {
        let t = identity_map(0x8000, 600 * GIB);
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
}
