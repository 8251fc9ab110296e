//! Applies an aarch64 [`GuestImage`] entry to a vCPU: KVM_ARM_VCPU_INIT with KVM's
//! PSCI, then EL1 with the MMU on over the image's identity tables, the image's
//! exception vectors (where it has them), and the entry with its four arguments in
//! x0..x3.

use granule_arch::aarch64::regs;
use granule_arch::GuestImage;
use kvm_ioctls::{VcpuFd, VmFd};

use super::regs_aarch64::{xreg, PC, PSTATE};

fn set(fd: &VcpuFd, id: u64, v: u64) -> Result<(), kvm_ioctls::Error> {
    fd.set_one_reg(id, &v.to_le_bytes()).map(|_| ())
}

/// KVM_ARM_VCPU_INIT: the host's preferred CPU type with KVM's PSCI 0.2+; a vCPU
/// `powered_off` waits for a PSCI CPU_ON.
pub fn init(fd: &VcpuFd, vm: &VmFd, powered_off: bool) -> Result<(), kvm_ioctls::Error> {
    let mut kvi = kvm_bindings::kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)?;
    kvi.features[0] |= 1 << kvm_bindings::KVM_ARM_VCPU_PSCI_0_2;
    if powered_off {
        kvi.features[0] |= 1 << kvm_bindings::KVM_ARM_VCPU_POWER_OFF;
    }
    fd.vcpu_init(&kvi)
}

/// EL1h with interrupts masked, at `pc` with `args` in x0..x3.
pub fn enter(fd: &VcpuFd, pc: u64, args: [u64; 4]) -> Result<(), kvm_ioctls::Error> {
    set(fd, PSTATE, regs::PSTATE_EL1H)?;
    set(fd, PC, pc)?;
    for (n, a) in args.iter().enumerate() {
        set(fd, xreg(n as u64), *a)?;
    }
    Ok(())
}

/// Puts vCPU `index` at the entry of `image`.
pub fn configure(
    fd: &VcpuFd,
    vm: &VmFd,
    image: &GuestImage,
    index: usize,
) -> Result<(), kvm_ioctls::Error> {
    init(fd, vm, false)?;
    set(fd, regs::MAIR_EL1, regs::MAIR)?;
    set(fd, regs::TCR_EL1, regs::TCR)?;
    set(fd, regs::TTBR0_EL1, image.page_table_root)?;
    set(fd, regs::SCTLR_EL1, regs::SCTLR)?;
    if let Some(vectors) = image.vectors {
        set(fd, regs::VBAR_EL1, vectors)?;
    }
    let e = &image.vcpus[index];
    enter(fd, e.entry, e.args)
}
