//! The 16550 UART as a guest drives it: any sequence of register reads and writes
//! (divisor latch, loopback, FIFO control included), with host input queued between.
#![no_main]

use granule_devices::serial::SerialPort;
use granule_devices::BusDevice;
use granule_fuzz::Ops;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let uart = SerialPort::new(std::io::sink());
    let mut ops = Ops::new(data);
    while !ops.is_empty() {
        let op = ops.u8();
        let offset = u64::from(op >> 4 & 7);
        match op & 3 {
            0 => {
                let mut b = [0u8];
                uart.read(offset, &mut b);
            }
            1 | 2 => uart.write(offset, &[ops.u8()]),
            _ => {
                let n = usize::from(ops.u8() & 0x3f);
                uart.enqueue_input(ops.bytes(n));
            }
        }
    }
});
