//! PCI configuration space as a guest reaches it, through 0xCF8/0xCFC and through ECAM:
//! any register at any width, BARs sized and reprogrammed, decoding toggled. Every move
//! of a BAR the VMM is told about must keep the BAR naturally aligned.
#![no_main]

use std::sync::Arc;

use granule_devices::pci::{
    Bar, BarKind, Header, HostBridge, PciConfigIo, PciConfigMmio, PciFunction, PciRoot,
    ECAM_BUS_SIZE,
};
use granule_devices::BusDevice;
use granule_fuzz::Ops;
use libfuzzer_sys::fuzz_target;

fn function() -> PciFunction {
    let bars = [
        (
            0,
            Bar {
                kind: BarKind::Mem32,
                size: 1 << 20,
                addr: 0xe000_0000,
            },
        ),
        (
            2,
            Bar {
                kind: BarKind::Mem64 { prefetchable: true },
                size: 1 << 30,
                addr: 0x40_0000_0000,
            },
        ),
        (
            4,
            Bar {
                kind: BarKind::Io,
                size: 0x100,
                addr: 0x1000,
            },
        ),
    ];
    let header = Header {
        vendor: 0x1af4,
        device: 0x1000,
        class: (2, 0, 0),
        revision: 1,
    };
    PciFunction::new(
        header,
        &bars,
        Box::new(|m| {
            assert!(m.size.is_power_of_two(), "{m:?}");
            assert_eq!(m.to % m.size, 0, "a BAR moved off its alignment: {m:?}");
        }),
    )
    .expect("a valid function")
}

fuzz_target!(|data: &[u8]| {
    let root = Arc::new(PciRoot::default());
    root.insert(0, Arc::new(HostBridge::default()))
        .expect("slot 0");
    root.insert(1, Arc::new(function())).expect("slot 1");
    let io = PciConfigIo::new(root.clone());
    let ecam = PciConfigMmio::new(root);
    let mut ops = Ops::new(data);
    while !ops.is_empty() {
        let op = ops.u8();
        let n = ops.access_len();
        let (device, offset): (&dyn BusDevice, u64) = if op & 1 == 0 {
            // The 8 ports 0xCF8-0xCFF.
            (&io, u64::from(ops.u8() % (9 - n as u8)))
        } else {
            // Any function and register of the one bus, naturally aligned.
            let at = u64::from(ops.u32()) % ECAM_BUS_SIZE & !(n as u64 - 1);
            (&ecam, at)
        };
        if op & 2 == 0 {
            let mut d = [0u8; 8];
            device.read(offset, &mut d[..n]);
        } else {
            // Writes of all-ones (BAR sizing) are common in real guests; favour them.
            let v = if op & 4 == 0 { u64::MAX } else { ops.u64() };
            device.write(offset, &v.to_le_bytes()[..n]);
        }
    }
});
