//! What platform devices tell the VMM: the guest asked to power off or reset, or
//! reached userspace. Devices send; the VMM's main loop decides what happens.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

/// How the guest asked for a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSource {
    /// The ACPI reset register (Linux's default `reboot` path).
    AcpiResetRegister,
    /// The i8042 "pulse reset line" command (`reboot=k`).
    I8042,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformEvent {
    /// ACPI S5: the guest powered off.
    PowerOff,
    Reset(ResetSource),
    /// The guest wrote the boot timer's magic value, at this time.
    UserspaceReached(Instant),
    /// The guest kernel's pvpanic driver signalled a panic.
    Panicked {
        crash_kernel_loaded: bool,
    },
}

/// Where devices send events: a channel, plus an eventfd that wakes the VMM's event
/// loop so it needs no polling. A send fails only when the VMM stopped listening,
/// which devices ignore: the VM is going away anyway.
#[derive(Clone)]
pub struct EventSink {
    tx: Sender<PlatformEvent>,
    wake: Option<Arc<EventFd>>,
}

impl EventSink {
    /// A sink on `tx` that also signals `wake` (when given) on every event.
    pub fn new(tx: Sender<PlatformEvent>, wake: Option<Arc<EventFd>>) -> Self {
        Self { tx, wake }
    }

    /// A sink and its receiving end, without a wake-up fd (for tests).
    pub fn channel() -> (Self, Receiver<PlatformEvent>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (Self::new(tx, None), rx)
    }

    pub fn send(&self, e: PlatformEvent) {
        let _ = self.tx.send(e);
        if let Some(w) = &self.wake {
            let _ = w.write(1);
        }
    }
}
