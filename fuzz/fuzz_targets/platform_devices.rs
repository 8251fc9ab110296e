//! The platform devices a guest can reach: ACPI power (PM1 control, reset register),
//! the i8042 reset line, the boot timer and pvpanic, each at any offset and width.
#![no_main]

use std::sync::Arc;

use granule_devices::boot_timer::BootTimer;
use granule_devices::platform_event::EventSink;
use granule_devices::power::{AcpiPower, I8042Reset};
use granule_devices::pvpanic::PvPanic;
use granule_devices::BusDevice;
use granule_fuzz::Ops;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sink, events) = EventSink::channel();
    let mut ops = Ops::new(data);
    let devices: [Arc<dyn BusDevice>; 4] = [
        Arc::new(AcpiPower::new(
            sink.clone(),
            ops.u8(),
            u64::from(ops.u8() & 7),
            ops.u8(),
        )),
        Arc::new(I8042Reset::new(sink.clone())),
        Arc::new(BootTimer::new(ops.u8(), sink.clone())),
        Arc::new(PvPanic::new(sink)),
    ];
    while !ops.is_empty() {
        let op = ops.u8();
        let device = &devices[usize::from(op & 3)];
        let n = ops.access_len();
        // Offsets stay inside the 16 bytes each is mapped with here, as the bus ensures.
        let offset = u64::from(ops.u8() % (17 - n as u8));
        if op & 4 == 0 {
            let mut d = [0u8; 8];
            device.read(offset, &mut d[..n]);
        } else {
            let v = ops.u64().to_le_bytes();
            device.write(offset, &v[..n]);
        }
        // The VMM drains events as it runs; keep the channel from growing unbounded.
        while events.try_recv().is_ok() {}
    }
});
