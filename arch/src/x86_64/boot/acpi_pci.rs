//! The PCI host bridge as firmware describes it to Linux: `\_SB.PCI0`, a PCI Express
//! root bridge (PNP0A08) whose `_CRS` lists bus 0, the configuration ports and the I/O
//! and memory windows devices may use; a motherboard-resources device (PNP0C02) that
//! reserves the ECAM region, which Linux requires before it uses MMCONFIG; and the MCFG
//! table pointing at ECAM. Built with the `acpi_tables` AML builder.

use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, Device, EISAName, Memory32Fixed, Name,
    ResourceTemplate,
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
