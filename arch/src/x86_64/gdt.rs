//! Global descriptor table and task-state segment for a flat 64-bit guest.
//!
//! The same descriptor values are written into guest memory (the CPU reads them when the
//! prologue's `iretq` loads the CPL3 selectors) and handed to KVM_SET_SREGS as the
//! hidden segment state, so the two can never disagree.

/// Selector values (index * 8, RPL in the low two bits for the user ones).
pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x18 | 3;
pub const USER_CS: u16 = 0x20 | 3;
pub const TSS_SEL: u16 = 0x28;

/// Access/flag words (bits 8..15 access byte, bits 12..15 of the upper nibble G/DB/L/AVL),
/// in the layout of [`descriptor`].
pub const KERNEL_CODE64: u16 = 0xa09b; // G, L, P, DPL0, S, exec/read, accessed
pub const KERNEL_DATA: u16 = 0xc093; // G, DB, P, DPL0, S, read/write, accessed
pub const USER_DATA: u16 = 0xc0f3; // as kernel data, DPL3
pub const USER_CODE64: u16 = 0xa0fb; // as kernel code, DPL3
pub const TSS64_AVAILABLE: u16 = 0x0089; // P, DPL0, type 9 (available 64-bit TSS)

/// Size of the 64-bit TSS proper.
pub const TSS_SIZE: u64 = 104;
/// TSS plus an I/O permission bitmap for all 65536 ports and its terminating byte.
pub const TSS_WITH_IOMAP: u64 = TSS_SIZE + 8192 + 1;

/// Encodes an 8-byte segment descriptor.
pub fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    let base = u64::from(base);
    let limit = u64::from(limit);
    let flags = u64::from(flags);
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The guest's GDT: null, kernel code, kernel data, user data, user code, TSS (16 bytes).
pub fn table(tss_base: u64) -> [u64; 7] {
    let tss_low = descriptor(
        TSS64_AVAILABLE,
        tss_base as u32,
        (TSS_WITH_IOMAP - 1) as u32,
    );
    [
        0,
        descriptor(KERNEL_CODE64, 0, 0xfffff),
        descriptor(KERNEL_DATA, 0, 0xfffff),
        descriptor(USER_DATA, 0, 0xfffff),
        descriptor(USER_CODE64, 0, 0xfffff),
        tss_low,
        tss_base >> 32,
    ]
}

/// The guest's TSS: RSP0 (the stack for exceptions taken from CPL3) and an I/O
/// permission bitmap that allows every port.
///
/// Why a bitmap when the workload runs with IOPL=3: KVM's PVM backend (CI hosts) runs
/// guest CPL3 code natively with the host's IOPL of 0, so IOPL=3 in the guest's RFLAGS
/// has no effect there, but PVM does honour the guest TSS bitmap (measured: with IOPL=3
/// alone `in`/`out` at CPL3 raise #GP; with this bitmap they exit to the VMM). On
/// hardware KVM IOPL=3 already suffices; the bitmap is harmless.
pub fn tss(rsp0: u64) -> Vec<u8> {
    let mut t = vec![0u8; TSS_WITH_IOMAP as usize];
    t[4..12].copy_from_slice(&rsp0.to_le_bytes());
    t[102..104].copy_from_slice(&(TSS_SIZE as u16).to_le_bytes());
    t[TSS_WITH_IOMAP as usize - 1] = 0xff;
    t
}

/// Serialises descriptors for guest memory.
pub fn to_bytes(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_descriptors_match_the_architectural_encodings() {
        // Values as Linux and Firecracker write them for flat 4 GiB segments.
        assert_eq!(descriptor(KERNEL_CODE64, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(descriptor(KERNEL_DATA, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(descriptor(USER_CODE64, 0, 0xfffff), 0x00af_fb00_0000_ffff);
        assert_eq!(descriptor(USER_DATA, 0, 0xfffff), 0x00cf_f300_0000_ffff);
    }

    #[test]
    fn tss_descriptor_spans_two_slots_with_the_full_base() {
        let t = table(0x1_2345_6000);
        assert_eq!(t[5] & 0xffff, TSS_WITH_IOMAP - 1); // limit
        assert_eq!((t[5] >> 16) & 0xff_ffff, 0x45_6000); // base 23..0
        assert_eq!((t[5] >> 56) & 0xff, 0x23); // base 31..24
        assert_eq!((t[5] >> 40) & 0xff, 0x89); // present, type 9
        assert_eq!(t[6], 0x1); // base 63..32
    }

    #[test]
    fn user_selectors_index_the_user_descriptors_with_rpl3() {
        let t = table(0);
        assert_eq!(USER_CS & 3, 3);
        assert_eq!(
            t[usize::from(USER_CS >> 3)],
            descriptor(USER_CODE64, 0, 0xfffff)
        );
        assert_eq!(
            t[usize::from(USER_DS >> 3)],
            descriptor(USER_DATA, 0, 0xfffff)
        );
    }

    #[test]
    fn tss_has_rsp0_and_an_all_allowing_io_bitmap() {
        let t = tss(0xdead_b000);
        assert_eq!(t.len() as u64, TSS_WITH_IOMAP);
        assert_eq!(
            u64::from_le_bytes(t[4..12].try_into().unwrap()),
            0xdead_b000
        );
        let map = usize::from(u16::from_le_bytes([t[102], t[103]]));
        assert_eq!(map, 104);
        assert!(
            t[map..map + 8192].iter().all(|&b| b == 0),
            "every port allowed"
        );
        assert_eq!(t[map + 8192], 0xff, "terminator byte");
        assert_eq!(table(0)[5] & 0xffff, (TSS_WITH_IOMAP - 1) & 0xffff);
    }
}
