//! An arm64 Linux guest's vCPUs: KVM's in-kernel PSCI, the boot vCPU at the kernel's
//! entry with the device tree's address in x0, the others powered off until the kernel
//! starts them with PSCI CPU_ON.

use granule_arch::aarch64::regs::sys_reg;
use kvm_ioctls::{VcpuFd, VmFd};

use crate::linux::{vcpu_step, BootError};
use crate::vcpu::setup_aarch64;

/// MPIDR_EL1, which KVM derives from the vCPU id at reset.
const MPIDR_EL1: u64 = sys_reg(3, 0, 0, 0, 5);
/// The affinity fields Aff3..Aff0 of MPIDR_EL1.
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// KVM_ARM_VCPU_INIT for vCPU `index`; every vCPU but the first starts powered off.
pub fn init(vm: &VmFd, vcpu: &VcpuFd, index: usize) -> Result<(), BootError> {
    vcpu_step(
        index,
        "KVM_ARM_VCPU_INIT",
        setup_aarch64::init(vcpu, vm, index > 0),
    )
}

/// The vCPU's MPIDR affinity, which the device tree's cpu node must give as `reg`.
pub fn mpidr(vcpu: &VcpuFd, index: usize) -> Result<u64, BootError> {
    let mut b = [0u8; 8];
    vcpu_step(
        index,
        "reading MPIDR_EL1",
        vcpu.get_one_reg(MPIDR_EL1, &mut b),
    )?;
    Ok(u64::from_le_bytes(b) & MPIDR_AFFINITY)
}

/// The boot protocol's entry state: EL1h with interrupts masked, MMU off (KVM's reset
/// state), pc at the kernel, x0 the device tree, x1-x3 zero.
pub fn set_boot_regs(vcpu: &VcpuFd, entry: u64, fdt: u64) -> Result<(), BootError> {
    vcpu_step(
        0,
        "KVM_SET_ONE_REG",
        setup_aarch64::enter(vcpu, entry, [fdt, 0, 0, 0]),
    )
}
