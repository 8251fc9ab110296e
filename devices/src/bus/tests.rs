use super::*;

/// Records the last access; reads return the offset in every byte.
#[derive(Default)]
struct Probe {
    last: Mutex<Option<(u64, Vec<u8>)>>,
}

impl BusDevice for Probe {
    fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn write(&self, offset: u64, data: &[u8]) {
        *self.last.lock().unwrap() = Some((offset, data.to_vec()));
    }
}

fn bus_with_probe() -> (Bus, Arc<Probe>) {
    let bus = Bus::new("test");
    let probe = Arc::new(Probe::default());
    bus.insert(0x3f8, 8, probe.clone()).unwrap();
    (bus, probe)
}

#[test]
fn accesses_inside_a_range_reach_the_device_with_offsets() {
    let (bus, probe) = bus_with_probe();
    let mut b = [0u8; 1];
    assert_eq!(bus.read(0x3fd, &mut b), Access::Claimed);
    assert_eq!(b, [5]);
    assert_eq!(bus.write(0x3ff, &[7]), Access::Claimed);
    assert_eq!(*probe.last.lock().unwrap(), Some((7, vec![7])));
}

#[test]
fn accesses_straddling_the_end_or_outside_are_unclaimed_and_read_all_ones() {
    let (bus, probe) = bus_with_probe();
    let mut d = [0u8; 4];
    assert_eq!(bus.read(0x3fe, &mut d), Access::Unclaimed); // 0x3fe..0x402 leaves the range
    assert_eq!(d, [0xff; 4]);
    assert_eq!(bus.read(0x80, &mut d), Access::Unclaimed);
    assert_eq!(
        bus.write(0x3f0, &[1, 2, 3, 4, 5, 6, 7, 8, 9]),
        Access::Unclaimed
    );
    assert_eq!(bus.write(u64::MAX, &[1, 2]), Access::Unclaimed); // no overflow panic
    assert_eq!(*probe.last.lock().unwrap(), None);
}

#[test]
fn unclaimed_logging_is_bounded() {
    let bus = Bus::new("test");
    for a in 0..10_000u64 {
        bus.write(a, &[0]);
    }
    assert!(bus.logged.lock().unwrap().len() <= MAX_LOGGED_UNCLAIMED + 1);
}

#[test]
fn ranges_are_validated() {
    let (bus, probe) = bus_with_probe();
    assert_eq!(
        bus.insert(0x3fc, 2, probe.clone()),
        Err(BusError::Overlap {
            base: 0x3fc,
            len: 2,
            other: 0x3f8
        })
    );
    assert_eq!(
        bus.insert(0x3f0, 9, probe.clone()),
        Err(BusError::Overlap {
            base: 0x3f0,
            len: 9,
            other: 0x3f8
        })
    );
    assert_eq!(
        bus.insert(0x10, 0, probe.clone()),
        Err(BusError::Empty { base: 0x10 })
    );
    assert!(matches!(
        bus.insert(u64::MAX, 2, probe.clone()),
        Err(BusError::Overflow { .. })
    ));
    assert_eq!(bus.insert(0x3f0, 8, probe.clone()), Ok(()));
    assert_eq!(bus.insert(0x400, 8, probe), Ok(()));
}

#[test]
fn claims_any_sees_partial_overlaps_only() {
    let (bus, _) = bus_with_probe();
    assert!(bus.claims_any(0x3f8, 1));
    assert!(bus.claims_any(0x3f0, 9), "overlaps the first port");
    assert!(bus.claims_any(0x3ff, 4), "overlaps the last port");
    assert!(!bus.claims_any(0x3f0, 8));
    assert!(!bus.claims_any(0x400, 4));
    assert!(!bus.claims_any(0xcf8, 4));
}

#[test]
fn a_device_can_be_removed_and_moved_and_a_failed_move_leaves_it_in_place() {
    let (bus, probe) = bus_with_probe();
    bus.insert(0x2f8, 8, Arc::new(Probe::default())).unwrap();
    // Onto the other device: refused, nothing changes.
    assert_eq!(
        bus.relocate(0x3f8, 0x2fc),
        Err(BusError::Overlap {
            base: 0x2fc,
            len: 8,
            other: 0x2f8
        })
    );
    assert_eq!(bus.write(0x3f8, &[1]), Access::Claimed);
    // A move: the old range is free, the new one reaches the same device at offset 0.
    bus.relocate(0x3f8, 0x1000).unwrap();
    assert_eq!(bus.write(0x3f8, &[2]), Access::Unclaimed);
    assert_eq!(bus.write(0x1001, &[3]), Access::Claimed);
    assert_eq!(*probe.last.lock().unwrap(), Some((1, vec![3])));
    assert_eq!(
        bus.relocate(0x3f8, 0),
        Err(BusError::NoDevice { base: 0x3f8 })
    );
    assert!(bus.remove(0x1000).is_ok());
    assert!(bus.remove(0x2f8).is_ok());
    assert!(!bus.claims_any(0, u64::MAX));
    assert_eq!(
        bus.remove(0x1000).err(),
        Some(BusError::NoDevice { base: 0x1000 })
    );
}

/// Moves itself to the address written to it, as a PCI BAR does when the guest
/// reprograms it: the bus lock is not held while a device runs.
struct SelfMoving {
    bus: std::sync::Weak<Bus>,
    at: Mutex<u64>,
}

impl BusDevice for SelfMoving {
    fn read(&self, _: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&self, _: u64, data: &[u8]) {
        let to = u64::from(data[0]) << 8;
        let mut at = self.at.lock().unwrap();
        if let Some(bus) = self.bus.upgrade() {
            bus.relocate(*at, to).unwrap();
            *at = to;
        }
    }
}

#[test]
fn a_device_can_move_itself_while_handling_an_access() {
    let bus = Arc::new(Bus::new("test"));
    let dev = Arc::new(SelfMoving {
        bus: Arc::downgrade(&bus),
        at: Mutex::new(0x100),
    });
    bus.insert(0x100, 4, dev).unwrap();
    assert_eq!(bus.write(0x100, &[0x20]), Access::Claimed);
    assert!(!bus.claims_any(0x100, 4));
    assert!(bus.claims_any(0x2000, 4));
    assert_eq!(bus.write(0x2000, &[0x30]), Access::Claimed);
    assert!(bus.claims_any(0x3000, 1));
}

#[test]
fn accesses_see_the_device_whole_while_it_moves_back_and_forth() {
    let (bus, _probe) = bus_with_probe();
    let bus = Arc::new(bus);
    let reader = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                for addr in [0x3f9, 0x8001] {
                    let mut b = [0u8; 1];
                    // Claimed: the device at offset 1; unclaimed: all-ones. Nothing else.
                    match bus.read(addr, &mut b) {
                        Access::Claimed => assert_eq!(b, [1]),
                        Access::Unclaimed => assert_eq!(b, [0xff]),
                    }
                }
            }
        })
    };
    while !reader.is_finished() {
        bus.relocate(0x3f8, 0x8000).unwrap();
        bus.relocate(0x8000, 0x3f8).unwrap();
    }
    reader.join().unwrap();
    assert!(bus.claims_any(0x3f8, 8) && !bus.claims_any(0x8000, 8));
}

#[test]
fn a_window_moves_every_range_inside_it_or_none() {
    let bus = Bus::new("test");
    let dev = || Arc::new(Probe::default());
    // A BAR at 0x1000 of 0x1000 bytes with two trapped parts; a neighbour outside.
    bus.insert(0x1000, 0x10, dev()).unwrap();
    bus.insert(0x1800, 0x20, dev()).unwrap();
    bus.insert(0x2000, 0x10, dev()).unwrap();
    assert_eq!(bus.relocate_window(0x1000, 0x1000, 0x8000).unwrap(), 2);
    assert!(bus.claims_any(0x8000, 0x10) && bus.claims_any(0x8800, 0x20));
    assert!(!bus.claims_any(0x1000, 0x1000));
    assert!(bus.claims_any(0x2000, 1), "the neighbour stays");
    // Onto the neighbour: refused, nothing moved.
    assert!(matches!(
        bus.relocate_window(0x8000, 0x1000, 0x1800),
        Err(BusError::Overlap { other: 0x2000, .. })
    ));
    assert!(bus.claims_any(0x8000, 0x10) && bus.claims_any(0x8800, 0x20));
    assert!(!bus.claims_any(0x1800, 0x800));
    // Past the end of the address space: refused.
    assert!(matches!(
        bus.relocate_window(0x8000, 0x1000, u64::MAX - 0x10),
        Err(BusError::Overflow { .. })
    ));
}
