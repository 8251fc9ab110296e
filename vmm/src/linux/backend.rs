//! What a per-architecture boot backend hands the arch-neutral run: a VM with its
//! kernel loaded, firmware tables written and vCPUs configured, and the console and
//! platform devices the run loop watches.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use granule_devices::pvpanic::PvPanic;
use granule_devices::PlatformEvent;
use vmm_sys_util::eventfd::EventFd;

use super::console::{ConsoleSerial, PanicSlot};
use super::files::KernelFormat;
use super::{BootError, LinuxConfig};
use crate::console::OutputQueue;
use crate::kvm::KvmHandle;
use crate::vm::Vm;

/// A Linux guest ready to start.
pub struct Prepared {
    /// The VM with its vCPUs created and configured.
    pub vm: Vm,
    pub serial: Arc<ConsoleSerial>,
    /// Signalled when the guest drained the UART's input FIFO.
    pub drained: EventFd,
    pub events: Receiver<PlatformEvent>,
    /// Signalled by platform events, vCPU exits and a panic line.
    pub wake: Arc<EventFd>,
    pub panic: PanicSlot,
    pub pvpanic: Arc<PvPanic>,
    pub format: KernelFormat,
    /// Where the kernel's code lies in guest memory (for the stage-2 model).
    pub executed: Vec<(u64, u64)>,
    pub guest_page_size: u64,
    /// The passed-through devices and their DMA address spaces, kept for the run.
    pub passthrough: crate::vfio::attach::Attached,
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
