//! The vCPU engine: one [`Vcpu`] handle that enters the guest and maps its exits, one
//! thread per vCPU ([`VcpuThreads`]) started, kicked, paused and stopped the same way
//! for every guest, and the drivers that run on them (built-in programs and Linux here;
//! mmu_stress's stage driver lives with the benchmark).

mod coalesced;
mod control;
mod exit;
mod handle;
mod kick;
mod outcome;
#[cfg(target_arch = "aarch64")]
pub mod regs_aarch64;
#[cfg(target_arch = "x86_64")]
mod regs_x86_64;
mod run_loop;
#[cfg(target_arch = "aarch64")]
pub mod setup_aarch64;
#[cfg(target_arch = "x86_64")]
pub mod setup_x86_64;
mod threads;

use std::time::Duration;

pub use coalesced::{CoalescedRing, VcpuIo};
pub use control::{Desired, VcpuControl};
pub use exit::{BusKind, Exit, SystemEvent};
pub use handle::Vcpu;
pub use outcome::{RegsSnapshot, VcpuOutcome};
pub use run_loop::{drive, EventChannel, VcpuEvent};
pub use threads::{ThreadsError, VcpuThreads};

#[cfg(target_arch = "aarch64")]
pub use regs_aarch64::report_arg;
/// The argument register of a built-in program's report (x86 `rbx`, arm64 `x1`).
#[cfg(target_arch = "x86_64")]
pub use regs_x86_64::report_arg;

/// How long a stop may take before granule reports the vCPU as stuck.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
