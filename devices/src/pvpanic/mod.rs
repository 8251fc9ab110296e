//! The pvpanic device (QEMU's ISA/ACPI "QEMU0001" on one I/O port): the guest kernel's
//! pvpanic driver reads the port once when it binds, to learn which events the device
//! takes, and writes an event there from its panic notifier.
//!
//! This is how the VMM learns of a panic from the kernel itself, rather than from text
//! on the console that any guest process could print. The device also remembers
//! whether a driver bound, so the VMM knows whether a panic would be signalled here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::bus::BusDevice;
use crate::platform_event::{EventSink, PlatformEvent};

/// The guest kernel panicked.
pub const PVPANIC_PANICKED: u8 = 1 << 0;
/// The guest kernel panicked with a crash kernel loaded (it will kexec, not stop).
pub const PVPANIC_CRASH_LOADED: u8 = 1 << 1;
/// The events this device takes (what the driver reads at bind time).
pub const FEATURES: u8 = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
/// Its register width on the port bus.
pub const PVPANIC_LEN: u64 = 1;

pub struct PvPanic {
    /// Taken at the first panic event: a guest writing the port in a loop sends one.
    sink: Mutex<Option<EventSink>>,
    bound: AtomicBool,
}

impl PvPanic {
    pub fn new(sink: EventSink) -> Self {
        Self {
            sink: Mutex::new(Some(sink)),
            bound: AtomicBool::new(false),
        }
    }

    /// True once the guest read the feature register (its driver bound).
    pub fn driver_bound(&self) -> bool {
        self.bound.load(Ordering::SeqCst)
    }
}

impl BusDevice for PvPanic {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        self.bound.store(true, Ordering::SeqCst);
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = FEATURES;
        }
    }

    fn write(&self, _offset: u64, data: &[u8]) {
        let Some(&event) = data.first() else {
            return;
        };
        if event & FEATURES == 0 {
            return;
        }
        if let Some(sink) = self.sink.lock().ok().and_then(|mut s| s.take()) {
            sink.send(PlatformEvent::Panicked {
                crash_kernel_loaded: event & PVPANIC_CRASH_LOADED != 0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_reads_the_features_and_a_panic_is_sent_once() {
        let (tx, rx) = EventSink::channel();
        let p = PvPanic::new(tx);
        assert!(!p.driver_bound());
        let mut b = [0u8; 1];
        p.read(0, &mut b);
        assert_eq!(b[0], FEATURES);
        assert!(p.driver_bound());
        p.write(0, &[0x80]); // an event this device does not take
        assert!(rx.try_recv().is_err());
        p.write(0, &[PVPANIC_PANICKED]);
        assert_eq!(
            rx.try_recv(),
            Ok(PlatformEvent::Panicked {
                crash_kernel_loaded: false
            })
        );
        p.write(0, &[PVPANIC_PANICKED]);
        p.write(0, &[]);
        assert!(rx.try_recv().is_err(), "one event, however often written");
    }
}
