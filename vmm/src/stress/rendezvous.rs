//! mmu_stress_test's rendezvous, with a bound on every wait.
//!
//! Upstream: one atomic counter. Set to n+1 before a phase; each vCPU that finishes
//! decrements it and spins until the main thread flips it to -(n+1), after which the
//! next rendezvous counts up. The main thread reads the clock when the count reaches 1
//! (all arrived), then releases. Here the vCPUs also watch an abort flag, so a failed
//! vCPU or a timed-out phase ends every thread instead of leaving them spinning.
//!
//! Upstream's main thread polls the counter every 100 µs. Here the last vCPU to arrive
//! (or an abort) also wakes it, and it polls like upstream only for the first
//! [`POLL_FOR`] of a wait, then sleeps until woken: on a host with as many CPUs as
//! vCPUs each poll of a long phase can preempt a vCPU thread that is still working,
//! while a short phase is timed at least as closely as upstream times it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long the main thread sleeps at most between its checks of the deadline and of
/// SIGINT/SIGTERM, and between calls of its progress callback.
const MAIN_CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long a wait polls at upstream's interval before it only sleeps until woken.
const POLL_FOR: Duration = Duration::from_millis(10);
/// Upstream's polling interval (usleep(100)).
const POLL_EVERY: Duration = Duration::from_micros(100);

#[derive(Debug, Default)]
pub struct Rendezvous {
    count: AtomicI64,
    abort: AtomicBool,
    vcpus: i64,
    /// The thread in [`Rendezvous::main_wait`], for the last arrival to wake.
    waiter: Mutex<Option<Thread>>,
}

/// Why a wait ended without the rendezvous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    Aborted,
    TimedOut,
    /// SIGINT or SIGTERM (see [`crate::signals`]).
    Signal,
}

impl Rendezvous {
    pub fn new(vcpus: usize) -> Self {
        let n = vcpus as i64;
        Self {
            count: AtomicI64::new(n + 1),
            abort: AtomicBool::new(false),
            vcpus: n,
            waiter: Mutex::new(None),
        }
    }

    pub fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.wake_main();
    }

    /// Wakes the thread in [`Rendezvous::main_wait`], if one is there; a wake before it
    /// sleeps makes its next sleep return at once.
    fn wake_main(&self) {
        let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = waiter.as_ref() {
            t.unpark();
        }
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// A vCPU arrives and waits to be released (rendezvous_with_boss).
    pub fn vcpu_arrive(&self) -> Result<(), Interrupted> {
        let orig = self.count.load(Ordering::SeqCst);
        let released = |c: i64| if orig > 0 { c <= 0 } else { c >= 0 };
        let now = if orig > 0 {
            self.count.fetch_sub(1, Ordering::SeqCst) - 1
        } else {
            self.count.fetch_add(1, Ordering::SeqCst) + 1
        };
        if now.abs() == 1 {
            self.wake_main();
        }
        let mut spins = 0u32;
        while !released(self.count.load(Ordering::SeqCst)) {
            if self.aborted() {
                return Err(Interrupted::Aborted);
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                // Upstream spins with cpu_relax(); yielding now and then keeps waiting
                // vCPU threads from starving the ones still working on small hosts.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(())
    }

    /// How many vCPUs have not arrived yet.
    pub fn pending(&self) -> i64 {
        self.count.load(Ordering::SeqCst).abs() - 1
    }

    /// The main thread waits for every vCPU (rendezvous_with_vcpus), calling `tick`
    /// about every 100 ms, and returns the time the last one arrived. It does not
    /// release them: call [`Rendezvous::release`].
    pub fn main_wait(
        &self,
        deadline: Instant,
        mut tick: impl FnMut(i64),
    ) -> Result<Instant, Interrupted> {
        // Registered before the first look at the count: an arrival after that look
        // finds the thread to wake.
        *self.waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
        let started = Instant::now();
        let mut last_tick = started;
        loop {
            if self.count.load(Ordering::SeqCst).abs() == 1 {
                return Ok(Instant::now());
            }
            if self.aborted() {
                return Err(Interrupted::Aborted);
            }
            if Instant::now() > deadline {
                return Err(Interrupted::TimedOut);
            }
            if crate::signals::interrupted() {
                return Err(Interrupted::Signal);
            }
            let now = Instant::now();
            let step = if now.saturating_duration_since(started) < POLL_FOR {
                POLL_EVERY
            } else {
                MAIN_CHECK_EVERY
            };
            std::thread::park_timeout(deadline.saturating_duration_since(now).min(step));
            if last_tick.elapsed() >= MAIN_CHECK_EVERY {
                last_tick = Instant::now();
                tick(self.pending());
            }
        }
    }

    /// Releases the waiting vCPUs and arms the next rendezvous.
    pub fn release(&self) {
        let c = self.count.load(Ordering::SeqCst);
        let next = if c > 0 {
            -self.vcpus - 1
        } else {
            self.vcpus + 1
        };
        self.count.store(next, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn phases_alternate_and_every_vcpu_is_released() {
        let r = Arc::new(Rendezvous::new(3));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..4).all(|_| r.vcpu_arrive().is_ok()))
            })
            .collect();
        for _ in 0..4 {
            let t = r.main_wait(Instant::now() + Duration::from_secs(10), |_| {});
            assert!(t.is_ok());
            r.release();
        }
        assert!(threads.into_iter().all(|t| t.join().unwrap()));
    }

    #[test]
    fn waits_are_bounded_and_abort_frees_everyone() {
        let r = Arc::new(Rendezvous::new(2));
        let waiter = {
            let r = r.clone();
            std::thread::spawn(move || r.vcpu_arrive())
        };
        // One vCPU never arrives: the main thread times out instead of hanging.
        let t = r.main_wait(Instant::now() + Duration::from_millis(50), |_| {});
        assert_eq!(t, Err(Interrupted::TimedOut));
        assert_eq!(r.pending(), 1);
        r.abort();
        assert_eq!(waiter.join().unwrap(), Err(Interrupted::Aborted));
    }

    #[test]
    fn an_abort_from_a_vcpu_ends_the_main_wait() {
        let r = Arc::new(Rendezvous::new(2));
        let failing = {
            let r = r.clone();
            std::thread::spawn(move || r.abort())
        };
        let t = r.main_wait(Instant::now() + Duration::from_secs(600), |_| {});
        assert_eq!(t, Err(Interrupted::Aborted));
        failing.join().unwrap();
    }
}
