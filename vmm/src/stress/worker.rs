//! One vCPU of the stress run, as mmu_stress_test's vcpu_worker.

use std::sync::Arc;

use granule_arch::report::ReportKind;
use kvm_ioctls::{VcpuExit, VcpuFd};
use serde::{Deserialize, Serialize};

pub use super::config::OnFault;
use thiserror::Error;

use super::arch;
use super::rendezvous::{Interrupted, Rendezvous};
use crate::vcpu::RegsSnapshot;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("vCPU {vcpu}: stopped because another vCPU failed or the run timed out")]
    Aborted { vcpu: usize },
    #[error("vCPU {vcpu} reported stage {got} while granule waited for stage {want}")]
    WrongStage { vcpu: usize, want: u64, got: u64 },
    #[error("vCPU {vcpu} in stage {stage}: unexpected exit {exit} ({regs})")]
    Exit {
        vcpu: usize,
        stage: u64,
        exit: String,
        regs: Box<RegsSnapshot>,
    },
    #[error("vCPU {vcpu} in stage {stage}: KVM_RUN failed: {err} ({regs})")]
    Run {
        vcpu: usize,
        stage: u64,
        err: std::io::Error,
        regs: Box<RegsSnapshot>,
    },
}

/// What one vCPU saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerCounts {
    /// EFAULTs from stores to read-only memory (stage 3 and 4).
    pub efaults: u64,
    /// Stores to read-only memory that came back as MMIO exits (see `Step::Mmio`).
    pub mmio_faults: u64,
}

enum Step {
    Report(u32),
    /// A write the host must treat like a faulted store. On KVM's PVM backend a CPL0
    /// store to read-only memory comes back as KVM_EXIT_MMIO instead of EFAULT (measured,
    /// spec machines-and-testbeds.md); KVM completes the instruction as an MMIO write
    /// that nobody keeps, which is what skipping it would do. The stress workload runs
    /// at CPL3, so this is a guard, counted so it shows up if it ever happens.
    Mmio,
    Other(String),
    Efault,
    Intr,
    Failed(std::io::Error),
}

pub struct Worker {
    pub vcpu: usize,
    pub fd: VcpuFd,
    pub rendezvous: Arc<Rendezvous>,
    pub on_fault: OnFault,
    /// The aliased guest memory, for recognising MMIO-style faults.
    pub range: (u64, u64),
    pub counts: WorkerCounts,
    pub arch: Arc<arch::Setup>,
    /// The host memory this vCPU can reach (the chunk and low RAM), held for as long as
    /// the thread lives: a worker that does not stop when asked may still enter the
    /// guest, so that memory must not be unmapped under it.
    #[expect(
        dead_code,
        reason = "held, never read: dropping it with the thread is the point"
    )]
    pub keep_mapped: Arc<dyn Send + Sync>,
}

impl Worker {
    fn stage_err(&self, stage: u64, step: Step) -> WorkerError {
        let regs = Box::new(RegsSnapshot::read(&self.fd));
        match step {
            Step::Failed(err) => WorkerError::Run {
                vcpu: self.vcpu,
                stage,
                err,
                regs,
            },
            Step::Other(exit) => WorkerError::Exit {
                vcpu: self.vcpu,
                stage,
                exit,
                regs,
            },
            Step::Report(k) => WorkerError::Exit {
                vcpu: self.vcpu,
                stage,
                exit: format!("report kind {k}"),
                regs,
            },
            _ => WorkerError::Exit {
                vcpu: self.vcpu,
                stage,
                exit: "unexpected".into(),
                regs,
            },
        }
    }

    fn step(&mut self) -> Step {
        let (lo, hi) = self.range;
        match self.fd.run() {
            Ok(exit) => {
                if let Some(kind) = arch::report(&exit) {
                    return Step::Report(kind);
                }
                match exit {
                    VcpuExit::MmioWrite(addr, _) if (lo..hi).contains(&addr) => Step::Mmio,
                    VcpuExit::Intr => Step::Intr,
                    other => Step::Other(format!("{other:?}")),
                }
            }
            Err(e) if e.errno() == libc::EFAULT => Step::Efault,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Intr,
            Err(e) => Step::Failed(std::io::Error::from_raw_os_error(e.errno())),
        }
    }

    fn report_value(&mut self) -> u64 {
        arch::report_value(&mut self.fd, &self.arch)
    }

    fn skip_store(&mut self) -> Result<(), std::io::Error> {
        arch::skip_store(&mut self.fd, &self.arch)
    }

    /// Runs until the guest reports stage `want`. `on_efault`: Some(true) skips the
    /// store, Some(false) retries, None returns Ok(false) at the first EFAULT.
    /// `tolerate` is a stage that may be reported first (stop mode's stage 3).
    fn run_to(
        &mut self,
        want: u64,
        on_efault: Option<bool>,
        tolerate: Option<u64>,
    ) -> Result<bool, WorkerError> {
        loop {
            if self.rendezvous.aborted() {
                return Err(WorkerError::Aborted { vcpu: self.vcpu });
            }
            match self.step() {
                Step::Report(kind) if ReportKind::from_raw(kind) == Some(ReportKind::Stage) => {
                    let got = self.report_value();
                    if got == want {
                        return Ok(true);
                    }
                    if Some(got) != tolerate {
                        return Err(WorkerError::WrongStage {
                            vcpu: self.vcpu,
                            want,
                            got,
                        });
                    }
                }
                Step::Efault => {
                    self.counts.efaults += 1;
                    match on_efault {
                        None => return Ok(false),
                        Some(true) => {
                            if let Err(err) = self.skip_store() {
                                return Err(self.stage_err(want, Step::Failed(err)));
                            }
                        }
                        Some(false) => {}
                    }
                }
                Step::Mmio => self.counts.mmio_faults += 1,
                Step::Intr => self.fd.set_kvm_immediate_exit(0),
                other => return Err(self.stage_err(want, other)),
            }
        }
    }

    fn meet(&self) -> Result<(), WorkerError> {
        self.rendezvous
            .vcpu_arrive()
            .map_err(|_: Interrupted| WorkerError::Aborted { vcpu: self.vcpu })
    }

    /// The whole vcpu_worker; on error it aborts the run for everyone.
    pub fn run(mut self) -> Result<WorkerCounts, WorkerError> {
        let run_ptr: *mut kvm_bindings::kvm_run = self.fd.get_kvm_run();
        let _kick = crate::vcpu::bind_kicks(run_ptr);
        let r = self.stages();
        if r.is_err() {
            self.rendezvous.abort();
        }
        r.map(|()| self.counts)
    }

    fn stages(&mut self) -> Result<(), WorkerError> {
        arch::enable_sync_regs(&mut self.fd, &self.arch);
        self.meet()?; // spawning
        self.run_to(0, None, None)?; // stage 0: first touch
        self.meet()?;
        // x86: toggle CR0.WP, which forces an MMU context reset.
        arch::reset_mmu(&self.fd).map_err(|e| self.stage_err(1, Step::Failed(e)))?;
        self.meet()?;
        self.run_to(1, None, None)?; // stage 1: re-write
        self.meet()?;
        self.run_to(2, None, None)?; // stage 2: read; no rendezvous after it
        match self.on_fault {
            OnFault::Skip => {
                // Stage 3: skip every faulting store until the guest sees the flag.
                self.run_to(3, Some(true), None)?;
                self.meet()?;
                self.run_to(4, Some(false), None)?;
            }
            OnFault::Stop => {
                // Stop at the first fault (or the stage-3 report if the guest saw the
                // flag first), then wait for RW and finish.
                let reached = self.run_to(3, None, None)?;
                self.meet()?;
                self.run_to(4, Some(false), if reached { None } else { Some(3) })?;
            }
        }
        self.meet()
    }
}
