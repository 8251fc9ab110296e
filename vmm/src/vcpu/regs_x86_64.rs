//! The x86_64 registers a user needs to understand a guest crash.

use kvm_ioctls::VcpuFd;
use serde::Serialize;
use std::fmt;

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

/// The argument of a built-in program's report: `rbx`.
pub fn report_arg(vcpu: &VcpuFd) -> u64 {
    vcpu.get_regs().map(|r| r.rbx).unwrap_or(0)
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
