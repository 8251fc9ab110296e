//! A VM with its vCPU threads running: waiting for them, kicking, pausing and a bounded
//! stop that never leaves a thread behind silently.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use granule_devices::Bus;
use kvm_ioctls::{VcpuFd, VmFd};
use vmm_sys_util::signal::Killable;

use super::{Vm, VmError};
use crate::memory::GuestRam;
use crate::vcpu::{
    install_kick_handler, kick_signal, Desired, VcpuControl, VcpuEvent, VcpuOutcome, VcpuRunner,
};

/// How long a stop may take before granule reports the vCPU as stuck.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a stop re-sends the kick (a thread between checks may miss none, but a
/// thread blocked in a device model only sees `desired` after returning).
const KICK_INTERVAL: Duration = Duration::from_millis(10);

struct VcpuThread {
    control: Arc<VcpuControl>,
    thread: Option<JoinHandle<()>>,
}

/// How a VM run ended.
#[derive(Debug)]
pub struct VmExit {
    /// One outcome per vCPU, by index.
    pub outcomes: Vec<VcpuOutcome>,
    /// The deadline passed before the guest finished.
    pub timed_out: bool,
}

impl VmExit {
    /// The first vCPU that did not end cleanly, if any.
    pub fn first_failure(&self) -> Option<(usize, &VcpuOutcome)> {
        self.outcomes
            .iter()
            .enumerate()
            .find(|(_, o)| !o.is_clean())
    }
}

pub struct RunningVm {
    vcpus: Vec<VcpuThread>,
    events: Receiver<VcpuEvent>,
    outcomes: Vec<Option<VcpuOutcome>>,
    pub fd: VmFd,
    pub ram: Arc<GuestRam>,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    /// Device windows, ports, memslot ids and GSIs, for devices added or moved while
    /// the vCPUs run.
    pub resources: super::VmResources,
}

pub(super) fn start(
    vm: Vm,
    fds: Vec<VcpuFd>,
    report_port: Option<u16>,
) -> Result<RunningVm, VmError> {
    install_kick_handler().map_err(VmError::KickHandler)?;
    let super::VmParts {
        fd,
        ram,
        pio,
        mmio,
        resources,
        exit_notifier,
        coalesced_ring,
    } = vm.into_parts();
    let (tx, rx) = mpsc::channel();
    let mut running = RunningVm {
        vcpus: Vec::with_capacity(fds.len()),
        events: rx,
        outcomes: vec![None; fds.len()],
        fd,
        ram,
        pio,
        mmio,
        resources,
    };
    for (index, vcpu_fd) in fds.into_iter().enumerate() {
        let control = Arc::new(VcpuControl::default());
        let runner = VcpuRunner {
            index,
            fd: vcpu_fd,
            pio: running.pio.clone(),
            mmio: running.mmio.clone(),
            control: control.clone(),
            keep_ram: running.ram.clone(),
            events: tx.clone(),
            report_port,
            exit_notifier: exit_notifier.clone(),
            coalesced_ring: coalesced_ring.clone(),
        };
        let thread = match std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || runner.run())
        {
            Ok(t) => t,
            Err(source) => {
                // Only the threads started so far have outcomes to wait for: `running`
                // drops and stops just those.
                running.outcomes.truncate(running.vcpus.len());
                return Err(VmError::Thread { index, source });
            }
        };
        running.vcpus.push(VcpuThread {
            control,
            thread: Some(thread),
        });
    }
    Ok(running)
}

impl RunningVm {
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    fn record(&mut self, event: &VcpuEvent) {
        if let VcpuEvent::Exited { vcpu, outcome } = event {
            if let Some(slot) = self.outcomes.get_mut(*vcpu) {
                *slot = Some(outcome.clone());
            }
            if let Some(t) = self.vcpus.get_mut(*vcpu).and_then(|v| v.thread.take()) {
                // The thread sent its last event and is returning; joining is immediate.
                let _ = t.join();
            }
        }
    }

    fn all_exited(&self) -> bool {
        self.outcomes.iter().all(Option::is_some)
    }

    /// The next event from any vCPU, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<VcpuEvent> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => {
                self.record(&event);
                Some(event)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Kicks vCPU `index` out of KVM_RUN so it re-reads what the VMM wants.
    pub fn kick(&self, index: usize) {
        if let Some(t) = self.vcpus.get(index).and_then(|v| v.thread.as_ref()) {
            // ESRCH only means the thread is already on its way out.
            let _ = t.kill(kick_signal());
        }
    }

    /// Pauses every running vCPU; true if all parked within `timeout`.
    pub fn pause(&self, timeout: Duration) -> bool {
        let live: Vec<usize> = (0..self.vcpus.len())
            .filter(|&i| self.outcomes[i].is_none())
            .collect();
        for &i in &live {
            self.vcpus[i].control.set(Desired::Pause);
            self.kick(i);
        }
        let deadline = Instant::now() + timeout;
        live.iter().all(|&i| {
            let left = deadline.saturating_duration_since(Instant::now());
            self.vcpus[i].control.wait_parked(left)
        })
    }

    pub fn resume(&self) {
        for v in &self.vcpus {
            v.control.set(Desired::Run);
        }
    }

    /// Stops every vCPU and returns all outcomes. Bounded by [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> Result<Vec<VcpuOutcome>, VmError> {
        for v in &self.vcpus {
            v.control.set(Desired::Stop);
        }
        let start = Instant::now();
        while !self.all_exited() {
            if start.elapsed() > STOP_TIMEOUT {
                let index = self.outcomes.iter().position(Option::is_none).unwrap_or(0);
                // Detach: the thread cannot be killed safely, but it is reported.
                for v in &mut self.vcpus {
                    v.thread.take();
                }
                return Err(VmError::StopTimeout {
                    index,
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            for i in 0..self.vcpus.len() {
                if self.outcomes[i].is_none() {
                    self.kick(i);
                }
            }
            self.next_event(KICK_INTERVAL);
        }
        Ok(self
            .outcomes
            .iter()
            .map(|o| o.clone().unwrap_or(VcpuOutcome::Stopped))
            .collect())
    }

    /// Runs until every vCPU has ended, one ends badly (the rest are then stopped), or
    /// `deadline` passes (all are stopped). `on_event` sees every event as it arrives,
    /// and `None` at least every `tick_every` when nothing arrived (for progress displays).
    pub fn wait(
        &mut self,
        deadline: Option<Instant>,
        tick_every: Duration,
        mut on_event: impl FnMut(Option<&VcpuEvent>),
    ) -> Result<VmExit, VmError> {
        let mut timed_out = false;
        while !self.all_exited() {
            let mut wait = tick_every;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    break;
                }
                wait = wait.min(left);
            }
            match self.next_event(wait) {
                Some(event) => {
                    on_event(Some(&event));
                    if let VcpuEvent::Exited { outcome, .. } = &event {
                        if !outcome.is_clean() {
                            break;
                        }
                    }
                }
                None => on_event(None),
            }
        }
        let outcomes = self.stop()?;
        Ok(VmExit {
            outcomes,
            timed_out,
        })
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if !self.all_exited() {
            if let Err(e) = self.stop() {
                tracing::error!("{e}");
            }
        }
    }
}
