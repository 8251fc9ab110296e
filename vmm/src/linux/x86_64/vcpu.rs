//! Per-vCPU state for a Linux guest: CPUID with its topology, the MSRs the kernel
//! expects from firmware, an FPU in its reset state, LAPIC LINT0/LINT1 wired as a PC
//! BIOS leaves them, and (boot CPU only) the 64-bit entry state. The other vCPUs stay
//! in KVM's wait-for-SIPI state until the kernel starts them.

use granule_arch::x86_64::boot::regs::{boot_regs, boot_sregs};
use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, CpuId, Msrs};
use kvm_ioctls::VcpuFd;

use super::{cpuid, BootError};
use crate::linux::vcpu_step;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// MISC_ENABLE bit 0: fast string operations (set by every PC firmware).
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default type write-back: all RAM cacheable without variable ranges.
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

/// LAPIC register offsets and delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

/// The MSRs and values set on every vCPU.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
}

fn lapic_reg(l: &kvm_lapic_state, at: usize) -> u32 {
    u32::from_le_bytes([0, 1, 2, 3].map(|i| l.regs[at + i] as u8))
}

fn set_lapic_reg(l: &mut kvm_lapic_state, at: usize, v: u32) {
    for (i, b) in v.to_le_bytes().into_iter().enumerate() {
        l.regs[at + i] = b as _;
    }
}

/// Sets the delivery mode (bits 8..10) of a local vector table entry.
fn with_delivery_mode(lvt: u32, mode: u32) -> u32 {
    (lvt & !0x700) | (mode << 8)
}

/// Configures vCPU `index` of `count`; `entry` is the kernel's 64-bit entry.
pub fn configure(
    fd: &VcpuFd,
    supported: &CpuId,
    supported_msrs: &[u32],
    index: usize,
    count: usize,
    entry: u64,
) -> Result<(), BootError> {
    let c = cpuid::for_vcpu(supported, index as u32, count as u32);
    vcpu_step(index, "KVM_SET_CPUID2", fd.set_cpuid2(&c))?;

    let wanted: Vec<kvm_msr_entry> = boot_msrs()
        .into_iter()
        .filter(|(i, _)| supported_msrs.contains(i))
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&wanted).map_err(|_| BootError::MsrCount(wanted.len()))?;
    let set = vcpu_step(index, "KVM_SET_MSRS", fd.set_msrs(&msrs))?;
    if set != wanted.len() {
        let failed = wanted.get(set).map(|m| m.index).unwrap_or_default();
        return Err(BootError::MsrRefused { index, msr: failed });
    }

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu_step(index, "KVM_SET_FPU", fd.set_fpu(&fpu))?;

    let mut lapic = vcpu_step(index, "KVM_GET_LAPIC", fd.get_lapic())?;
    let lint0 = with_delivery_mode(lapic_reg(&lapic, APIC_LVT0), APIC_MODE_EXTINT);
    let lint1 = with_delivery_mode(lapic_reg(&lapic, APIC_LVT1), APIC_MODE_NMI);
    set_lapic_reg(&mut lapic, APIC_LVT0, lint0);
    set_lapic_reg(&mut lapic, APIC_LVT1, lint1);
    vcpu_step(index, "KVM_SET_LAPIC", fd.set_lapic(&lapic))?;

    if index == 0 {
        let sregs = boot_sregs(vcpu_step(index, "KVM_GET_SREGS", fd.get_sregs())?);
        vcpu_step(index, "KVM_SET_SREGS", fd.set_sregs(&sregs))?;
        vcpu_step(index, "KVM_SET_REGS", fd.set_regs(&boot_regs(entry)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_delivery_modes_keep_the_other_bits() {
        let mut l = kvm_lapic_state::default();
        set_lapic_reg(&mut l, APIC_LVT0, 0x0001_0000); // masked
        let v = with_delivery_mode(lapic_reg(&l, APIC_LVT0), APIC_MODE_EXTINT);
        assert_eq!(v, 0x0001_0700);
        set_lapic_reg(&mut l, APIC_LVT0, v);
        assert_eq!(lapic_reg(&l, APIC_LVT0), 0x0001_0700);
        assert_eq!(with_delivery_mode(0x700, APIC_MODE_NMI), 0x400);
    }

    #[test]
    fn boot_msrs_enable_fast_strings_and_write_back_mtrrs() {
        let m = boot_msrs();
        assert!(m.contains(&(MSR_IA32_MISC_ENABLE, 1)));
        assert!(m.contains(&(MSR_MTRR_DEF_TYPE, 0x806)));
    }
}
