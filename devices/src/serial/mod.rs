//! A 16550A UART (vm-superio's model) on the port-I/O bus, writing to any sink.
//!
//! Interrupts come later with the in-kernel irqchip; built-in programs poll, so for now
//! the interrupt trigger is a no-op.

use std::io::Write;
use std::sync::Mutex;

use vm_superio::{Serial, Trigger};

use crate::bus::BusDevice;

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

/// The UART behind a lock, so vCPU threads can share it.
pub struct SerialPort<W: Write + Send> {
    inner: Mutex<Serial<NoInterrupt, vm_superio::serial::NoEvents, W>>,
}

impl<W: Write + Send> SerialPort<W> {
    pub fn new(out: W) -> Self {
        Self {
            inner: Mutex::new(Serial::new(NoInterrupt, out)),
        }
    }

    /// Flushes and returns the output sink (used by tests to read what was printed).
    pub fn into_writer(self) -> W {
        let serial = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        serial.into_writer()
    }
}

impl<W: Write + Send> BusDevice for SerialPort<W> {
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
            tracing::warn!("serial write failed: {e}");
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
}
