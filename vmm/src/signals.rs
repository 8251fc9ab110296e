//! SIGINT/SIGTERM while granule works (a Linux guest, a built-in program, a stress
//! run): the handler records the request and wakes the main loop through its eventfd;
//! the loop stops the guest and ends with exit code 130, results written whole.
//!
//! Both the handlers and the published fd are scoped to an [`InterruptScope`]: dropping
//! it (on every return path, early or not) unpublishes the fd before the eventfd can
//! close and puts the previous handlers back, so a late signal never writes to a
//! reused fd number and never lands in a handler that no longer has a loop to wake.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The main loop's wake-up eventfd, for the handler (-1: none).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: write(2) is async-signal-safe; `one` lives for the call and is the 8
        // bytes an eventfd expects. The fd stays open while WAKE_FD holds it: the scope
        // owns a reference and unpublishes it before releasing that.
        unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
    }
}

/// While alive: SIGINT/SIGTERM set [`InterruptScope::interrupted`] and wake `wake`.
pub struct InterruptScope {
    wake: Arc<EventFd>,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl InterruptScope {
    /// Installs the handlers; a signal that cannot be handled is logged (granule then
    /// dies of it as any process would, which ends the VM too).
    pub fn install(wake: Arc<EventFd>) -> Self {
        INTERRUPTED.store(false, Ordering::SeqCst);
        WAKE_FD.store(wake.as_raw_fd(), Ordering::SeqCst);
        let mut previous = Vec::new();
        for sig in SIGNALS {
            // SAFETY: sigaction is plain data; zeroed is a valid empty value.
            let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
            new.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // SA_RESTART: other threads' blocking calls carry on; the loop is woken by
            // the eventfd, not by EINTR.
            new.sa_flags = libc::SA_RESTART;
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both structs are valid; sa_mask is empty (zeroed), the handler
            // only touches atomics and write(2).
            if unsafe { libc::sigaction(sig, &new, &mut old) } == 0 {
                previous.push((sig, old));
            } else {
                let e = std::io::Error::last_os_error();
                tracing::warn!("cannot handle signal {sig}: {e}");
            }
        }
        Self { wake, previous }
    }

    /// True once SIGINT or SIGTERM arrived inside this scope.
    pub fn interrupted(&self) -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    /// A scope with a wake-up eventfd of its own, for loops that poll rather than wait
    /// on an fd.
    pub fn install_polled() -> std::io::Result<Self> {
        let wake = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK)?;
        Ok(Self::install(Arc::new(wake)))
    }

    /// The eventfd the handler wakes.
    pub fn wake(&self) -> &Arc<EventFd> {
        &self.wake
    }
}

impl Drop for InterruptScope {
    fn drop(&mut self) {
        for (sig, old) in &self.previous {
            // SAFETY: restores the action this scope replaced, read by sigaction itself.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        // After the handlers are gone nothing reads the fd; unpublish it before `wake`
        // (possibly the last reference) closes.
        WAKE_FD.store(-1, Ordering::SeqCst);
        INTERRUPTED.store(false, Ordering::SeqCst);
    }
}

/// True when SIGINT or SIGTERM arrived while an [`InterruptScope`] is alive: for code
/// deep in a run (a wait loop) that the scope's owner does not reach.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The fd the handler would write to now (-1: none); for tests.
pub fn published_wake_fd() -> i32 {
    WAKE_FD.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn current_handler(sig: libc::c_int) -> libc::sighandler_t {
        // SAFETY: querying only (null new action), into a zeroed struct.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        old.sa_sigaction
    }

    #[test]
    fn the_scope_wakes_on_sigterm_and_restores_everything_when_dropped() {
        let before = current_handler(libc::SIGTERM);
        let wake = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let fd = wake.as_raw_fd();
        {
            let scope = InterruptScope::install(wake.clone());
            assert_eq!(published_wake_fd(), fd);
            // SAFETY: raising a signal whose handler this scope installed.
            unsafe { libc::raise(libc::SIGTERM) };
            assert!(scope.interrupted());
            assert_eq!(wake.read().unwrap(), 1);
        }
        assert_eq!(published_wake_fd(), -1, "fd unpublished");
        assert_eq!(current_handler(libc::SIGTERM), before, "handler restored");
    }
}
