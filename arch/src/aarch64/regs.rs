//! EL1 system-register values for the identity-mapped guest, and ONE_REG ids.

/// MAIR_EL1: attr0 = Normal write-back (0xff), attr1 = Device-nGnRnE (0x00).
pub const MAIR: u64 = 0x00ff;
/// TCR_EL1: T0SZ = 16 (48-bit VA), inner/outer write-back walks, inner shareable,
/// 4 KiB granule, TTBR1 walks disabled (EPD1), IPS = 40 bits.
pub const TCR: u64 = 16 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32);
/// SCTLR_EL1: MMU, data and instruction caches on, plus the ARMv8.0 RES1 bits.
pub const SCTLR: u64 = 0x30d0_0800 | 1 | (1 << 2) | (1 << 12);
/// PSTATE: EL1h with D, A, I, F masked.
pub const PSTATE_EL1H: u64 = 0x3c5;

/// ONE_REG id of a system register (ARM64_SYS_REG).
pub const fn sys_reg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    0x6030_0000_0013_0000 | (op0 << 14) | (op1 << 11) | (crn << 7) | (crm << 3) | op2
}

pub const SCTLR_EL1: u64 = sys_reg(3, 0, 1, 0, 0);
pub const TTBR0_EL1: u64 = sys_reg(3, 0, 2, 0, 0);
pub const TCR_EL1: u64 = sys_reg(3, 0, 2, 0, 2);
pub const MAIR_EL1: u64 = sys_reg(3, 0, 10, 2, 0);
pub const VBAR_EL1: u64 = sys_reg(3, 0, 12, 0, 0);
pub const ID_AA64MMFR2_EL1: u64 = sys_reg(3, 0, 0, 7, 2);

/// FEAT_FWB (stage-2 forced write-back) from an ID_AA64MMFR2_EL1 value: bits 43:40.
pub fn has_fwb(mmfr2: u64) -> bool {
    (mmfr2 >> 40) & 0xf != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_reg_ids_match_the_kernel_abi() {
        // ARM64_SYS_REG(3, 0, 1, 0, 0) for SCTLR_EL1, as KVM's get-reg-list prints it.
        assert_eq!(SCTLR_EL1, 0x6030_0000_0013_c080);
        assert_eq!(TCR_EL1, 0x6030_0000_0013_c102);
        assert_eq!(MAIR_EL1, 0x6030_0000_0013_c510);
        assert_eq!(ID_AA64MMFR2_EL1, 0x6030_0000_0013_c03a);
        assert!(has_fwb(1 << 40) && !has_fwb(0xff_ffff_ffff));
        assert_eq!(TCR & 0x3f, 16);
    }
}
