//! One vCPU of the stress run, as mmu_stress_test's vcpu_worker.

use std::sync::Arc;

use granule_arch::report::ReportKind;
use serde::{Deserialize, Serialize};

pub use super::config::OnFault;
use thiserror::Error;

use super::arch;
use super::rendezvous::{Interrupted, Rendezvous};
use crate::vcpu::{BusKind, Exit, RegsSnapshot, Vcpu};

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
    Again,
    Stopped,
    Failed(std::io::Error),
}

/// mmu_stress_test's vcpu_worker as a driver on the vCPU engine: the stages, with a
/// rendezvous between them.
pub struct Worker {
    pub rendezvous: Arc<Rendezvous>,
    pub on_fault: OnFault,
    /// The aliased guest memory, for recognising MMIO-style faults.
    pub range: (u64, u64),
    pub counts: WorkerCounts,
    pub arch: Arc<arch::Setup>,
}

impl Worker {
    fn stage_err(&self, v: &Vcpu, stage: u64, step: Step) -> WorkerError {
        let regs = Box::new(RegsSnapshot::read(&v.fd));
        let vcpu = v.index;
        match step {
            Step::Failed(err) => WorkerError::Run {
                vcpu,
                stage,
                err,
                regs,
            },
            Step::Stopped => WorkerError::Aborted { vcpu },
            Step::Other(exit) => WorkerError::Exit {
                vcpu,
                stage,
                exit,
                regs,
            },
            Step::Report(k) => WorkerError::Exit {
                vcpu,
                stage,
                exit: format!("report kind {k}"),
                regs,
            },
            _ => WorkerError::Exit {
                vcpu,
                stage,
                exit: "unexpected".into(),
                regs,
            },
        }
    }

    fn step(&self, v: &mut Vcpu) -> Step {
        let (lo, hi) = self.range;
        match v.run_once() {
            Exit::Report(kind) => Step::Report(kind),
            Exit::Io {
                bus: BusKind::Mmio,
                write: true,
                addr,
                ..
            } if (lo..hi).contains(&addr) => Step::Mmio,
            Exit::Again => Step::Again,
            Exit::Stop => Step::Stopped,
            Exit::RunFailed(errno) if errno == libc::EFAULT => Step::Efault,
            Exit::RunFailed(errno) => Step::Failed(std::io::Error::from_raw_os_error(errno)),
            other => Step::Other(format!("{other:?}")),
        }
    }

    /// Runs until the guest reports stage `want`. `on_efault`: Some(true) skips the
    /// store, Some(false) retries, None returns Ok(false) at the first EFAULT.
    /// `tolerate` is a stage that may be reported first (stop mode's stage 3).
    fn run_to(
        &mut self,
        v: &mut Vcpu,
        want: u64,
        on_efault: Option<bool>,
        tolerate: Option<u64>,
    ) -> Result<bool, WorkerError> {
        loop {
            if self.rendezvous.aborted() {
                return Err(WorkerError::Aborted { vcpu: v.index });
            }
            match self.step(v) {
                Step::Report(kind) if ReportKind::from_raw(kind) == Some(ReportKind::Stage) => {
                    let got = arch::report_value(&mut v.fd, &self.arch);
                    if got == want {
                        return Ok(true);
                    }
                    if Some(got) != tolerate {
                        return Err(WorkerError::WrongStage {
                            vcpu: v.index,
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
                            if let Err(err) = arch::skip_store(&mut v.fd, &self.arch) {
                                return Err(self.stage_err(v, want, Step::Failed(err)));
                            }
                        }
                        Some(false) => {}
                    }
                }
                Step::Mmio => self.counts.mmio_faults += 1,
                Step::Again => {}
                other => return Err(self.stage_err(v, want, other)),
            }
        }
    }

    fn meet(&self, v: &Vcpu) -> Result<(), WorkerError> {
        self.rendezvous
            .vcpu_arrive()
            .map_err(|_: Interrupted| WorkerError::Aborted { vcpu: v.index })
    }

    /// The whole vcpu_worker; on error it aborts the run for everyone.
    pub fn run(mut self, v: &mut Vcpu) -> Result<WorkerCounts, WorkerError> {
        let r = self.stages(v);
        if r.is_err() {
            self.rendezvous.abort();
        }
        r.map(|()| self.counts)
    }

    fn stages(&mut self, v: &mut Vcpu) -> Result<(), WorkerError> {
        arch::enable_sync_regs(&mut v.fd, &self.arch);
        self.meet(v)?; // spawning
        self.run_to(v, 0, None, None)?; // stage 0: first touch
        self.meet(v)?;
        // x86: toggle CR0.WP, which forces an MMU context reset.
        arch::reset_mmu(&v.fd).map_err(|e| self.stage_err(v, 1, Step::Failed(e)))?;
        self.meet(v)?;
        self.run_to(v, 1, None, None)?; // stage 1: re-write
        self.meet(v)?;
        self.run_to(v, 2, None, None)?; // stage 2: read; no rendezvous after it
        match self.on_fault {
            OnFault::Skip => {
                // Stage 3: skip every faulting store until the guest sees the flag.
                self.run_to(v, 3, Some(true), None)?;
                self.meet(v)?;
                self.run_to(v, 4, Some(false), None)?;
            }
            OnFault::Stop => {
                // Stop at the first fault (or the stage-3 report if the guest saw the
                // flag first), then wait for RW and finish.
                let reached = self.run_to(v, 3, None, None)?;
                self.meet(v)?;
                self.run_to(v, 4, Some(false), if reached { None } else { Some(3) })?;
            }
        }
        self.meet(v)
    }
}
