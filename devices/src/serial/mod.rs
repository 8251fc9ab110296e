//! A 16550A UART (vm-superio's model) on the port-I/O bus, writing to any sink.
//!
//! Built-in programs poll, so their UART has a no-op interrupt ([`NoInterrupt`]); a
//! Linux guest's UART raises its IRQ through an eventfd ([`EventFdTrigger`]) and says
//! when its receive FIFO drained ([`InputDrained`]), so the VMM can feed it more input.

mod events;

use std::io::Write;
use std::sync::Mutex;

use vm_superio::serial::{NoEvents, SerialEvents};
use vm_superio::{Serial, Trigger};

use crate::bus::BusDevice;
pub use events::{EventFdTrigger, InputDrained};

/// Number of registers (and I/O ports) of the UART.
pub const SERIAL_PORT_LEN: u64 = 8;

/// Interrupt line for a UART whose guest does not use interrupts.
pub struct NoInterrupt;

impl Trigger for NoInterrupt {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

/// The UART behind a lock, so vCPU threads and the input pump can share it.
pub struct SerialPort<W: Write + Send, T: Trigger = NoInterrupt, EV: SerialEvents = NoEvents> {
    inner: Mutex<Serial<T, EV, W>>,
}

impl<W: Write + Send> SerialPort<W> {
    pub fn new(out: W) -> Self {
        Self {
            inner: Mutex::new(Serial::new(NoInterrupt, out)),
        }
    }
}

impl<W: Write + Send, T: Trigger + Send, EV: SerialEvents + Send> SerialPort<W, T, EV> {
    /// A UART that interrupts through `trigger` and reports to `events`.
    pub fn with_interrupt(trigger: T, events: EV, out: W) -> Self {
        Self {
            inner: Mutex::new(Serial::with_events(trigger, events, out)),
        }
    }

    /// Queues input bytes for the guest to read; returns how many fit (0 when the FIFO is
    /// full or the guest put the UART in loopback mode). The rest waits for
    /// [`InputDrained`].
    pub fn enqueue_input(&self, bytes: &[u8]) -> usize {
        let Ok(mut s) = self.inner.lock() else {
            return 0;
        };
        if s.fifo_capacity() == 0 {
            return 0;
        }
        s.enqueue_raw_bytes(bytes).unwrap_or_else(|e| {
            tracing::warn!("serial input: {e:?}");
            0
        })
    }

    /// Flushes and returns the output sink (used by tests to read what was printed).
    pub fn into_writer(self) -> W {
        let serial = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        serial.into_writer()
    }
}

impl<W: Write + Send, T: Trigger + Send, EV: SerialEvents + Send> BusDevice
    for SerialPort<W, T, EV>
{
    fn read(&self, offset: u64, data: &mut [u8]) {
        let Ok(mut s) = self.inner.lock() else {
            data.fill(0xff);
            return;
        };
        // UART registers are byte wide; wider reads see the register in the low byte.
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = s.read(offset as u8);
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let (Ok(mut s), Some(&byte)) = (self.inner.lock(), data.first()) else {
            return;
        };
        if let Err(e) = s.write(offset as u8, byte) {
            tracing::warn!("serial write failed: {e:?}");
        }
        if offset == 0 {
            // Keep the console interactive: flush on every transmitted byte.
            let _ = s.writer_mut().flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_to_thr_reach_the_sink() {
        let port = SerialPort::new(Vec::new());
        for b in b"hi\n" {
            port.write(0, &[*b]);
        }
        assert_eq!(port.into_writer(), b"hi\n");
    }

    #[test]
    fn line_status_says_transmitter_empty_and_wide_reads_are_safe() {
        let port = SerialPort::new(Vec::new());
        let mut lsr = [0u8; 4];
        port.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60, "THRE and TEMT set");
        assert_eq!(&lsr[1..], &[0, 0, 0]);
        port.write(1, &[]); // empty write from a confused caller: ignored
    }

    #[test]
    fn input_raises_the_interrupt_and_draining_it_is_signalled() {
        use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let drained = EventFd::new(EFD_NONBLOCK).unwrap();
        let port = SerialPort::with_interrupt(
            EventFdTrigger(irq.try_clone().unwrap()),
            InputDrained(drained.try_clone().unwrap()),
            Vec::new(),
        );
        port.write(1, &[0x01]); // IER: received-data interrupt on
        assert_eq!(port.enqueue_input(b"ab"), 2);
        assert!(irq.read().unwrap() >= 1, "the IRQ eventfd fired");
        let big = [b'x'; 100];
        assert_eq!(port.enqueue_input(&big), 62, "the FIFO holds 64 bytes");
        assert_eq!(port.enqueue_input(b"y"), 0);
        let mut got = Vec::new();
        for _ in 0..64 {
            let mut b = [0u8];
            port.read(0, &mut b);
            got.push(b[0]);
        }
        assert_eq!(&got[..3], b"abx");
        assert_eq!(drained.read().unwrap(), 1, "drain signalled once");
    }
}
