//! A VM with its vCPU threads running: waiting for them, kicking, pausing and a bounded
//! stop that never leaves a thread behind silently.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_ioctls::VmFd;

use super::{Vm, VmError};
use crate::devices::DeviceManager;
use crate::memory::GuestRam;
use crate::vcpu::{
    drive, CoalescedRing, EventChannel, Vcpu, VcpuEvent, VcpuIo, VcpuOutcome, VcpuThreads,
    STOP_TIMEOUT,
};

/// How a VM run ended.
#[derive(Debug)]
pub struct VmExit {
    /// One outcome per vCPU, by index.
    pub outcomes: Vec<VcpuOutcome>,
    /// The deadline passed before the guest finished.
    pub timed_out: bool,
    /// SIGINT or SIGTERM arrived (inside a [`crate::signals::InterruptScope`]) first.
    pub interrupted: bool,
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
    // Field order is drop order: the threads are stopped before the VM fd goes.
    threads: VcpuThreads<VcpuOutcome>,
    events: Receiver<VcpuEvent>,
    outcomes: Vec<Option<VcpuOutcome>>,
    fd: Arc<VmFd>,
    ram: Arc<GuestRam>,
    devices: Arc<DeviceManager>,
    ring: Option<Arc<CoalescedRing>>,
    /// Each vCPU's statistics fd, opened before its thread started (None where KVM
    /// has none): read once the threads have ended, for the exit counts.
    vcpu_stats: Vec<Option<std::fs::File>>,
}

pub(super) fn start(vm: Vm, reports: bool) -> Result<RunningVm, VmError> {
    let Vm {
        vcpus,
        fd,
        ram,
        devices,
        exit_notifier,
        ring,
    } = vm;
    let io = VcpuIo {
        pio: devices.pio().clone(),
        mmio: devices.mmio().clone(),
        ring,
    };
    let (tx, rx) = mpsc::channel();
    let channel = EventChannel {
        events: tx,
        notifier: exit_notifier,
    };
    let count = vcpus.len();
    let vcpu_stats = vcpus
        .iter()
        .map(|fd| {
            crate::observe::stats::open(fd)
                .ok()
                .map(std::fs::File::from)
        })
        .collect();
    let drivers = vcpus.into_iter().enumerate().map(|(index, fd)| {
        let channel = channel.clone();
        let driver = move |v: &mut Vcpu| drive(v, &channel);
        (Vcpu::new(index, fd, Some(io.clone()), reports), driver)
    });
    // Each thread keeps RAM and the device memory (passthrough BARs) mapped.
    let keep: Arc<dyn Send + Sync> = Arc::new((ram.clone(), devices.clone()));
    let threads = VcpuThreads::spawn(drivers.collect(), keep)?;
    Ok(RunningVm {
        threads,
        events: rx,
        outcomes: vec![None; count],
        fd,
        ram,
        devices,
        ring: io.ring,
        vcpu_stats,
    })
}

impl RunningVm {
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    pub fn ram(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    /// The buses, device resources and device memory, for devices added or moved
    /// while the vCPUs run.
    pub fn devices(&self) -> &Arc<DeviceManager> {
        &self.devices
    }

    /// Writes delivered through KVM's coalesced ring so far; `None` without a ring.
    pub fn coalesced_writes(&self) -> Option<u64> {
        self.ring.as_ref().map(|r| r.delivered())
    }

    pub fn vcpu_count(&self) -> usize {
        self.threads.len()
    }

    /// KVM's exit counters summed over all vCPUs, by name (empty without vCPU
    /// statistics). Complete once the vCPUs have stopped.
    pub fn exit_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for file in self.vcpu_stats.iter().flatten() {
            match crate::observe::stats::read_stats_fd(file) {
                Ok(stats) => crate::observe::stats::add_exit_counts(&stats, &mut counts),
                Err(e) => tracing::debug!("no vCPU statistics: {e}"),
            }
        }
        counts
    }

    fn record(&mut self, event: &VcpuEvent) {
        if let VcpuEvent::Exited { vcpu, outcome } = event {
            if let Some(slot) = self.outcomes.get_mut(*vcpu) {
                *slot = Some(outcome.clone());
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
        self.threads.kick(index);
    }

    /// Pauses every running vCPU; true if all parked within `timeout`.
    pub fn pause(&self, timeout: Duration) -> bool {
        self.threads.pause(timeout)
    }

    pub fn resume(&self) {
        self.threads.resume();
    }

    /// Stops every vCPU and returns all outcomes. Bounded by [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> Result<Vec<VcpuOutcome>, VmError> {
        self.threads.stop(STOP_TIMEOUT)?;
        for i in 0..self.outcomes.len() {
            if self.outcomes[i].is_none() {
                // A panicking driver still sent its outcome; a missing one was stopped.
                let joined = self.threads.join(i).and_then(Result::ok);
                self.outcomes[i] = Some(joined.unwrap_or(VcpuOutcome::Stopped));
            }
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
        let mut interrupted = false;
        while !self.all_exited() {
            if crate::signals::interrupted() {
                interrupted = true;
                break;
            }
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
            interrupted,
        })
    }
}
