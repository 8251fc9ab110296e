//! One vCPU as every guest driver (built-in programs, Linux, mmu_stress) runs it: the
//! fd, what the VMM wants of it, its buses, and one KVM_RUN at a time.

use std::sync::Arc;

use kvm_bindings::KVM_EXIT_INTERNAL_ERROR;
use kvm_ioctls::VcpuFd;

use super::coalesced::VcpuIo;
use super::control::{Desired, VcpuControl};
use super::exit::{classify, Exit, Raw};

pub struct Vcpu {
    pub index: usize,
    pub fd: VcpuFd,
    pub(super) control: Arc<VcpuControl>,
    /// Where accesses go; `None` hands every access to the driver as [`Exit::Io`].
    io: Option<VcpuIo>,
    /// The guest is a built-in program: recognise its report writes.
    reports: bool,
}

impl Vcpu {
    pub fn new(index: usize, fd: VcpuFd, io: Option<VcpuIo>, reports: bool) -> Self {
        Self {
            index,
            fd,
            control: Arc::new(VcpuControl::default()),
            io,
            reports,
        }
    }

    /// Honours a pause or stop, enters the guest once, delivers the coalesced ring (KVM
    /// requires that before the exit that follows the buffered writes) and hands the
    /// access to a bus when the vCPU has buses.
    pub fn run_once(&mut self) -> Exit<'_> {
        match self.control.desired() {
            Desired::Run => {}
            Desired::Stop => return Exit::Stop,
            Desired::Pause => {
                return match self.control.park() {
                    Desired::Stop => Exit::Stop,
                    _ => Exit::Again,
                }
            }
        }
        let raw = match self.fd.run() {
            Ok(exit) => classify(exit, self.reports),
            Err(e) if e.errno() == libc::EINTR => {
                // A kick: clear the flag the signal handler set; `desired` is read next.
                self.fd.set_kvm_immediate_exit(0);
                Raw::Again
            }
            Err(e) if e.errno() == libc::EAGAIN => Raw::Again,
            Err(e) => Raw::RunFailed(e.errno()),
        };
        if let Some(io) = &self.io {
            if let Some(ring) = &io.ring {
                ring.drain(&mut self.fd, |bus, addr, data| {
                    io.route(bus, true, addr, data)
                });
            }
        }
        match raw {
            Raw::Again => Exit::Again,
            Raw::Access {
                bus,
                write,
                addr,
                data,
                len,
            } => {
                // SAFETY: `data..data+len` is the exit's data in this vCPU's kvm_run
                // mapping, which lives as long as `self.fd`; KVM set it up for this exit
                // and does not touch it until the next KVM_RUN, which the returned
                // borrow of `self` rules out. The ring drained above is another page.
                let data = unsafe { std::slice::from_raw_parts_mut(data, len) };
                match &self.io {
                    Some(io) => {
                        io.route(bus, write, addr, data);
                        Exit::Again
                    }
                    None => Exit::Io {
                        bus,
                        write,
                        addr,
                        data,
                    },
                }
            }
            Raw::Report(kind) => Exit::Report(kind),
            Raw::Halted => Exit::Halted,
            Raw::Shutdown => Exit::Shutdown,
            Raw::System(event) => Exit::System(event),
            Raw::FailEntry(reason) => Exit::FailEntry(reason),
            Raw::InternalError => Exit::InternalError(self.internal_suberror()),
            Raw::RunFailed(errno) => Exit::RunFailed(errno),
            Raw::Unhandled(what) => Exit::Unhandled(what),
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
}
