//! What differs between x86_64 and aarch64 in the stress run: the report's value,
//! how a faulting store is skipped, the MMU reset, and vCPU set-up.

use std::io;

use granule_arch::{GuestImage, Program, RamRange};
use kvm_ioctls::{VcpuFd, VmFd};

use super::config;
use super::run::StressError;
use crate::kvm::KvmHandle;

fn os(e: kvm_ioctls::Error) -> io::Error {
    io::Error::from_raw_os_error(e.errno())
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::*;
    use crate::vcpu::setup_x86_64;
    use granule_arch::x86_64::paging::{self, PAGE_1G, PAGE_2M};
    use granule_arch::x86_64::programs;
    use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};

    pub struct Setup {
        supported: CpuId,
        /// The guest's stage-1 page size: the one asked for, else the largest offered.
        pub guest_page: u64,
        pub phys_bits: u32,
        /// The VM's IPA size (arm64 only).
        pub vm_ipa_bits: Option<u32>,
        pub sync_regs: bool,
    }

    /// What the vCPUs need, the guest page size `requested` (None: the default)
    /// checked against what the guest CPU offers.
    pub fn setup(kvm: &KvmHandle, requested: Option<u64>) -> Result<Setup, StressError> {
        let supported = kvm
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| StressError::Setup(format!("vCPU set-up: {}", os(e))))?;
        let phys_bits = supported
            .as_slice()
            .iter()
            .find(|e| e.function == 0x8000_0008)
            .map_or(36, |e| e.eax & 0xff);
        let largest = setup_x86_64::guest_page_size(&supported);
        let offered: Vec<u64> = [PAGE_2M, PAGE_1G]
            .into_iter()
            .filter(|&p| p <= largest)
            .collect();
        Ok(Setup {
            guest_page: config::guest_page(requested, &offered)?,
            phys_bits,
            vm_ipa_bits: None,
            sync_regs: kvm.kvm.check_extension(kvm_ioctls::Cap::SyncRegs),
            supported,
        })
    }

    pub fn build(
        p: &Program,
        ram: &[RamRange],
        vcpus: usize,
        s: &Setup,
    ) -> Result<GuestImage, granule_arch::ImageError> {
        programs::build(p, ram, vcpus, s.guest_page)
    }

    /// Bytes of the identity tables over `[0, top)` with `page` leaves.
    pub fn table_bytes(top: u64, page: u64) -> Result<u64, String> {
        paging::table_bytes(top, page).map_err(|e| e.to_string())
    }

    pub fn configure(
        fd: &VcpuFd,
        _vm: &VmFd,
        s: &Setup,
        image: &GuestImage,
        i: usize,
    ) -> io::Result<()> {
        setup_x86_64::configure(fd, &s.supported, image, i).map_err(os)
    }

    pub fn enable_sync_regs(fd: &mut VcpuFd, s: &Setup) {
        if s.sync_regs {
            fd.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
        }
    }

    pub fn report_value(fd: &mut VcpuFd, s: &Setup) -> u64 {
        if s.sync_regs {
            fd.sync_regs().regs.rbx
        } else {
            crate::vcpu::report_arg(fd)
        }
    }

    /// RIP += 3 past `mov %rax,(%rax)`, through the sync-regs area as upstream does
    /// (no extra ioctls) where KVM has it.
    pub fn skip_store(fd: &mut VcpuFd, s: &Setup) -> io::Result<()> {
        let len = programs::STRESS_STORE_LEN;
        if s.sync_regs {
            fd.sync_regs_mut().regs.rip += len;
            fd.set_sync_dirty_reg(kvm_ioctls::SyncReg::Register);
            return Ok(());
        }
        let mut r = fd.get_regs().map_err(os)?;
        r.rip += len;
        fd.set_regs(&r).map_err(os)
    }

    /// Toggles CR0.WP, which forces an MMU context reset (upstream's "reset" phase).
    pub fn reset_mmu(fd: &VcpuFd) -> io::Result<()> {
        let mut sregs = fd.get_sregs().map_err(os)?;
        sregs.cr0 ^= granule_arch::x86_64::regs::CR0_WP;
        fd.set_sregs(&sregs).map_err(os)
    }

    /// x86 has no FEAT_FWB.
    pub fn guest_fwb(_fd: &VcpuFd) -> Option<bool> {
        None
    }

    /// Nothing to add once the vCPUs exist. Upstream's x86 VMs have an in-kernel
    /// irqchip; granule's does not, and is not slower for it on x86 (README).
    pub fn finish_vm(_vm: &mut crate::vm::Vm) -> Result<(), crate::vm::VmError> {
        Ok(())
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    use super::*;
    use crate::vcpu::regs_aarch64::PC;
    use granule_arch::aarch64::paging::{self, GIB, PAGE, PAGE_2M};
    use granule_arch::aarch64::{programs, regs};

    pub struct Setup {
        /// The guest's stage-1 page size: the one asked for, else 1 GiB blocks.
        pub guest_page: u64,
        pub phys_bits: u32,
        /// The VM's IPA size; None: KVM's default of 40 bits.
        pub vm_ipa_bits: Option<u32>,
    }

    /// What the vCPUs need, the guest page size `requested` (None: the default)
    /// checked against the sizes the tables can use.
    pub fn setup(kvm: &KvmHandle, requested: Option<u64>) -> Result<Setup, StressError> {
        // As upstream's selftest library does: the host's largest IPA size, so KVM's
        // stage-2 tables are as deep as upstream's (KVM's default is 40 bits). 0: the
        // host cannot choose, and has 40.
        let limit = u32::try_from(kvm.kvm.get_host_ipa_limit()).unwrap_or(0);
        let vm_ipa_bits = (limit > 40).then_some(limit);
        Ok(Setup {
            guest_page: config::guest_page(requested, &[PAGE, PAGE_2M, GIB])?,
            // The guest's own tables output 40-bit addresses (TCR_EL1.IPS).
            phys_bits: 40,
            vm_ipa_bits,
        })
    }

    pub fn build(
        p: &Program,
        ram: &[RamRange],
        vcpus: usize,
        s: &Setup,
    ) -> Result<GuestImage, granule_arch::ImageError> {
        programs::build(p, ram, vcpus, s.guest_page)
    }

    /// Bytes of the identity tables over `[0, top)` with `page` leaves.
    pub fn table_bytes(top: u64, page: u64) -> Result<u64, String> {
        paging::table_bytes(top, page).map_err(|e| e.to_string())
    }

    fn set(fd: &VcpuFd, id: u64, v: u64) -> io::Result<()> {
        fd.set_one_reg(id, &v.to_le_bytes()).map(|_| ()).map_err(os)
    }

    fn get(fd: &VcpuFd, id: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        fd.get_one_reg(id, &mut b).map_err(os)?;
        Ok(u64::from_le_bytes(b))
    }

    /// KVM_ARM_VCPU_INIT (PSCI 0.2, powered on), then EL1 with the MMU on over the
    /// image's identity tables, at the entry with the four arguments in x0..x3.
    pub fn configure(
        fd: &VcpuFd,
        vm: &VmFd,
        _s: &Setup,
        image: &GuestImage,
        i: usize,
    ) -> io::Result<()> {
        crate::vcpu::setup_aarch64::configure(fd, vm, image, i).map_err(os)
    }

    pub fn enable_sync_regs(_fd: &mut VcpuFd, _s: &Setup) {}

    pub fn report_value(fd: &mut VcpuFd, _s: &Setup) -> u64 {
        crate::vcpu::report_arg(fd)
    }

    /// PC += 4 past `str x0, [x0]`.
    pub fn skip_store(fd: &mut VcpuFd, _s: &Setup) -> io::Result<()> {
        let pc = get(fd, PC)?;
        set(fd, PC, pc + programs::STRESS_STORE_LEN)
    }

    /// arm64 has no equivalent of x86's CR0.WP toggle (upstream skips it too).
    pub fn reset_mmu(_fd: &VcpuFd) -> io::Result<()> {
        Ok(())
    }

    /// Where the stress VM's GICv3 sits: in the MMIO hole, above the report page and the
    /// console, the redistributors (128 KiB per vCPU) after the distributor.
    const GIC_DIST: u64 = 0xc100_0000;
    const GIC_REDIST: u64 = 0xc200_0000;
    /// Upstream's `__vgic_v3_setup(vm, nr_vcpus, 64)`: 64 interrupts, 32 of them SPIs.
    const GIC_SPIS: u32 = 32;

    /// A GICv3 without an ITS, as every upstream arm64 selftest VM has (the selftest
    /// library creates one by default), so KVM runs the VM configuration upstream
    /// measures: without an in-kernel irqchip KVM takes its userspace-irqchip paths
    /// (timer and PMU state synced for userspace) around every run of the vCPU.
    pub fn finish_vm(vm: &mut crate::vm::Vm) -> Result<(), crate::vm::VmError> {
        vm.create_gic_v3(GIC_DIST, GIC_REDIST, GIC_SPIS, None)
    }

    /// FEAT_FWB as this vCPU sees ID_AA64MMFR2_EL1.
    pub fn guest_fwb(fd: &VcpuFd) -> Option<bool> {
        get(fd, regs::ID_AA64MMFR2_EL1).ok().map(regs::has_fwb)
    }
}

pub use imp::*;
