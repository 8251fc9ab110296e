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

mod bars {
    use std::sync::{Arc, Mutex};

    use super::super::bar::{Bar, BarKind, BarMove, Bars};
    use super::super::config::Header;
    use super::super::{PciDevice, PciFunction};

    const MIB: u64 = 1 << 20;

    fn device(moves: Arc<Mutex<Vec<BarMove>>>) -> PciFunction {
        let header = Header {
            vendor: 0x1af4,
            device: 0x1110,
            class: (0x05, 0x00, 0x00),
            revision: 1,
        };
        let bars = [
            (
                0,
                Bar {
                    kind: BarKind::Mem32,
                    size: MIB,
                    addr: 0xc000_0000,
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
        PciFunction::new(
            header,
            &bars,
            Box::new(move |m| moves.lock().unwrap().push(*m)),
        )
        .unwrap()
    }

    fn w32(d: &PciFunction, offset: u16, v: u32) {
        d.config_write(offset, &v.to_le_bytes());
    }

    #[test]
    fn sizing_with_decoding_off_moves_nothing_and_reads_the_size_mask() {
        let moves = Arc::new(Mutex::new(Vec::new()));
        let d = device(moves.clone());
        // As Linux sizes: decoding off, all-ones, read, restore.
        w32(&d, 0x04, 0);
        w32(&d, 0x10, u32::MAX);
        assert_eq!(d.config_read(0x10), 0xfff0_0000, "1 MiB, 32-bit memory");
        w32(&d, 0x18, u32::MAX);
        w32(&d, 0x1c, u32::MAX);
        assert_eq!(
            d.config_read(0x18),
            0xc000_000c,
            "1 GiB, 64-bit, prefetchable"
        );
        assert_eq!(d.config_read(0x1c), u32::MAX);
        w32(&d, 0x20, u32::MAX);
        assert_eq!(d.config_read(0x20), 0xffff_ff01, "256 ports");
        w32(&d, 0x10, 0xc000_0000);
        w32(&d, 0x18, 0);
        w32(&d, 0x1c, 0x40);
        w32(&d, 0x20, 0x1000);
        w32(&d, 0x04, 0x3);
        assert!(moves.lock().unwrap().is_empty(), "all back where they were");
    }

    #[test]
    fn a_bar_written_while_decoding_is_off_moves_when_decoding_turns_on() {
        let moves = Arc::new(Mutex::new(Vec::new()));
        let d = device(moves.clone());
        w32(&d, 0x10, 0xd000_0000);
        w32(&d, 0x18, 0);
        w32(&d, 0x1c, 0x80);
        assert!(moves.lock().unwrap().is_empty());
        // Memory decoding on: both memory BARs follow; the I/O BAR did not change.
        d.config_write(0x04, &[0x02, 0x00]);
        let got = moves.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                BarMove {
                    index: 0,
                    kind: BarKind::Mem32,
                    size: MIB,
                    from: 0xc000_0000,
                    to: 0xd000_0000,
                },
                BarMove {
                    index: 2,
                    kind: BarKind::Mem64 { prefetchable: true },
                    size: 1 << 30,
                    from: 0x40_0000_0000,
                    to: 0x80_0000_0000,
                },
            ]
        );
        assert_eq!(d.bar(0).unwrap().1, 0xd000_0000);
    }

    #[test]
    fn a_write_with_decoding_on_moves_at_once_and_keeps_alignment() {
        let moves = Arc::new(Mutex::new(Vec::new()));
        let d = device(moves.clone());
        w32(&d, 0x04, 0x3);
        // An unaligned address loses its low bits, as hardware's read-only bits do.
        w32(&d, 0x10, 0xd012_3456);
        assert_eq!(d.config_read(0x10), 0xd010_0000);
        // A byte write to the I/O BAR's second byte: ports 0x2000.
        d.config_write(0x21, &[0x20]);
        assert_eq!(d.config_read(0x20), 0x2001);
        let got: Vec<(usize, u64)> = moves
            .lock()
            .unwrap()
            .iter()
            .map(|m| (m.index, m.to))
            .collect();
        assert_eq!(got, vec![(0, 0xd010_0000), (4, 0x2000)]);
    }

    #[test]
    fn bars_are_checked_when_added() {
        let mut b = Bars::default();
        let bar = |kind, size, addr| Bar { kind, size, addr };
        assert!(
            b.add(0, bar(BarKind::Mem32, 3 * MIB, 0)).is_err(),
            "not a power of two"
        );
        assert!(
            b.add(0, bar(BarKind::Mem32, MIB, 0x1000)).is_err(),
            "unaligned"
        );
        assert!(
            b.add(0, bar(BarKind::Mem32, MIB, 1 << 32)).is_err(),
            "above 4 GiB"
        );
        assert!(
            b.add(
                5,
                bar(
                    BarKind::Mem64 {
                        prefetchable: false
                    },
                    MIB,
                    0
                )
            )
            .is_err(),
            "no upper half"
        );
        b.add(
            0,
            bar(
                BarKind::Mem64 {
                    prefetchable: false,
                },
                MIB,
                1 << 40,
            ),
        )
        .unwrap();
        assert!(
            b.add(1, bar(BarKind::Mem32, MIB, 0)).is_err(),
            "the upper half is taken"
        );
    }
}
