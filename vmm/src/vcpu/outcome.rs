//! How a vCPU thread ended, with the register state that explains it.

use kvm_ioctls::VcpuFd;
use serde::Serialize;
use std::fmt;

/// The registers a user needs to understand a guest crash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RegsSnapshot {
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: u16,
    pub cpl: u8,
}

impl RegsSnapshot {
    /// Best effort: a vCPU whose state cannot be read yields zeros, never an error that
    /// would hide the original failure.
    pub fn read(vcpu: &VcpuFd) -> Self {
        let mut s = Self::default();
        if let Ok(r) = vcpu.get_regs() {
            (s.rip, s.rsp, s.rflags) = (r.rip, r.rsp, r.rflags);
            (s.rax, s.rbx, s.rcx, s.rdx, s.rsi, s.rdi) = (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi);
        }
        if let Ok(sr) = vcpu.get_sregs() {
            (s.cr0, s.cr2, s.cr3, s.cr4, s.efer) = (sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.efer);
            s.cs = sr.cs.selector;
            s.cpl = sr.cs.dpl;
        }
        s
    }
}

impl fmt::Display for RegsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rip={:#x} rsp={:#x} rflags={:#x} cpl={} cs={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} \
             rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x}",
            self.rip, self.rsp, self.rflags, self.cpl, self.cs, self.cr0, self.cr2, self.cr3,
            self.cr4, self.efer, self.rax, self.rbx, self.rcx, self.rdx, self.rsi, self.rdi
        )
    }
}

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
