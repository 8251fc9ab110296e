//! The x86_64 boot backend: bzImage (by default as the vmlinux inside it) or ELF
//! vmlinux through linux-loader, the zero page,
//! E820 and ACPI, KVM's in-kernel irqchip and PIT, per-vCPU CPUID/MSRs/LAPIC.

mod cpuid;
pub mod kernel;
mod setup;
mod unpack;
mod vcpu;
mod zero_page;

use super::backend::{BootBackend, Prepared};
use super::{BootError, LinuxConfig};
use crate::console::OutputQueue;
use crate::kvm::KvmHandle;

pub struct X86Boot;

impl BootBackend for X86Boot {
    fn prepare(
        kvm: &KvmHandle,
        cfg: &LinuxConfig,
        out: OutputQueue,
    ) -> Result<Prepared, BootError> {
        setup::prepare(kvm, cfg, out)
    }
}
