//! Kicking a vCPU thread out of KVM_RUN.
//!
//! The VMM sends a real-time signal to the thread. Its handler sets `immediate_exit` in
//! that thread's `kvm_run`, so a signal that lands just before KVM_RUN is entered still
//! makes KVM_RUN return EINTR at once: no lost wake-ups.

use std::cell::Cell;
use std::ptr;
use std::sync::OnceLock;

use kvm_bindings::kvm_run;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

thread_local! {
    /// This thread's `kvm_run`, set while the thread owns a vCPU.
    static RUN: Cell<*mut kvm_run> = const { Cell::new(ptr::null_mut()) };
}

/// The signal used for kicks.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: `run` points at this thread's mmap'd kvm_run, registered by
        // `bind_current_thread` and cleared before the vCPU (and the mapping) is dropped;
        // a volatile byte store is async-signal-safe.
        unsafe { ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

/// Installs the kick handler once per process. A failure is returned to every caller,
/// not only the first: without the handler no vCPU could be stopped.
pub fn install_handler() -> Result<(), vmm_sys_util::errno::Error> {
    static RESULT: OnceLock<Result<(), i32>> = OnceLock::new();
    RESULT
        .get_or_init(|| register_signal_handler(kick_signal(), handle_kick).map_err(|e| e.errno()))
        .map_err(vmm_sys_util::errno::Error::new)
}

/// Ties kicks received by the calling thread to `run` until the guard drops.
pub struct RunBinding(());

pub fn bind_current_thread(run: *mut kvm_run) -> RunBinding {
    RUN.with(|c| c.set(run));
    RunBinding(())
}

impl Drop for RunBinding {
    fn drop(&mut self) {
        RUN.with(|c| c.set(ptr::null_mut()));
    }
}
