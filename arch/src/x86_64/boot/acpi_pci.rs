//! The PCI host bridge as firmware describes it to Linux: `\_SB.PCI0`, a PCI Express
//! root bridge (PNP0A08) whose `_CRS` lists bus 0, the configuration ports and the I/O
//! and memory windows devices may use; a motherboard-resources device (PNP0C02) that
//! reserves the ECAM region, which Linux requires before it uses MMCONFIG; the `_PRT`
//! that routes each slot's INTx pins to I/O APIC inputs; and the MCFG table pointing at
//! ECAM. Built with the `acpi_tables` AML builder.

use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, Device, EISAName, Memory32Fixed, Name, Package,
    PackageBuilder, ResourceTemplate,
};
use acpi_tables::mcfg::MCFG;
use acpi_tables::Aml;

/// What the host bridge decodes: guest-physical `[start, end)` ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciWindows {
    /// Memory windows below 4 GiB (the 32-bit MMIO window minus fixed devices in it).
    pub mmio32: Vec<(u64, u64)>,
    /// The 64-bit memory window above RAM.
    pub mmio64: (u64, u64),
    /// ECAM for bus 0.
    pub ecam: (u64, u64),
}

/// The I/O APIC inputs PCI INTx pins are routed to: 16-23 (0-15 are ISA's).
pub const INTX_GSI_BASE: u32 = 16;
const INTX_GSIS: u32 = 8;

/// The GSI of INTx `pin` (0 = INTA .. 3 = INTD) of bus-0 slot `slot`: pins spread over
/// the eight inputs as a PCI bridge swizzles them, so neighbours do not share.
pub fn intx_gsi(slot: u8, pin: u8) -> u32 {
    INTX_GSI_BASE + (u32::from(slot) + u32::from(pin)) % INTX_GSIS
}

/// `_PRT`: every slot's four pins to their GSIs (source 0: a GSI, not a link device).
fn prt() -> PackageBuilder {
    let mut p = PackageBuilder::new();
    for slot in 1..32u8 {
        for pin in 0..4u8 {
            let addr = (u32::from(slot) << 16) | 0xffff;
            let gsi = intx_gsi(slot, pin);
            p.add_element(&Package::new(vec![&addr, &pin, &aml::ZERO, &gsi]));
        }
    }
    p
}

fn to_bytes(a: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    a.to_aml_bytes(&mut v);
    v
}

/// `Device (\_SB.PCI0)` and `Device (\_SB.MRES)`, to append to the DSDT.
pub fn devices_aml(w: &PciWindows) -> Vec<u8> {
    let bus = AddressSpace::<u16>::new_bus_number(0, 0);
    let config_ports = aml::IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = AddressSpace::<u16>::new_io(0, 0xcf7, None);
    let io_high = AddressSpace::<u16>::new_io(0xd00, 0xffff, None);
    let mem32: Vec<AddressSpace<u32>> = w
        .mmio32
        .iter()
        .map(|&(start, end)| {
            AddressSpace::new_memory(
                AddressSpaceCacheable::NotCacheable,
                true,
                start as u32,
                (end - 1) as u32,
                None,
            )
        })
        .collect();
    let mem64 = AddressSpace::<u64>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        w.mmio64.0,
        w.mmio64.1 - 1,
        None,
    );
    let mut crs: Vec<&dyn Aml> = vec![&bus, &config_ports, &io_low, &io_high];
    crs.extend(mem32.iter().map(|m| m as &dyn Aml));
    crs.push(&mem64);
    let crs = ResourceTemplate::new(crs);
    let (hid, cid) = (EISAName::new("PNP0A08"), EISAName::new("PNP0A03"));
    let prt = prt();
    let mut out = to_bytes(&Device::new(
        "_SB_.PCI0".into(),
        vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_CID".into(), &cid),
            &Name::new("_ADR".into(), &aml::ZERO),
            &Name::new("_SEG".into(), &aml::ZERO),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_BBN".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &crs),
            &Name::new("_PRT".into(), &prt),
        ],
    ));
    let ecam = Memory32Fixed::new(true, w.ecam.0 as u32, (w.ecam.1 - w.ecam.0) as u32);
    let ecam_crs = ResourceTemplate::new(vec![&ecam]);
    let mres_hid = EISAName::new("PNP0C02");
    out.extend(to_bytes(&Device::new(
        "_SB_.MRES".into(),
        vec![
            &Name::new("_HID".into(), &mres_hid),
            &Name::new("_CRS".into(), &ecam_crs),
        ],
    )));
    out
}

/// The MCFG table: ECAM for segment 0, bus 0.
pub fn mcfg(oem_id: &[u8; 6], oem_table_id: &[u8; 8], ecam_base: u64) -> Vec<u8> {
    let mut t = MCFG::new(*oem_id, *oem_table_id, 1);
    t.add_ecam(ecam_base, 0, 0, 0);
    to_bytes(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slots_pins_spread_over_the_eight_pci_inputs() {
        assert_eq!(intx_gsi(1, 0), 17);
        assert_eq!(intx_gsi(1, 3), 20);
        assert_eq!(intx_gsi(7, 1), 16);
        assert!((0..32).all(|s| (0..4).all(|p| (16..24).contains(&intx_gsi(s, p)))));
        // 31 slots x 4 pins, each a package of 4: address, pin, source 0, GSI.
        let aml = to_bytes(&prt());
        assert_eq!(aml[0], 0x12, "a package");
        let slot2_intb = [0x0c, 0xff, 0xff, 0x02, 0x00, 0x01, 0x00, 0x0a, 19];
        assert!(
            aml.windows(slot2_intb.len()).any(|w| w == slot2_intb),
            "slot 2 INTB -> GSI 19"
        );
    }
}
