//! PIO/MMIO dispatch with devices added, removed and moved between accesses: every
//! access a device sees must lie wholly inside its range, whatever the guest asks.
#![no_main]

use std::sync::Arc;

use granule_devices::bus::Bus;
use granule_devices::BusDevice;
use granule_fuzz::Ops;
use libfuzzer_sys::fuzz_target;

/// A device that checks the bus's promise.
struct Checked(u64);

impl BusDevice for Checked {
    fn read(&self, offset: u64, data: &mut [u8]) {
        assert!(
            offset + data.len() as u64 <= self.0,
            "read outside the range"
        );
        data.fill(0x5a);
    }
    fn write(&self, offset: u64, data: &[u8]) {
        assert!(
            offset + data.len() as u64 <= self.0,
            "write outside the range"
        );
    }
}

/// Addresses near a few interesting places: zero, a page, the top of the space.
fn addr(ops: &mut Ops) -> u64 {
    let base = [0, 0x1000, 0xd000_0000, u64::MAX - 0xfff][usize::from(ops.u8() & 3)];
    base.wrapping_add(u64::from(ops.u16()))
}

/// Operations per input: longer sequences reach no state a shorter one cannot (the
/// bus holds at most this many devices), and cost executions.
const MAX_OPS: usize = 96;

fuzz_target!(|data: &[u8]| {
    let bus = Bus::new("fuzz");
    let mut ops = Ops::new(data);
    for _ in 0..MAX_OPS {
        if ops.is_empty() {
            break;
        }
        match ops.u8() % 6 {
            0 => {
                let (base, len) = (addr(&mut ops), u64::from(ops.u16()));
                let _ = bus.insert(base, len, Arc::new(Checked(len)));
            }
            1 => {
                let _ = bus.remove(addr(&mut ops));
            }
            2 => {
                let _ = bus.relocate(addr(&mut ops), addr(&mut ops));
            }
            3 => {
                let (base, len, to) = (addr(&mut ops), u64::from(ops.u16()), addr(&mut ops));
                let _ = bus.relocate_window(base, len, to);
            }
            4 => {
                let mut d = [0u8; 8];
                let n = ops.access_len();
                bus.read(addr(&mut ops), &mut d[..n]);
            }
            _ => {
                let n = ops.access_len();
                let at = addr(&mut ops);
                bus.write(at, &ops.u64().to_le_bytes()[..n]);
            }
        }
    }
});
