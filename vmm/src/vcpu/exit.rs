//! One KVM_RUN's result in a form every guest driver shares: the arch's exits mapped to
//! one enum, the built-in programs' report recognised per arch.

use kvm_ioctls::VcpuExit;

/// Which bus an access goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Pio,
    Mmio,
}

/// What one KVM_RUN ended with, after the engine handled what it could.
#[derive(Debug)]
pub enum Exit<'a> {
    /// Kicked, interrupted, resumed after a pause, or an access a bus handled: enter
    /// the guest again.
    Again,
    /// The VMM asked this vCPU to stop.
    Stop,
    /// An access that no bus handled (the vCPU was given none). For a read, `data` is
    /// what the guest will load; it lives in the vCPU's kvm_run until the next entry.
    Io {
        bus: BusKind,
        write: bool,
        addr: u64,
        data: &'a mut [u8],
    },
    /// A built-in program's 4-byte report write, with its kind.
    Report(u32),
    Halted,
    Shutdown,
    /// The guest asked the VMM to power off or reset the machine (arm64's PSCI
    /// SYSTEM_OFF and SYSTEM_RESET, which KVM handles up to this exit).
    System(SystemEvent),
    FailEntry(u64),
    InternalError(u32),
    /// KVM_RUN failed with this errno (EFAULT is a store to read-only memory).
    RunFailed(i32),
    Unhandled(String),
}

/// An exit taken apart without borrowing the vCPU, so the coalesced ring can be drained
/// (which needs the vCPU) before the exit is handled.
pub(super) enum Raw {
    Again,
    Access {
        bus: BusKind,
        write: bool,
        addr: u64,
        data: *mut u8,
        len: usize,
    },
    Report(u32),
    Halted,
    Shutdown,
    System(SystemEvent),
    FailEntry(u64),
    InternalError,
    RunFailed(i32),
    Unhandled(String),
}

/// What a KVM_EXIT_SYSTEM_EVENT asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemEvent {
    PowerOff,
    Reset,
}

impl SystemEvent {
    /// The event of a KVM_SYSTEM_EVENT_* type; None for the ones granule does not act
    /// on (crash, wakeup, suspend).
    fn from_kvm(kind: u32) -> Option<Self> {
        match kind {
            kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Some(Self::PowerOff),
            kvm_bindings::KVM_SYSTEM_EVENT_RESET => Some(Self::Reset),
            _ => None,
        }
    }
}

fn access(bus: BusKind, write: bool, addr: u64, data: &[u8]) -> Raw {
    Raw::Access {
        bus,
        write,
        addr,
        data: data.as_ptr().cast_mut(),
        len: data.len(),
    }
}

/// The built-in programs' report: a 4-byte `out` to the report port.
#[cfg(target_arch = "x86_64")]
fn report(exit: &VcpuExit<'_>) -> Option<u32> {
    use granule_arch::x86_64::layout::REPORT_PORT;
    match exit {
        VcpuExit::IoOut(p, d) if *p == REPORT_PORT && d.len() == 4 => {
            Some(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
        }
        _ => None,
    }
}

/// The built-in programs' report: a 4-byte store to the report address.
#[cfg(target_arch = "aarch64")]
fn report(exit: &VcpuExit<'_>) -> Option<u32> {
    use granule_arch::aarch64::layout::REPORT_MMIO;
    match exit {
        VcpuExit::MmioWrite(a, d) if *a == REPORT_MMIO && d.len() == 4 => {
            Some(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
        }
        _ => None,
    }
}

/// Maps one exit; `reports` says whether the guest is a built-in program.
pub(super) fn classify(exit: VcpuExit<'_>, reports: bool) -> Raw {
    if reports {
        if let Some(kind) = report(&exit) {
            return Raw::Report(kind);
        }
    }
    match exit {
        VcpuExit::IoOut(port, data) => access(BusKind::Pio, true, u64::from(port), data),
        VcpuExit::IoIn(port, data) => access(BusKind::Pio, false, u64::from(port), data),
        VcpuExit::MmioWrite(addr, data) => access(BusKind::Mmio, true, addr, data),
        VcpuExit::MmioRead(addr, data) => access(BusKind::Mmio, false, addr, data),
        VcpuExit::Hlt => Raw::Halted,
        VcpuExit::Shutdown => Raw::Shutdown,
        VcpuExit::FailEntry(reason, _cpu) => Raw::FailEntry(reason),
        VcpuExit::InternalError => Raw::InternalError,
        VcpuExit::Intr => Raw::Again,
        VcpuExit::SystemEvent(kind, data) => match SystemEvent::from_kvm(kind) {
            Some(event) => Raw::System(event),
            None => Raw::Unhandled(format!("system event {kind} {data:x?}")),
        },
        other => Raw::Unhandled(format!("{other:?}")),
    }
}
