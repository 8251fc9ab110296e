//! The arm64 boot backend: not written yet (Image + FDT, GICv3/ITS, PSCI). It exists
//! so the arch-neutral boot path is compiled and checked for aarch64 too.

use super::backend::{BootBackend, Prepared};
use super::{BootError, LinuxConfig};
use crate::console::OutputQueue;
use crate::kvm::KvmHandle;

pub struct Arm64Boot;

impl BootBackend for Arm64Boot {
    fn prepare(
        _kvm: &KvmHandle,
        _cfg: &LinuxConfig,
        _out: OutputQueue,
    ) -> Result<Prepared, BootError> {
        Err(BootError::Unsupported("aarch64"))
    }
}
