//! How a vCPU thread ended, with the register state that explains it.

use serde::Serialize;
use std::fmt;

#[cfg(target_arch = "aarch64")]
pub use super::regs_aarch64::RegsSnapshot;
#[cfg(target_arch = "x86_64")]
pub use super::regs_x86_64::RegsSnapshot;

/// Why a vCPU thread stopped running its vCPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VcpuOutcome {
    /// The guest program reported it finished, with its exit code.
    Done { code: u64 },
    /// The guest executed HLT with nothing to wake it.
    Halted { regs: RegsSnapshot },
    /// KVM_EXIT_SHUTDOWN: a triple fault (or a reset request the VMM does not emulate).
    Shutdown { regs: RegsSnapshot },
    /// A built-in program took an exception it has no handler for; `syndrome` is
    /// arm64's ESR_EL1 (the registers hold ELR_EL1 in x2 and FAR_EL1 in x3).
    Exception { syndrome: u64, regs: RegsSnapshot },
    /// The guest asked to power the machine off (PSCI SYSTEM_OFF).
    PowerOff,
    /// The guest asked to reset the machine (PSCI SYSTEM_RESET).
    Reset,
    /// KVM could not enter the guest (invalid state).
    FailEntry { reason: u64, regs: RegsSnapshot },
    /// KVM hit an internal error (e.g. an instruction it cannot emulate).
    InternalError { suberror: u32, regs: RegsSnapshot },
    /// An exit granule does not handle.
    Unhandled { exit: String, regs: RegsSnapshot },
    /// KVM_RUN itself failed.
    RunFailed {
        errno: i32,
        message: String,
        regs: RegsSnapshot,
    },
    /// The VMM stopped the vCPU.
    Stopped,
}

impl VcpuOutcome {
    /// True when the guest ended on its own terms without an error.
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Done { code: 0 } | Self::Stopped)
    }
}

impl fmt::Display for VcpuOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done { code } => write!(f, "finished with code {code}"),
            Self::Halted { regs } => write!(f, "halted without reporting a result ({regs})"),
            Self::Shutdown { regs } => write!(f, "triple fault / shutdown ({regs})"),
            Self::Exception { syndrome, regs } => write!(
                f,
                "unhandled exception at EL1: ESR_EL1 {syndrome:#x} (exception class {:#x}; ELR_EL1 in x2, FAR_EL1 in x3: {regs})",
                syndrome >> 26
            ),
            Self::PowerOff => write!(f, "asked to power off (PSCI SYSTEM_OFF)"),
            Self::Reset => write!(f, "asked to reset (PSCI SYSTEM_RESET)"),
            Self::FailEntry { reason, regs } => {
                write!(
                    f,
                    "KVM failed to enter the guest, hardware reason {reason:#x} ({regs})"
                )
            }
            Self::InternalError { suberror, regs } => {
                write!(f, "KVM internal error, suberror {suberror} ({regs})")
            }
            Self::Unhandled { exit, regs } => write!(f, "unhandled exit {exit} ({regs})"),
            Self::RunFailed {
                errno,
                message,
                regs,
            } => {
                write!(f, "KVM_RUN failed: {message} (errno {errno}) ({regs})")
            }
            Self::Stopped => write!(f, "stopped by the VMM"),
        }
    }
}
