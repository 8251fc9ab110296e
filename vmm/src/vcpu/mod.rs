//! One thread per vCPU: its run loop, exit dispatch to the I/O buses, and the events it
//! sends to the VMM.

mod control;
mod kick;
mod outcome;
#[cfg(target_arch = "aarch64")]
pub mod regs_aarch64;
#[cfg(target_arch = "x86_64")]
mod regs_x86_64;
mod run_loop;
#[cfg(target_arch = "x86_64")]
pub mod setup_x86_64;

pub use control::{Desired, VcpuControl};
pub use kick::{
    bind_current_thread as bind_kicks, install_handler as install_kick_handler, kick_signal,
};
pub use outcome::{RegsSnapshot, VcpuOutcome};
pub use run_loop::{VcpuEvent, VcpuRunner};

#[cfg(target_arch = "aarch64")]
pub use regs_aarch64::report_arg;
/// The argument register of a built-in program's report (x86 `rbx`, arm64 `x1`).
#[cfg(target_arch = "x86_64")]
pub use regs_x86_64::report_arg;
