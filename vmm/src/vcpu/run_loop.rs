//! The driver for guests that run until they end on their own: built-in programs and
//! Linux. Devices answer on the buses; the VMM hears of reports and the end.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use granule_arch::report::ReportKind;
use vmm_sys_util::eventfd::EventFd;

use super::exit::{Exit, SystemEvent};
use super::handle::Vcpu;
use super::outcome::{RegsSnapshot, VcpuOutcome};

/// What a vCPU thread tells the VMM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEvent {
    /// The guest program reported something other than `Done`.
    Report {
        vcpu: usize,
        kind: ReportKind,
        value: u64,
    },
    /// The thread stopped running its vCPU; always the thread's last event.
    Exited { vcpu: usize, outcome: VcpuOutcome },
}

/// Where a driven vCPU's events go.
#[derive(Clone)]
pub struct EventChannel {
    pub events: Sender<VcpuEvent>,
    /// Signalled after the thread's last event, to wake an event loop.
    pub notifier: Option<Arc<EventFd>>,
}

/// Runs `vcpu` until the guest finishes or fails, or the VMM says stop, and returns
/// the outcome after sending it as the last event, also when the loop panics (a bug
/// must not look like a hang).
pub fn drive(vcpu: &mut Vcpu, channel: &EventChannel) -> VcpuOutcome {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drive_loop(vcpu, &channel.events)
    }))
    .unwrap_or_else(|_| VcpuOutcome::RunFailed {
        errno: 0,
        message: "vCPU thread panicked (a granule bug)".into(),
        regs: RegsSnapshot::default(),
    });
    // The receiver may be gone if the VMM already gave up waiting; nothing to do then.
    let _ = channel.events.send(VcpuEvent::Exited {
        vcpu: vcpu.index,
        outcome: outcome.clone(),
    });
    if let Some(n) = &channel.notifier {
        let _ = n.write(1);
    }
    outcome
}

fn drive_loop(vcpu: &mut Vcpu, events: &Sender<VcpuEvent>) -> VcpuOutcome {
    loop {
        let regs = |v: &Vcpu| RegsSnapshot::read(&v.fd);
        return match vcpu.run_once() {
            Exit::Again => continue,
            Exit::Stop => VcpuOutcome::Stopped,
            Exit::Report(raw) => match report(vcpu, raw, events) {
                Some(outcome) => outcome,
                None => continue,
            },
            Exit::Io {
                bus, write, addr, ..
            } => {
                let exit = format!("{bus:?} {} at {addr:#x} with no bus", rw(write));
                VcpuOutcome::Unhandled {
                    exit,
                    regs: regs(vcpu),
                }
            }
            Exit::Halted => VcpuOutcome::Halted { regs: regs(vcpu) },
            Exit::Shutdown => VcpuOutcome::Shutdown { regs: regs(vcpu) },
            Exit::System(SystemEvent::PowerOff) => VcpuOutcome::PowerOff,
            Exit::System(SystemEvent::Reset) => VcpuOutcome::Reset,
            Exit::FailEntry(reason) => VcpuOutcome::FailEntry {
                reason,
                regs: regs(vcpu),
            },
            Exit::InternalError(suberror) => VcpuOutcome::InternalError {
                suberror,
                regs: regs(vcpu),
            },
            Exit::Unhandled(exit) => VcpuOutcome::Unhandled {
                exit,
                regs: regs(vcpu),
            },
            Exit::RunFailed(errno) => VcpuOutcome::RunFailed {
                errno,
                message: std::io::Error::from_raw_os_error(errno).to_string(),
                regs: regs(vcpu),
            },
        };
    }
}

fn rw(write: bool) -> &'static str {
    if write {
        "write"
    } else {
        "read"
    }
}

/// Handles a report; returns the outcome when the report ends this vCPU.
fn report(vcpu: &Vcpu, raw: u32, events: &Sender<VcpuEvent>) -> Option<VcpuOutcome> {
    let value = super::report_arg(&vcpu.fd);
    match ReportKind::from_raw(raw) {
        Some(ReportKind::Done) => Some(VcpuOutcome::Done { code: value }),
        Some(ReportKind::Exception) => Some(VcpuOutcome::Exception {
            syndrome: value,
            regs: RegsSnapshot::read(&vcpu.fd),
        }),
        Some(kind) => {
            let _ = events.send(VcpuEvent::Report {
                vcpu: vcpu.index,
                kind,
                value,
            });
            None
        }
        None => Some(VcpuOutcome::Unhandled {
            exit: format!("report of unknown kind {raw:#x}"),
            regs: RegsSnapshot::read(&vcpu.fd),
        }),
    }
}
