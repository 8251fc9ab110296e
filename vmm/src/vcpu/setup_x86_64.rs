//! Applies an x86_64 [`GuestImage`] entry to a vCPU: CPUID first (KVM checks EFER
//! against it), then the long-mode special registers, then the general registers.

use granule_arch::x86_64::layout::IMAGE_BASE;
use granule_arch::x86_64::paging::{PAGE_1G, PAGE_2M};
use granule_arch::x86_64::programs::{GDT_LIMIT, TSS_BASE};
use granule_arch::x86_64::regs::{entry_regs, long_mode_sregs, Tables};
use granule_arch::GuestImage;
use kvm_bindings::CpuId;
use kvm_ioctls::VcpuFd;

/// CPUID leaf 0x8000_0001 EDX bit 26: 1 GiB pages.
const PDPE1GB: u32 = 1 << 26;

/// The largest page the guest's CPUID lets its page tables use.
pub fn guest_page_size(cpuid: &CpuId) -> u64 {
    let has_1g = cpuid
        .as_slice()
        .iter()
        .any(|e| e.function == 0x8000_0001 && e.edx & PDPE1GB != 0);
    if has_1g {
        PAGE_1G
    } else {
        PAGE_2M
    }
}

/// Gives vCPU `index` its own APIC ID in the CPUID leaves that report it.
pub fn cpuid_for_vcpu(supported: &CpuId, index: usize) -> CpuId {
    let mut cpuid = supported.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x1 => e.ebx = (e.ebx & 0x00ff_ffff) | ((index as u32 & 0xff) << 24),
            0xb | 0x1f => e.edx = index as u32,
            _ => {}
        }
    }
    cpuid
}

/// Puts vCPU `index` at the entry of `image`.
pub fn configure(
    vcpu: &VcpuFd,
    supported: &CpuId,
    image: &GuestImage,
    index: usize,
) -> Result<(), kvm_ioctls::Error> {
    vcpu.set_cpuid2(&cpuid_for_vcpu(supported, index))?;
    let tables = Tables {
        gdt_base: IMAGE_BASE,
        gdt_limit: GDT_LIMIT,
        tss_base: TSS_BASE,
        page_table_root: image.page_table_root,
    };
    let sregs = long_mode_sregs(vcpu.get_sregs()?, &tables);
    vcpu.set_sregs(&sregs)?;
    vcpu.set_regs(&entry_regs(&image.vcpus[index]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{kvm_cpuid_entry2, KVM_MAX_CPUID_ENTRIES};

    fn cpuid(entries: &[kvm_cpuid_entry2]) -> CpuId {
        let mut c = CpuId::new(entries.len()).unwrap();
        c.as_mut_slice().copy_from_slice(entries);
        let _ = KVM_MAX_CPUID_ENTRIES;
        c
    }

    #[test]
    fn page_size_follows_pdpe1gb() {
        let mut e = kvm_cpuid_entry2 {
            function: 0x8000_0001,
            ..Default::default()
        };
        assert_eq!(guest_page_size(&cpuid(&[e])), PAGE_2M);
        e.edx = PDPE1GB;
        assert_eq!(guest_page_size(&cpuid(&[e])), PAGE_1G);
    }

    #[test]
    fn apic_ids_are_per_vcpu() {
        let leaf1 = kvm_cpuid_entry2 {
            function: 1,
            ebx: 0xaa00_1234,
            ..Default::default()
        };
        let c = cpuid_for_vcpu(&cpuid(&[leaf1]), 3);
        assert_eq!(c.as_slice()[0].ebx, 0x0300_1234);
    }
}
