//! Power control the guest kernel drives: the hardware-reduced ACPI sleep control and
//! reset registers granule's FADT points at, and the i8042's reset command for kernels
//! booted with `reboot=k` or without ACPI.

use crate::bus::BusDevice;
use crate::platform_event::{EventSink, PlatformEvent, ResetSource};

/// SLP_EN: the write starts the sleep transition in SLP_TYP (bits 2..4).
const SLP_EN: u8 = 1 << 5;
/// Sleep status register: WAK_STS, "the system woke" (never sleeps here).
const WAK_STS: u8 = 1 << 7;

/// The ACPI sleep control, sleep status and reset registers, as one device at the
/// sleep control port. Offsets: 0 control, 1 status, `reset_offset` reset.
pub struct AcpiPower {
    sink: EventSink,
    s5_type: u8,
    reset_offset: u64,
    reset_value: u8,
}

/// Number of ports [`AcpiPower`] spans for a reset register at `reset_offset`.
pub const fn acpi_power_len(reset_offset: u64) -> u64 {
    reset_offset + 1
}

impl AcpiPower {
    /// `s5_type` is the SLP_TYP the DSDT's \_S5 gives; `reset_value` the FADT's.
    pub fn new(sink: EventSink, s5_type: u8, reset_offset: u64, reset_value: u8) -> Self {
        Self {
            sink,
            s5_type,
            reset_offset,
            reset_value,
        }
    }
}

impl BusDevice for AcpiPower {
    fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 1 {
            data[0] = WAK_STS;
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            0 if v & SLP_EN != 0 && (v >> 2) & 7 == self.s5_type => {
                self.sink.send(PlatformEvent::PowerOff)
            }
            0 => tracing::debug!("guest wrote ACPI sleep control {v:#x}; only S5 is supported"),
            o if o == self.reset_offset && v == self.reset_value => self
                .sink
                .send(PlatformEvent::Reset(ResetSource::AcpiResetRegister)),
            _ => {}
        }
    }
}

/// The i8042 just far enough for its reset command: the status register reads empty
/// (so the kernel's wait loop ends at once), command 0xfe resets.
pub struct I8042Reset {
    sink: EventSink,
}

const I8042_CMD_RESET: u8 = 0xfe;
/// Offset of the command/status port from the data port (0x64 - 0x60).
pub const I8042_COMMAND_OFFSET: u64 = 4;
pub const I8042_LEN: u64 = 5;

impl I8042Reset {
    pub fn new(sink: EventSink) -> Self {
        Self { sink }
    }
}

impl BusDevice for I8042Reset {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if offset == I8042_COMMAND_OFFSET && data.first() == Some(&I8042_CMD_RESET) {
            self.sink.send(PlatformEvent::Reset(ResetSource::I8042));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_with_slp_en_powers_off_and_other_sleep_writes_do_not() {
        let (tx, rx) = EventSink::channel();
        let dev = AcpiPower::new(tx, 5, 4, 1);
        dev.write(0, &[5 << 2]); // no SLP_EN
        dev.write(0, &[(3 << 2) | SLP_EN]); // S3
        assert!(rx.try_recv().is_err());
        dev.write(0, &[(5 << 2) | SLP_EN]);
        assert_eq!(rx.try_recv(), Ok(PlatformEvent::PowerOff));
        let mut st = [0u8; 1];
        dev.read(1, &mut st);
        assert_eq!(st[0], WAK_STS);
    }

    #[test]
    fn reset_register_and_i8042_reset() {
        let (tx, rx) = EventSink::channel();
        let dev = AcpiPower::new(tx.clone(), 5, 4, 1);
        dev.write(4, &[2]);
        assert!(rx.try_recv().is_err(), "wrong reset value");
        dev.write(4, &[1]);
        assert_eq!(
            rx.try_recv(),
            Ok(PlatformEvent::Reset(ResetSource::AcpiResetRegister))
        );
        let kbd = I8042Reset::new(tx);
        kbd.write(0, &[0xfe]);
        assert!(rx.try_recv().is_err(), "data port");
        kbd.write(4, &[0xfe]);
        assert_eq!(rx.try_recv(), Ok(PlatformEvent::Reset(ResetSource::I8042)));
        dev.write(0, &[]); // empty writes from a confused guest are ignored
    }
}
