use std::sync::Arc;

use super::config::reg;
use super::*;
use crate::BusDevice;

fn root_with_bridge() -> Arc<PciRoot> {
    let root = Arc::new(PciRoot::default());
    root.insert(0, Arc::new(HostBridge::default())).unwrap();
    root
}

fn cf8(bus: u32, dev: u32, func: u32, reg: u32) -> [u8; 4] {
    ((1 << 31) | (bus << 16) | (dev << 11) | (func << 8) | (reg & 0xfc)).to_le_bytes()
}

#[test]
fn the_host_bridge_answers_at_00_00_0_through_cf8() {
    let io = PciConfigIo::new(root_with_bridge());
    io.write(0, &cf8(0, 0, 0, 0));
    let mut d = [0u8; 4];
    io.read(4, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x0008_1b36, "device:vendor");
    io.write(0, &cf8(0, 0, 0, 8));
    io.read(4, &mut d);
    assert_eq!(d[3], 0x06, "class: bridge");
    // Word and byte reads inside the data window.
    let mut w = [0u8; 2];
    io.read(6, &mut w);
    assert_eq!(
        u16::from_le_bytes(w),
        0x0600,
        "subclass/class as a word at 0xcfe"
    );
    let mut b = [0u8; 1];
    io.read(7, &mut b);
    assert_eq!(b, [0x06]);
    // The address register reads back.
    io.read(0, &mut d);
    assert_eq!(d, cf8(0, 0, 0, 8));
}

#[test]
fn absent_functions_and_disabled_accesses_read_all_ones() {
    let io = PciConfigIo::new(root_with_bridge());
    let mut d = [0u8; 4];
    for addr in [cf8(0, 1, 0, 0), cf8(0, 0, 1, 0), cf8(1, 0, 0, 0)] {
        io.write(0, &addr);
        io.read(4, &mut d);
        assert_eq!(d, [0xff; 4], "{addr:x?}");
    }
    // Enable bit clear: no configuration cycle.
    io.write(0, &0u32.to_le_bytes());
    io.read(4, &mut d);
    assert_eq!(d, [0xff; 4]);
    // Byte accesses to the address register (0xCF9 is the PC's reset control) are
    // not address writes.
    io.write(0, &cf8(0, 0, 0, 0));
    io.write(1, &[0x06]);
    io.read(0, &mut d);
    assert_eq!(d, cf8(0, 0, 0, 0));
}

#[test]
fn only_writable_bits_change() {
    let root = root_with_bridge();
    let io = PciConfigIo::new(root.clone());
    io.write(0, &cf8(0, 0, 0, u32::from(reg::COMMAND)));
    io.write(4, &[0xff, 0xff]);
    let mut d = [0u8; 4];
    io.read(4, &mut d);
    assert_eq!(
        u16::from_le_bytes([d[0], d[1]]),
        0x0007,
        "I/O, memory, bus master only"
    );
    // The ids are read-only.
    io.write(0, &cf8(0, 0, 0, 0));
    io.write(4, &[0, 0, 0, 0]);
    io.read(4, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
}

#[test]
fn ecam_decodes_bus_device_function_and_register() {
    let root = root_with_bridge();
    root.insert(3, Arc::new(HostBridge::default())).unwrap();
    let ecam = PciConfigMmio::new(root);
    let at = |dev: u64, reg: u64| (dev << 15) | reg;
    let mut d = [0u8; 4];
    ecam.read(at(3, 0), &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
    let mut b = [0u8; 1];
    ecam.read(at(3, 0x0b), &mut b);
    assert_eq!(b, [0x06]);
    ecam.read(at(4, 0), &mut d);
    assert_eq!(d, [0xff; 4], "empty slot");
    ecam.read(ECAM_BUS_SIZE + at(3, 0), &mut d);
    assert_eq!(d, [0xff; 4], "bus 1 is empty");
    // An access across a dword boundary is not a configuration access.
    let mut w = [0u8; 2];
    ecam.read(at(3, 3), &mut w);
    assert_eq!(w, [0xff; 2]);
    // Extended space exists (PCIe) and is zero for the bridge.
    ecam.read(at(3, 0x100), &mut d);
    assert_eq!(d, [0; 4]);
}

#[test]
fn slots_are_taken_once_and_fill_up() {
    let root = PciRoot::default();
    assert_eq!(root.add(Arc::new(HostBridge::default())), Ok(0));
    assert_eq!(
        root.insert(0, Arc::new(HostBridge::default())),
        Err(PciRootError::Taken(0))
    );
    for _ in 1..32 {
        root.add(Arc::new(HostBridge::default())).unwrap();
    }
    assert_eq!(
        root.add(Arc::new(HostBridge::default())),
        Err(PciRootError::Full)
    );
}
