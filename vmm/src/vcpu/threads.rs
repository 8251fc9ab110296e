//! The threads that run a VM's vCPUs, one each, whatever the guest: started, kicked,
//! paused and stopped the same way for built-in programs, Linux and mmu_stress.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;
use vmm_sys_util::signal::Killable;

use super::control::{Desired, VcpuControl};
use super::handle::Vcpu;
use super::kick;

/// How often a stop re-sends the kick: a thread busy in a device model or a driver's
/// own wait only sees the request when it comes back.
const KICK_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, Error)]
pub enum ThreadsError {
    #[error("cannot install the vCPU kick signal handler: {0}")]
    KickHandler(vmm_sys_util::errno::Error),
    #[error("cannot start the thread for vCPU {index}: {source}")]
    Spawn {
        index: usize,
        source: std::io::Error,
    },
    #[error(transparent)]
    Seccomp(crate::seccomp::SeccompError),
    #[error("vCPU {index} did not stop within {waited_ms} ms; its thread was left running, and the guest's memory stays mapped until it ends")]
    Stuck { index: usize, waited_ms: u128 },
}

struct Slot<O> {
    control: Arc<VcpuControl>,
    thread: Option<JoinHandle<O>>,
}

/// One thread per vCPU, each running a driver that returns `O`.
pub struct VcpuThreads<O> {
    slots: Vec<Slot<O>>,
    /// A stuck thread was detached: its slot has no handle but never finished.
    detached: bool,
}

impl<O: Send + 'static> VcpuThreads<O> {
    /// Starts `driver` on a thread per vCPU. Each thread holds `keep` (the host memory
    /// its vCPU can reach) until it ends, so memory is never unmapped under a vCPU that
    /// may still enter the guest. If a thread cannot start, the ones started are stopped.
    pub fn spawn<D>(vcpus: Vec<(Vcpu, D)>, keep: Arc<dyn Send + Sync>) -> Result<Self, ThreadsError>
    where
        D: FnOnce(&mut Vcpu) -> O + Send + 'static,
    {
        kick::install_handler().map_err(ThreadsError::KickHandler)?;
        let filter = Arc::new(
            crate::seccomp::prepare(crate::seccomp::ThreadKind::Vcpu)
                .map_err(ThreadsError::Seccomp)?,
        );
        let mut threads = Self {
            slots: Vec::with_capacity(vcpus.len()),
            detached: false,
        };
        for (mut vcpu, driver) in vcpus {
            let index = vcpu.index;
            let control = vcpu.control.clone();
            let keep = keep.clone();
            let filter = filter.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    if let Some(f) = filter.as_ref() {
                        f.install_or_exit();
                    }
                    let _keep = keep;
                    let binding = kick::bind_current_thread(vcpu.fd.get_kvm_run());
                    // Once per thread, not per entry: every driver enters the guest next.
                    crate::footprint::mark_first_entry();
                    let out = driver(&mut vcpu);
                    // Unbound before `vcpu` (and its kvm_run mapping) drops.
                    drop(binding);
                    out
                });
            match spawned {
                Ok(t) => threads.slots.push(Slot {
                    control,
                    thread: Some(t),
                }),
                Err(source) => {
                    if let Err(e) = threads.stop(super::STOP_TIMEOUT) {
                        tracing::error!("{e}");
                    }
                    return Err(ThreadsError::Spawn { index, source });
                }
            }
        }
        // Every vCPU thread is started: the thread that started them locks down too.
        if let Err(e) = crate::seccomp::apply(crate::seccomp::ThreadKind::Vmm) {
            if let Err(e) = threads.stop(super::STOP_TIMEOUT) {
                tracing::error!("{e}");
            }
            return Err(ThreadsError::Seccomp(e));
        }
        Ok(threads)
    }
}

impl<O> VcpuThreads<O> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn running(&self, i: usize) -> bool {
        self.slots[i]
            .thread
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Kicks vCPU `index` out of KVM_RUN so it re-reads what the VMM wants.
    pub fn kick(&self, index: usize) {
        if let Some(t) = self.slots.get(index).and_then(|s| s.thread.as_ref()) {
            // ESRCH only means the thread is already on its way out.
            let _ = t.kill(kick::kick_signal());
        }
    }

    /// The driver's result of vCPU `index` once its thread has ended; `None` while it
    /// runs, after a detach, or when already taken. A driver that panicked gives `Err`.
    pub fn join(&mut self, index: usize) -> Option<std::thread::Result<O>> {
        let slot = self.slots.get_mut(index)?;
        if !slot.thread.as_ref()?.is_finished() {
            return None;
        }
        slot.thread.take().map(JoinHandle::join)
    }

    /// Pauses every running vCPU; true if all parked within `timeout`.
    pub fn pause(&self, timeout: Duration) -> bool {
        let live: Vec<usize> = (0..self.slots.len()).filter(|&i| self.running(i)).collect();
        for &i in &live {
            self.slots[i].control.set(Desired::Pause);
            self.kick(i);
        }
        let deadline = Instant::now() + timeout;
        live.iter().all(|&i| {
            let left = deadline.saturating_duration_since(Instant::now());
            self.slots[i].control.wait_parked(left)
        })
    }

    pub fn resume(&self) {
        for s in &self.slots {
            s.control.set(Desired::Run);
        }
    }

    /// Asks every vCPU to stop and kicks until all threads ended, for at most `timeout`.
    /// A thread still running then is detached (it cannot be killed safely) and
    /// reported; it keeps its memory mapped until it ends.
    pub fn stop(&mut self, timeout: Duration) -> Result<(), ThreadsError> {
        for s in &self.slots {
            s.control.set(Desired::Stop);
        }
        let start = Instant::now();
        loop {
            let live: Vec<usize> = (0..self.slots.len()).filter(|&i| self.running(i)).collect();
            let Some(&first) = live.first() else {
                return Ok(());
            };
            if start.elapsed() > timeout {
                for &i in &live {
                    self.slots[i].thread.take();
                }
                self.detached = true;
                return Err(ThreadsError::Stuck {
                    index: first,
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            for &i in &live {
                self.kick(i);
            }
            std::thread::sleep(KICK_INTERVAL);
        }
    }
}

impl<O> Drop for VcpuThreads<O> {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if let Err(e) = self.stop(super::STOP_TIMEOUT) {
            tracing::error!("{e}");
        }
    }
}
