//! What a per-architecture boot backend hands the arch-neutral run: a VM with its
//! kernel loaded, firmware tables written and vCPUs configured, and the console and
//! platform devices the run loop watches.

use super::files::KernelFormat;
use super::platform::Platform;
use super::{BootError, LinuxConfig};
use crate::console::OutputQueue;
use crate::kvm::KvmHandle;
use crate::vm::Vm;

/// A Linux guest ready to start.
pub struct Prepared {
    /// The VM with its vCPUs created and configured.
    pub vm: Vm,
    /// The console, boot timer, pvpanic and the events that wake the run loop.
    pub platform: Platform,
    pub format: KernelFormat,
    /// Where the kernel's code lies in guest memory (for the stage-2 model).
    pub executed: Vec<(u64, u64)>,
    pub guest_page_size: u64,
    /// The passed-through devices and their DMA address spaces, kept for the run.
    pub passthrough: crate::vfio::attach::Attached,
    /// When set-up's phases ended, for the boot's time breakdown.
    pub marks: SetupMarks,
    /// For a bzImage: where its kernel was decompressed.
    pub decompression: Option<crate::kernel_payload::choice::Decompression>,
    /// The kernel's cache entry being written meanwhile: its outcome completes
    /// `decompression` when the guest has stopped.
    pub cache_store: Option<crate::kernel_payload::background_store::PendingStore>,
}

/// When each phase of a backend's set-up ended.
#[derive(Debug, Clone, Copy)]
pub struct SetupMarks {
    /// Files checked and guest RAM mapped (and prefaulted, if asked).
    pub memory_mapped: std::time::Instant,
    /// Kernel, initramfs and boot data written to guest memory.
    pub kernel_loaded: std::time::Instant,
}

/// Builds a Linux guest's VM for one architecture, up to vCPUs ready to run. Each
/// backend owns its order rules (x86: irqchip before vCPUs; arm64: the GIC after all
/// vCPUs and before the first KVM_RUN).
pub trait BootBackend {
    /// Checks the files, maps RAM, creates the VM and its devices, loads the kernel and
    /// configures every vCPU. Console output goes to `out`.
    fn prepare(kvm: &KvmHandle, cfg: &LinuxConfig, out: OutputQueue)
        -> Result<Prepared, BootError>;
}
