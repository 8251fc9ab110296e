//! The arm64 boot backend: an Image (or Image.gz) at the start of RAM, a device tree
//! written with vm-fdt, KVM's GICv3 with an ITS created after the vCPUs, KVM's
//! in-kernel PSCI for CPU_ON, poweroff and reset, and a 16550 console on MMIO.

mod kernel;
mod setup;
mod vcpu;

use super::backend::{BootBackend, Prepared};
use super::{BootError, LinuxConfig};
use crate::console::OutputQueue;
use crate::kvm::KvmHandle;

pub struct Arm64Boot;

impl BootBackend for Arm64Boot {
    fn prepare(
        kvm: &KvmHandle,
        cfg: &LinuxConfig,
        out: OutputQueue,
    ) -> Result<Prepared, BootError> {
        setup::prepare(kvm, cfg, out)
    }
}
