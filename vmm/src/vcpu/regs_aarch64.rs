//! The aarch64 registers a user needs to understand a guest crash, read through
//! KVM_GET_ONE_REG (arm64 has no KVM_GET_REGS).

use kvm_ioctls::VcpuFd;
use serde::Serialize;
use std::fmt;

/// KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE: core registers are addressed by
/// their offset in struct kvm_regs, in 32-bit words.
const CORE: u64 = 0x6030_0000_0010_0000;

/// ONE_REG id of x`n` (user_pt_regs.regs[n] at byte offset 8n).
pub const fn xreg(n: u64) -> u64 {
    CORE | (n * 8 / 4)
}
pub const SP: u64 = CORE | (248 / 4);
pub const PC: u64 = CORE | (256 / 4);
pub const PSTATE: u64 = CORE | (264 / 4);

fn get(vcpu: &VcpuFd, id: u64) -> u64 {
    let mut b = [0u8; 8];
    vcpu.get_one_reg(id, &mut b)
        .map_or(0, |_| u64::from_le_bytes(b))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RegsSnapshot {
    pub pc: u64,
    pub sp: u64,
    pub pstate: u64,
    pub x: [u64; 4],
}

impl RegsSnapshot {
    /// Best effort: unreadable registers read as zero.
    pub fn read(vcpu: &VcpuFd) -> Self {
        Self {
            pc: get(vcpu, PC),
            sp: get(vcpu, SP),
            pstate: get(vcpu, PSTATE),
            x: [0, 1, 2, 3].map(|n| get(vcpu, xreg(n))),
        }
    }
}

/// The argument of a built-in program's report: `x1`.
pub fn report_arg(vcpu: &VcpuFd) -> u64 {
    get(vcpu, xreg(1))
}

impl fmt::Display for RegsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pc={:#x} sp={:#x} pstate={:#x} x0={:#x} x1={:#x} x2={:#x} x3={:#x}",
            self.pc, self.sp, self.pstate, self.x[0], self.x[1], self.x[2], self.x[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_register_ids_match_the_kernel_abi() {
        // From arch/arm64/include/uapi/asm/kvm.h: KVM_REG_ARM_CORE_REG(regs.pc).
        assert_eq!(PC, 0x6030_0000_0010_0040);
        assert_eq!(SP, 0x6030_0000_0010_003e);
        assert_eq!(xreg(1), 0x6030_0000_0010_0002);
    }
}
