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
    let mut bus = Bus::new("test");
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
    let (mut bus, probe) = bus_with_probe();
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
