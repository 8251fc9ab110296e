//! The boot timer: a port the guest's init writes a magic byte to when it reaches
//! userspace, so the VMM can report time from its own start to guest userspace. The
//! same idea as Firecracker's boot-timer device, on a port instead of MMIO.

use std::sync::Mutex;
use std::time::Instant;

use crate::bus::BusDevice;
use crate::platform_event::{EventSink, PlatformEvent};

pub struct BootTimer {
    magic: u8,
    sink: Mutex<Option<EventSink>>,
}

impl BootTimer {
    pub fn new(magic: u8, sink: EventSink) -> Self {
        Self {
            magic,
            sink: Mutex::new(Some(sink)),
        }
    }
}

impl BusDevice for BootTimer {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    /// Only the first magic write counts: later ones (a second init, a guest looping)
    /// are dropped, so the guest cannot flood the VMM.
    fn write(&self, _offset: u64, data: &[u8]) {
        let now = Instant::now();
        if data.first() != Some(&self.magic) {
            return;
        }
        if let Some(sink) = self.sink.lock().ok().and_then(|mut s| s.take()) {
            sink.send(PlatformEvent::UserspaceReached(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_magic_write_is_reported_once() {
        let (tx, rx) = EventSink::channel();
        let t = BootTimer::new(123, tx);
        t.write(0, &[1]);
        assert!(rx.try_recv().is_err());
        t.write(0, &[123]);
        assert!(matches!(
            rx.try_recv(),
            Ok(PlatformEvent::UserspaceReached(_))
        ));
        t.write(0, &[123]);
        assert!(rx.try_recv().is_err());
    }
}
