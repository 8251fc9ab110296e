//! What the VMM wants a vCPU thread to do, and the thread's acknowledgement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    Run,
    Pause,
    Stop,
}

#[derive(Debug)]
struct State {
    desired: Desired,
    /// The thread is parked in [`VcpuControl::park`].
    parked: bool,
}

/// Shared between the VMM and one vCPU thread. The VMM changes `desired`, then kicks
/// the thread out of KVM_RUN; the thread reads `desired` before every entry.
#[derive(Debug)]
pub struct VcpuControl {
    state: Mutex<State>,
    cv: Condvar,
    /// `desired` is Run: read before every KVM_RUN without taking the lock.
    running: AtomicBool,
}

impl Default for VcpuControl {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                desired: Desired::Run,
                parked: false,
            }),
            cv: Condvar::new(),
            running: AtomicBool::new(true),
        }
    }
}

impl VcpuControl {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding it; the state
        // is two plain fields and stays meaningful.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn desired(&self) -> Desired {
        if self.running.load(Ordering::SeqCst) {
            return Desired::Run;
        }
        self.lock().desired
    }

    pub fn set(&self, desired: Desired) {
        let mut s = self.lock();
        s.desired = desired;
        self.running
            .store(desired == Desired::Run, Ordering::SeqCst);
        drop(s);
        self.cv.notify_all();
    }

    /// Called by the vCPU thread while `desired` is Pause: waits until it changes and
    /// returns the new wish.
    pub fn park(&self) -> Desired {
        let mut s = self.lock();
        s.parked = true;
        self.cv.notify_all();
        while s.desired == Desired::Pause {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.parked = false;
        s.desired
    }

    /// Waits up to `timeout` for the thread to park; true if it did.
    pub fn wait_parked(&self, timeout: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .cv
            .wait_timeout_while(s, timeout, |s| !s.parked)
            .unwrap_or_else(|p| p.into_inner());
        s.parked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pause_parks_and_resume_releases() {
        let c = Arc::new(VcpuControl::default());
        c.set(Desired::Pause);
        let t = {
            let c = c.clone();
            std::thread::spawn(move || c.park())
        };
        assert!(c.wait_parked(Duration::from_secs(5)));
        c.set(Desired::Run);
        assert_eq!(t.join().unwrap(), Desired::Run);
        assert!(!c.wait_parked(Duration::from_millis(1)));
    }
}
