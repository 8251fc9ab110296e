//! `granule probe`: the host facts a user needs before running anything.

mod backend;
mod host;
mod render;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::kvm::{KvmError, KvmHandle};
pub use backend::{Backend, BackendKind};
pub use host::{huge_pfnmap_leaf, kernel_release, nx_huge_pages, thp, HugepagePool, Thp, Vfio};
pub use render::render_table;

/// Capabilities reported by the probe: what granule uses now or in planned features.
const CAPS: &[(&str, u32)] = &[
    ("USER_MEMORY", kvm_bindings::KVM_CAP_USER_MEMORY),
    ("USER_MEMORY2", kvm_bindings::KVM_CAP_USER_MEMORY2),
    ("IMMEDIATE_EXIT", kvm_bindings::KVM_CAP_IMMEDIATE_EXIT),
    ("SET_TSS_ADDR", kvm_bindings::KVM_CAP_SET_TSS_ADDR),
    ("EXT_CPUID", kvm_bindings::KVM_CAP_EXT_CPUID),
    ("IRQCHIP", kvm_bindings::KVM_CAP_IRQCHIP),
    ("IRQFD", kvm_bindings::KVM_CAP_IRQFD),
    ("IOEVENTFD", kvm_bindings::KVM_CAP_IOEVENTFD),
    ("READONLY_MEM", kvm_bindings::KVM_CAP_READONLY_MEM),
    ("SYNC_MMU", kvm_bindings::KVM_CAP_SYNC_MMU),
    ("SYNC_REGS", kvm_bindings::KVM_CAP_SYNC_REGS),
    ("MEMORY_FAULT_INFO", kvm_bindings::KVM_CAP_MEMORY_FAULT_INFO),
    ("GUEST_MEMFD", kvm_bindings::KVM_CAP_GUEST_MEMFD),
    ("DIRTY_LOG_RING", kvm_bindings::KVM_CAP_DIRTY_LOG_RING),
    ("BINARY_STATS_FD", kvm_bindings::KVM_CAP_BINARY_STATS_FD),
    ("PRE_FAULT_MEMORY", kvm_bindings::KVM_CAP_PRE_FAULT_MEMORY),
    (
        "VM_DISABLE_NX_HUGE_PAGES",
        kvm_bindings::KVM_CAP_VM_DISABLE_NX_HUGE_PAGES,
    ),
];

/// What /dev/kvm offers.
#[derive(Debug, Clone, Serialize)]
pub struct KvmFacts {
    pub api_version: i32,
    pub backend: Backend,
    pub capabilities: BTreeMap<&'static str, bool>,
    pub nr_vcpus: usize,
    pub max_vcpus: usize,
    pub nr_memslots: usize,
}

/// Everything `granule probe` reports.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub arch: &'static str,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    /// Present when /dev/kvm could be opened.
    pub kvm: Option<KvmFacts>,
    /// Why KVM is unusable, when it is.
    pub kvm_error: Option<String>,
    pub hugepages: Vec<HugepagePool>,
    pub thp: Thp,
    pub vfio: Vfio,
    /// The largest stage-2-relevant leaf this kernel maps device memory (a vfio-pci BAR
    /// mmap) with; what `granule plan` assumes for `--bar` unless told otherwise.
    pub pfnmap_max_leaf: u64,
    /// KVM's NX-huge-page mitigation is on: executable guest pages get 4K leaves.
    pub nx_huge_pages: bool,
}

fn kvm_facts(h: &KvmHandle) -> KvmFacts {
    let kvm = &h.kvm;
    KvmFacts {
        api_version: kvm.get_api_version(),
        backend: backend::detect(),
        capabilities: CAPS
            .iter()
            .map(|&(name, cap)| (name, kvm.check_extension_raw(u64::from(cap)) > 0))
            .collect(),
        nr_vcpus: h.recommended_vcpus(),
        max_vcpus: h.max_vcpus(),
        nr_memslots: h.max_memslots(),
    }
}

/// Gathers the host facts. Never fails: whatever cannot be read is reported as such.
pub fn probe() -> HostFacts {
    let (kvm, kvm_error) = match KvmHandle::open() {
        Ok(h) => (Some(kvm_facts(&h)), None),
        Err(e @ (KvmError::Missing | KvmError::Permission | KvmError::Open(_))) => {
            (None, Some(e.to_string()))
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let pfnmap_max_leaf = host::huge_pfnmap_leaf(&host::kernel_release(), std::env::consts::ARCH);
    HostFacts {
        arch: std::env::consts::ARCH,
        kernel: host::kernel_release(),
        cpu_model: host::cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: host::mem_total(),
        kvm,
        kvm_error,
        hugepages: host::hugepage_pools(),
        thp: host::thp(),
        vfio: host::vfio(pfnmap_max_leaf),
        pfnmap_max_leaf,
        nx_huge_pages: host::nx_huge_pages(),
    }
}

/// Host RAM in bytes (0 if unknown).
pub fn host_memory() -> u64 {
    host::mem_total()
}

/// arm64 FEAT_FWB (stage-2 forced write-back) of this host, from the CPU-feature line
/// the kernel logs at boot ("detected: Stage-2 Force Write-Back"); None on other
/// architectures or when the log cannot be read.
pub fn arm64_fwb() -> Option<bool> {
    if !cfg!(target_arch = "aarch64") {
        return None;
    }
    backend::kmsg_contains("Stage-2 Force Write-Back")
}

/// Whether this host's CPU maps 1 GiB pages (x86 `pdpe1gb`): the largest leaf a
/// hardware TDP stage 2 can use here.
pub fn host_has_1g_pages() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .is_ok_and(|c| c.split_whitespace().any(|w| w == "pdpe1gb"))
}
