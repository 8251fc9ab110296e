//! What platform devices tell the VMM: the guest asked to power off or reset, or
//! reached userspace. Devices send; the VMM's main loop decides what happens.

use std::sync::mpsc::Sender;
use std::time::Instant;

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
}

/// Where devices send events. A send fails only when the VMM has stopped listening,
/// which devices ignore: the VM is going away anyway.
pub type EventSink = Sender<PlatformEvent>;
