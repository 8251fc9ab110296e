//! The vCPU run loop.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use granule_arch::report::ReportKind;
use granule_devices::Bus;
use kvm_bindings::KVM_EXIT_INTERNAL_ERROR;
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::control::{Desired, VcpuControl};
use super::kick;
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

/// What the loop does after one exit. Nothing here borrows the vCPU, so registers can be
/// read and the coalesced ring drained after the exit (which borrows the vCPU's
/// kvm_run) is gone.
enum Step {
    Continue,
    /// A guest access to a bus. The data lives in the vCPU's kvm_run mapping until the
    /// next KVM_RUN; see [`VcpuRunner::access`].
    Access {
        bus: BusKind,
        write: bool,
        addr: u64,
        data: *mut u8,
        len: usize,
    },
    /// A write of this value to the report port.
    Report(u32),
    Halted,
    Shutdown,
    FailEntry(u64),
    InternalError,
    Unhandled(String),
    RunFailed(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusKind {
    Pio,
    Mmio,
}

/// A bus access whose data stays in kvm_run (written only for reads).
fn access(bus: BusKind, write: bool, addr: u64, data: &[u8]) -> Step {
    Step::Access {
        bus,
        write,
        addr,
        data: data.as_ptr().cast_mut(),
        len: data.len(),
    }
}

/// Turns one exit into a [`Step`], handling nothing yet: KVM requires the coalesced
/// ring to be processed before the exit that follows the buffered writes.
fn classify(exit: VcpuExit<'_>, report_port: Option<u16>) -> Step {
    match exit {
        VcpuExit::IoOut(port, data) => {
            if Some(port) == report_port && data.len() == 4 {
                return Step::Report(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
            }
            access(BusKind::Pio, true, u64::from(port), data)
        }
        VcpuExit::IoIn(port, data) => access(BusKind::Pio, false, u64::from(port), data),
        VcpuExit::MmioWrite(addr, data) => access(BusKind::Mmio, true, addr, data),
        VcpuExit::MmioRead(addr, data) => access(BusKind::Mmio, false, addr, data),
        VcpuExit::Hlt => Step::Halted,
        VcpuExit::Shutdown => Step::Shutdown,
        VcpuExit::FailEntry(reason, _cpu) => Step::FailEntry(reason),
        VcpuExit::InternalError => Step::InternalError,
        VcpuExit::Intr => Step::Continue,
        other => Step::Unhandled(format!("{other:?}")),
    }
}

/// Hands one access to the bus it belongs to.
fn route(pio: &Bus, mmio: &Bus, bus: BusKind, write: bool, addr: u64, data: &mut [u8]) {
    let bus = match bus {
        BusKind::Pio => pio,
        BusKind::Mmio => mmio,
    };
    if write {
        bus.write(addr, data);
    } else {
        bus.read(addr, data);
    }
}

/// Everything one vCPU thread owns.
pub struct VcpuRunner {
    pub index: usize,
    pub fd: VcpuFd,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub control: Arc<VcpuControl>,
    /// Guest RAM, held for as long as this thread lives: a thread the VMM gave up on
    /// (stuck in a device model) may still enter the guest, so the memory it can reach
    /// must not be unmapped under it.
    pub keep_ram: Arc<crate::memory::GuestRam>,
    pub events: Sender<VcpuEvent>,
    /// The built-in programs' report port, when the guest is one of them.
    pub report_port: Option<u16>,
    /// Signalled after the thread's last event, to wake an event loop.
    pub exit_notifier: Option<Arc<vmm_sys_util::eventfd::EventFd>>,
    /// KVM's coalesced-I/O ring, mapped on this vCPU's fd, and the lock its readers
    /// share.
    pub coalesced_ring: Option<Arc<std::sync::Mutex<()>>>,
}

impl VcpuRunner {
    /// Runs until the guest finishes or fails, or the VMM says stop. Sends the outcome as
    /// the last event, also when the loop panics (a bug must not look like a hang).
    pub fn run(mut self) {
        let index = self.index;
        let events = self.events.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()))
            .unwrap_or_else(|_| VcpuOutcome::RunFailed {
                errno: 0,
                message: "vCPU thread panicked (a granule bug)".into(),
                regs: RegsSnapshot::default(),
            });
        // The receiver may be gone if the VMM already gave up waiting; nothing to do then.
        let _ = events.send(VcpuEvent::Exited {
            vcpu: index,
            outcome,
        });
        if let Some(n) = &self.exit_notifier {
            let _ = n.write(1);
        }
    }

    fn run_loop(&mut self) -> VcpuOutcome {
        let run_ptr: *mut kvm_bindings::kvm_run = self.fd.get_kvm_run();
        let _binding = kick::bind_current_thread(run_ptr);
        loop {
            match self.control.desired() {
                Desired::Run => {}
                Desired::Stop => return VcpuOutcome::Stopped,
                Desired::Pause => {
                    if self.control.park() == Desired::Stop {
                        return VcpuOutcome::Stopped;
                    }
                    continue;
                }
            }
            let step = match self.fd.run() {
                Ok(exit) => classify(exit, self.report_port),
                Err(e) if e.errno() == libc::EINTR => {
                    // A kick: clear the flag the signal handler set, then re-read `desired`.
                    self.fd.set_kvm_immediate_exit(0);
                    Step::Continue
                }
                Err(e) if e.errno() == libc::EAGAIN => Step::Continue,
                Err(e) => Step::RunFailed(e.errno()),
            };
            // Writes KVM buffered during this KVM_RUN happened before the exit.
            self.drain_coalesced();
            let regs = || RegsSnapshot::read(&self.fd);
            let outcome = match step {
                Step::Continue => continue,
                Step::Access {
                    bus,
                    write,
                    addr,
                    data,
                    len,
                } => {
                    // SAFETY: `data..data+len` is the exit's data in this vCPU's kvm_run
                    // mapping, which lives as long as `self.fd`; KVM set it up for this
                    // exit and does not touch it until the next KVM_RUN, and nothing
                    // since (the coalesced ring is another page) has written it.
                    let data = unsafe { std::slice::from_raw_parts_mut(data, len) };
                    self.access(bus, write, addr, data);
                    continue;
                }
                Step::Report(raw) => match self.report(raw) {
                    Some(outcome) => outcome,
                    None => continue,
                },
                Step::Halted => VcpuOutcome::Halted { regs: regs() },
                Step::Shutdown => VcpuOutcome::Shutdown { regs: regs() },
                Step::FailEntry(reason) => VcpuOutcome::FailEntry {
                    reason,
                    regs: regs(),
                },
                Step::InternalError => {
                    let suberror = self.internal_suberror();
                    VcpuOutcome::InternalError {
                        suberror,
                        regs: RegsSnapshot::read(&self.fd),
                    }
                }
                Step::Unhandled(exit) => VcpuOutcome::Unhandled { exit, regs: regs() },
                Step::RunFailed(errno) => VcpuOutcome::RunFailed {
                    errno,
                    message: std::io::Error::from_raw_os_error(errno).to_string(),
                    regs: regs(),
                },
            };
            return outcome;
        }
    }

    fn access(&self, bus: BusKind, write: bool, addr: u64, data: &mut [u8]) {
        route(&self.pio, &self.mmio, bus, write, addr, data);
    }

    /// Delivers the writes KVM buffered in the coalesced ring, in order, each to the bus
    /// its entry names. Called after every KVM_RUN and before its exit is handled, as
    /// KVM requires: a read that follows buffered writes (a PCI config data read after
    /// its address write) then sees them.
    fn drain_coalesced(&mut self) {
        // Borrowed field by field: the fd is read mutably while the lock is held.
        let Self {
            fd,
            pio,
            mmio,
            coalesced_ring: Some(lock),
            ..
        } = self
        else {
            return;
        };
        // One reader at a time: the ring is the VM's, shared by every vCPU.
        let _one_reader = lock.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(Some(e)) = fd.coalesced_mmio_read() {
            let len = (e.len as usize).min(e.data.len());
            // SAFETY: both members of this union are u32s (pad, pio): any bits are valid.
            let is_pio = unsafe { e.__bindgen_anon_1.pio };
            let bus = if is_pio != 0 {
                BusKind::Pio
            } else {
                BusKind::Mmio
            };
            let mut data = e.data;
            route(pio, mmio, bus, true, e.phys_addr, &mut data[..len]);
        }
    }

    fn internal_suberror(&mut self) -> u32 {
        let run = self.fd.get_kvm_run();
        if run.exit_reason != KVM_EXIT_INTERNAL_ERROR {
            return 0;
        }
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the union
        // member KVM filled in.
        unsafe { run.__bindgen_anon_1.internal.suberror }
    }

    /// Handles a report; returns the outcome when the report ends this vCPU.
    fn report(&self, raw: u32) -> Option<VcpuOutcome> {
        #[cfg(target_arch = "x86_64")]
        let value = super::regs_x86_64::report_arg(&self.fd);
        #[cfg(target_arch = "aarch64")]
        let value = super::regs_aarch64::report_arg(&self.fd);
        match ReportKind::from_raw(raw) {
            Some(ReportKind::Done) => Some(VcpuOutcome::Done { code: value }),
            Some(kind) => {
                let _ = self.events.send(VcpuEvent::Report {
                    vcpu: self.index,
                    kind,
                    value,
                });
                None
            }
            None => Some(VcpuOutcome::Unhandled {
                exit: format!("report of unknown kind {raw:#x}"),
                regs: RegsSnapshot::read(&self.fd),
            }),
        }
    }
}
