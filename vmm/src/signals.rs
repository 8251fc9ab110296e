//! SIGINT/SIGTERM while granule works (a Linux guest, a built-in program, a stress
//! run): the handler records the request and wakes the main loop through its eventfd;
//! the loop stops the guest and ends with exit code 130, results written whole.
//!
//! Both the handlers and the published fd are scoped to an [`InterruptScope`]: dropping
//! it (on every return path, early or not) unpublishes the fd before the eventfd can
//! close and puts the previous handlers back, so a late signal never writes to a
//! reused fd number and never lands in a handler that no longer has a loop to wake.
//!
//! Scopes nest on the thread that runs a command: `main` holds one for the whole
//! command (set-up, run, teardown, writing results) and the guest's loop holds an inner
//! one with its own wake-up fd. A signal in any of them is one request: an inner scope
//! opened after it sees it at once (and its fd is woken), and the outer scope still
//! sees a signal that came while an inner one was open.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The innermost scope's wake-up eventfd, for the handler (-1: none).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Scopes open now; the request is forgotten when the outermost one closes.
static DEPTH: AtomicUsize = AtomicUsize::new(0);

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
    /// The enclosing scope's fd, published again when this one closes.
    previous_fd: i32,
}

impl InterruptScope {
    /// Installs the handlers; a signal that cannot be handled is logged (granule then
    /// dies of it as any process would, which ends the VM too).
    pub fn install(wake: Arc<EventFd>) -> Self {
        if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
            INTERRUPTED.store(false, Ordering::SeqCst);
        }
        let previous_fd = WAKE_FD.swap(wake.as_raw_fd(), Ordering::SeqCst);
        if INTERRUPTED.load(Ordering::SeqCst) {
            // Asked to stop before this scope opened: its loop must not sleep first.
            let _ = wake.write(1);
        }
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
        Self {
            wake,
            previous,
            previous_fd,
        }
    }

    /// True once SIGINT or SIGTERM arrived inside this scope or one enclosing it.
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
        // Unpublish this scope's fd before `wake` (possibly the last reference) closes;
        // the enclosing scope's fd is open as long as that scope is.
        let _ = WAKE_FD.compare_exchange(
            self.wake.as_raw_fd(),
            self.previous_fd,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        if DEPTH.fetch_sub(1, Ordering::SeqCst) == 1 {
            WAKE_FD.store(-1, Ordering::SeqCst);
            INTERRUPTED.store(false, Ordering::SeqCst);
        }
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

    /// The scope state is process-wide: the tests here take turns.
    static SCOPES: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_scope_wakes_on_sigterm_and_restores_everything_when_dropped() {
        let _one = SCOPES.lock().unwrap();
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

    #[test]
    fn nested_scopes_share_one_request_and_hand_the_fd_back() {
        let _one = SCOPES.lock().unwrap();
        let outer = InterruptScope::install_polled().unwrap();
        let outer_fd = outer.wake().as_raw_fd();
        // SAFETY: raising a signal whose handler the outer scope installed.
        unsafe { libc::raise(libc::SIGINT) };
        {
            let inner = InterruptScope::install_polled().unwrap();
            assert!(
                inner.interrupted(),
                "a request before the inner scope counts"
            );
            assert_eq!(inner.wake().read().unwrap(), 1, "the inner loop is woken");
            assert_eq!(published_wake_fd(), inner.wake().as_raw_fd());
        }
        assert!(
            outer.interrupted(),
            "still asked to stop after the inner scope"
        );
        assert_eq!(published_wake_fd(), outer_fd);
        drop(outer);
        assert!(!interrupted(), "forgotten when the outermost scope closes");
        assert_eq!(published_wake_fd(), -1);
    }
}
