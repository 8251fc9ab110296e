//! CPUID for a Linux guest: KVM's supported leaves with each vCPU's APIC ID and a
//! topology that matches the vCPU count (one package, one thread per core, N cores), so
//! the guest's view agrees with the MADT instead of inheriting the host's topology.

use kvm_bindings::CpuId;

use crate::vcpu::setup_x86_64::cpuid_for_vcpu;

/// CPUID.1:EDX bit 28, "more than one logical processor per package".
const HTT: u32 = 1 << 28;
/// CPUID.1:ECX bit 31, "running under a hypervisor".
const HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:ECX bit 24, the LAPIC's TSC-deadline mode, is deliberately left clear (as
/// QEMU's default CPU models do). Measured in the x86 bed (nested SVM under TCG): with
/// it, a 1-vCPU guest livelocked in boot, its timer interrupt taken inside the timer
/// handler with IF=0 (an NMI backtrace showed the nesting); with the kernel told
/// `lapic=notscdeadline`, or the bit clear, the same guest booted every time.
const TSC_DEADLINE: u32 = 1 << 24;
/// CPUID.6:EAX bit 2, "always running APIC timer". KVM's LAPIC timer never stops in
/// idle states, so this is true; with it (and TSC deadline) the kernel needs no PIT
/// broadcast and takes its ticks from the LAPIC.
const ARAT: u32 = 1 << 2;
/// Leaf 0xB/0x1F level types.
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Bits of the APIC ID that number the cores of a package with `n` cores.
fn core_shift(n: u32) -> u32 {
    n.next_power_of_two().trailing_zeros()
}

/// The CPUID for vCPU `index` of `count`: the APIC IDs every granule guest gets
/// (`cpuid_for_vcpu`), plus the topology and feature bits a Linux guest reads.
pub fn for_vcpu(supported: &CpuId, index: u32, count: u32) -> CpuId {
    let mut cpuid = cpuid_for_vcpu(supported, index as usize);
    let shift = core_shift(count);
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x1 => {
                e.ebx = (e.ebx & 0xff00_ffff) | ((count & 0xff) << 16);
                e.ecx = (e.ecx | HYPERVISOR) & !TSC_DEADLINE;
                if count > 1 {
                    e.edx |= HTT;
                } else {
                    e.edx &= !HTT;
                }
            }
            0x6 => e.eax |= ARAT,
            0x4 => {
                // Cores per package - 1 in EAX[31:26]; caches shared by one thread.
                e.eax = (e.eax & 0x03ff_ffff) | ((count.saturating_sub(1) & 0x3f) << 26);
                e.eax &= !(0xfff << 14);
            }
            0xb | 0x1f => {
                let (eax, ebx, level) = match e.index {
                    0 => (0, 1, LEVEL_SMT),
                    1 => (shift, count, LEVEL_CORE),
                    _ => (0, 0, 0),
                };
                e.eax = eax;
                e.ebx = ebx;
                e.ecx = (level << 8) | (e.index & 0xff);
            }
            0x8000_0008 => {
                // AMD: cores per package - 1 and the APIC ID bits that number them.
                e.ecx = (e.ecx & !0xf0ff) | (shift << 12) | (count.saturating_sub(1) & 0xff);
            }
            _ => {}
        }
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use kvm_bindings::kvm_cpuid_entry2;

    use super::*;

    fn cpuid(entries: &[kvm_cpuid_entry2]) -> CpuId {
        let mut c = CpuId::new(entries.len()).unwrap();
        c.as_mut_slice().copy_from_slice(entries);
        c
    }

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx: 0xdead_beef,
            ..Default::default()
        }
    }

    #[test]
    fn apic_id_and_core_count_follow_the_vcpu() {
        let c = for_vcpu(
            &cpuid(&[leaf(1, 0), leaf(0xb, 0), leaf(0xb, 1), leaf(6, 0)]),
            2,
            3,
        );
        let e = c.as_slice();
        assert_eq!(e[0].ebx >> 24, 2);
        assert_eq!((e[0].ebx >> 16) & 0xff, 3);
        assert_eq!(e[0].ebx & 0xffff, 0xbeef);
        assert_ne!(e[0].edx & HTT, 0);
        assert_ne!(e[0].ecx & HYPERVISOR, 0);
        assert_eq!(e[0].ecx & TSC_DEADLINE, 0);
        assert_eq!((e[1].ebx, e[1].edx, e[1].ecx >> 8), (1, 2, LEVEL_SMT));
        assert_eq!((e[2].eax, e[2].ebx, e[2].ecx >> 8), (2, 3, LEVEL_CORE));
        assert_ne!(e[3].eax & ARAT, 0);
    }

    #[test]
    fn one_vcpu_has_no_htt_and_a_zero_shift() {
        let c = for_vcpu(&cpuid(&[leaf(1, 0), leaf(0xb, 1)]), 0, 1);
        assert_eq!(c.as_slice()[0].edx & HTT, 0);
        assert_eq!(c.as_slice()[0].ecx & TSC_DEADLINE, 0);
        assert_eq!(c.as_slice()[1].eax, 0);
        assert_eq!(core_shift(1), 0);
        assert_eq!(core_shift(2), 1);
        assert_eq!(core_shift(5), 3);
    }
}
