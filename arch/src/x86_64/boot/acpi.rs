//! ACPI tables for a Linux guest: RSDP, XSDT, a hardware-reduced FADT (power-off and
//! reset through two I/O registers, no PM1 blocks, no SCI), a DSDT with \_S5 (so the
//! kernel can power off) and COM1, and a MADT with one Local APIC per vCPU (so the
//! kernel sees N CPUs) and the I/O APIC.
//!
//! Why ACPI rather than an MP table: the MP table gives SMP but no way to power off; a
//! guest's `poweroff` would halt forever.
//!
//! Why hardware-reduced: measured in the x86 bed with the Debian 6.12 kernel, a classic
//! FADT (PM1 blocks, SCI, legacy PIC and PIT in use) left the guest stuck early in boot
//! with no timer interrupts, while the hardware-reduced one boots; Cloud Hypervisor and
//! Firecracker use it too. The price: x86 Linux then maps no ISA IRQs by itself, so the
//! DSDT declares COM1 (PNP0501) with its port and IRQ 4, and the kernel's 8250 PNP
//! driver wires that IRQ through the I/O APIC. The DSDT also declares a pvpanic
//! device, so a kernel panic reaches granule as a device write.

use super::acpi_pci::{self, PciWindows};
use super::layout::{ports, COM1_IRQ, IOAPIC_ADDR, LAPIC_ADDR, SLEEP_TYPE_S5};
use crate::x86_64::layout::COM1_PORT;

const OEM_ID: &[u8; 6] = b"GRANUL";
const OEM_TABLE_ID: &[u8; 8] = b"GRANULE ";
const CREATOR_ID: &[u8; 4] = b"GRNL";
const HEADER_LEN: usize = 36;

/// FADT flags.
const FADT_RESET_REG_SUP: u32 = 1 << 10;
const FADT_PWR_BUTTON: u32 = 1 << 4;
const FADT_SLP_BUTTON: u32 = 1 << 5;
const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// IA-PC boot architecture flags: no VGA, no CMOS RTC; "8042 present" left clear, so
/// the kernel does not probe a keyboard controller.
const IAPC_NO_VGA: u16 = 1 << 2;
const IAPC_NO_CMOS_RTC: u16 = 1 << 5;
const FADT_LEN: usize = 276;
/// MADT flags: the legacy dual 8259 exists (KVM's in-kernel PIC).
const MADT_PCAT_COMPAT: u32 = 1;

/// The tables as one blob to copy to `base`; the RSDP is at `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    pub base: u64,
    pub bytes: Vec<u8>,
}

/// Adds the checksum byte (offset `at`) so the bytes sum to zero.
fn checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    bytes[at] = 0u8.wrapping_sub(sum);
}

/// A system description table: header, then `body`.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(HEADER_LEN + body.len());
    t.extend_from_slice(signature);
    t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    checksum(&mut t, 9);
    t
}

/// A Generic Address Structure for one byte-wide I/O port.
fn gas_io_byte(port: u16) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O space
    g[1] = 8; // register bit width
    g[3] = 1; // byte access
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

/// AML for `Scope (\_SB) { Device (name) { ids; Name (_CRS, Buffer { resources }) } }`.
/// Every package here is under 64 bytes, so each PkgLength is one byte (checked by the
/// tests: the devices are fixed).
fn device_in_sb(name: &[u8; 4], ids: &[u8], resources: &[u8]) -> Vec<u8> {
    let mut dev = Vec::new();
    dev.extend_from_slice(name);
    dev.extend_from_slice(ids);
    // Name (_CRS, Buffer (n) { resources })
    dev.extend_from_slice(&[0x08, b'_', b'C', b'R', b'S', 0x11]);
    dev.push((1 + 2 + resources.len()) as u8); // PkgLength, BytePrefix, size, data
    dev.extend_from_slice(&[0x0a, resources.len() as u8]);
    dev.extend_from_slice(resources);
    let mut device = vec![0x5b, 0x82, (dev.len() + 1) as u8]; // DeviceOp, PkgLength
    device.extend_from_slice(&dev);
    let mut scope = vec![0x10, (1 + 5 + device.len()) as u8]; // ScopeOp, PkgLength
    scope.extend_from_slice(b"\\_SB_");
    scope.extend_from_slice(&device);
    scope
}

/// An I/O port range resource descriptor (Decode16, fixed base) for `len` ports.
fn io_resource(port: u16, len: u8) -> [u8; 8] {
    let p = port.to_le_bytes();
    [0x47, 0x01, p[0], p[1], p[0], p[1], 0x00, len]
}

/// AML for `Device (COM1)` under `\_SB`: _HID PNP0501, _UID 1, and a _CRS with
/// I/O ports 0x3f8-0x3ff and IRQ 4 (edge, active high).
fn com1_aml() -> Vec<u8> {
    let irq_mask = (1u16 << COM1_IRQ).to_le_bytes();
    let mut resources = io_resource(COM1_PORT, 8).to_vec();
    resources.extend_from_slice(&[0x22, irq_mask[0], irq_mask[1]]); // IRQNoFlags
    resources.extend_from_slice(&[0x79, 0x00]); // end tag
    #[rustfmt::skip]
    let ids = [
        0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x05, 0x01, // Name (_HID, EisaId ("PNP0501"))
        0x08, b'_', b'U', b'I', b'D', 0x01,                         // Name (_UID, One)
    ];
    device_in_sb(b"COM1", &ids, &resources)
}

/// AML for the pvpanic device, `Device (PEVT)` under `\_SB`: _HID "QEMU0001" and one
/// I/O port. Linux's pvpanic driver reads the port once when it binds (the features
/// granule offers) and writes it when the kernel panics: a panic signal that guest
/// user space cannot fake by printing.
fn pvpanic_aml() -> Vec<u8> {
    let mut resources = io_resource(ports::PVPANIC, 1).to_vec();
    resources.extend_from_slice(&[0x79, 0x00]);
    let mut ids = vec![0x08, b'_', b'H', b'I', b'D', 0x0d]; // Name (_HID, "QEMU0001")
    ids.extend_from_slice(b"QEMU0001\0");
    device_in_sb(b"PEVT", &ids, &resources)
}

fn dsdt(pci: Option<&PciWindows>) -> Vec<u8> {
    // Name (_S5_, Package (1) { 5 }): NameOp, name, PackageOp, PkgLength, NumElements,
    // BytePrefix value.
    let mut aml = vec![
        0x08,
        b'_',
        b'S',
        b'5',
        b'_',
        0x12,
        0x04,
        0x01,
        0x0a,
        SLEEP_TYPE_S5,
    ];
    aml.extend_from_slice(&com1_aml());
    aml.extend_from_slice(&pvpanic_aml());
    if let Some(w) = pci {
        aml.extend_from_slice(&acpi_pci::devices_aml(w));
    }
    table(b"DSDT", 2, &aml)
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut body = vec![0u8; FADT_LEN - HEADER_LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        body[at - HEADER_LEN..at - HEADER_LEN + bytes.len()].copy_from_slice(bytes)
    };
    put(40, &(dsdt_addr as u32).to_le_bytes());
    put(109, &(IAPC_NO_VGA | IAPC_NO_CMOS_RTC).to_le_bytes());
    put(
        112,
        &(FADT_HW_REDUCED_ACPI | FADT_RESET_REG_SUP | FADT_PWR_BUTTON | FADT_SLP_BUTTON)
            .to_le_bytes(),
    );
    put(116, &gas_io_byte(ports::ACPI_RESET));
    put(128, &[ports::ACPI_RESET_VALUE]);
    put(131, &[5]); // FADT minor version: ACPI 6.5
    put(140, &dsdt_addr.to_le_bytes());
    put(244, &gas_io_byte(ports::ACPI_SLEEP_CONTROL));
    put(256, &gas_io_byte(ports::ACPI_SLEEP_STATUS));
    put(268, b"GRANULE\0");
    table(b"FACP", 6, &body)
}

fn madt(vcpus: u8) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    body.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for id in 0..vcpus {
        // Processor Local APIC: type 0, length 8, UID, APIC ID, flags (enabled).
        body.extend_from_slice(&[0, 8, id, id]);
        body.extend_from_slice(&1u32.to_le_bytes());
    }
    // I/O APIC: type 1, length 12, ID (after the CPUs), reserved, address, GSI base 0.
    body.extend_from_slice(&[1, 12, vcpus, 0]);
    body.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    // Local APIC NMI: type 4, length 6, all processors, flags 0, LINT1.
    body.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    table(b"APIC", 5, &body)
}

fn align(v: usize) -> usize {
    v.next_multiple_of(16)
}

/// Builds the tables for `vcpus` CPUs (APIC IDs 0..vcpus) to be copied to `base`; with
/// `pci`, a PCI host bridge with those windows and its MCFG table too.
pub fn build(base: u64, vcpus: u8, pci: Option<&PciWindows>) -> AcpiTables {
    let rsdp_len = 36;
    let xsdt_at = align(rsdp_len);
    let xsdt_len = HEADER_LEN + if pci.is_some() { 3 } else { 2 } * 8;
    let fadt_at = align(xsdt_at + xsdt_len);
    let dsdt_at = align(fadt_at + FADT_LEN);
    let dsdt = dsdt(pci);
    let madt_at = align(dsdt_at + dsdt.len());
    let madt = madt(vcpus);
    let mcfg_at = align(madt_at + madt.len());
    let mcfg = pci
        .map(|w| acpi_pci::mcfg(OEM_ID, OEM_TABLE_ID, w.ecam.0))
        .unwrap_or_default();
    let addr = |off: usize| base + off as u64;

    let mut xsdt_body = Vec::new();
    xsdt_body.extend_from_slice(&addr(fadt_at).to_le_bytes());
    xsdt_body.extend_from_slice(&addr(madt_at).to_le_bytes());
    if pci.is_some() {
        xsdt_body.extend_from_slice(&addr(mcfg_at).to_le_bytes());
    }
    let xsdt = table(b"XSDT", 1, &xsdt_body);

    let mut rsdp = Vec::with_capacity(rsdp_len);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0); // checksum of the first 20 bytes
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(2); // revision: ACPI 2.0+, XSDT present
    rsdp.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    rsdp.extend_from_slice(&(rsdp_len as u32).to_le_bytes());
    rsdp.extend_from_slice(&addr(xsdt_at).to_le_bytes());
    rsdp.extend_from_slice(&[0, 0, 0, 0]); // extended checksum, reserved
    checksum(&mut rsdp[..20], 8);
    checksum(&mut rsdp, 32);

    let mut bytes = vec![0u8; mcfg_at + mcfg.len()];
    for (at, t) in [
        (0, &rsdp),
        (xsdt_at, &xsdt),
        (fadt_at, &fadt(addr(dsdt_at))),
        (dsdt_at, &dsdt),
        (madt_at, &madt),
        (mcfg_at, &mcfg),
    ] {
        bytes[at..at + t.len()].copy_from_slice(t);
    }
    AcpiTables { base, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Follows the pointers from the RSDP as the kernel does; returns (sig, table).
    fn walk(t: &AcpiTables) -> Vec<([u8; 4], Vec<u8>)> {
        let b = &t.bytes;
        assert_eq!(&b[..8], b"RSD PTR ");
        assert_eq!(sum(&b[..20]), 0, "RSDP checksum");
        assert_eq!(sum(&b[..36]), 0, "RSDP extended checksum");
        let get = |addr: u64| {
            let off = (addr - t.base) as usize;
            let len = u32_at(b, off + 4) as usize;
            let tb = b[off..off + len].to_vec();
            assert_eq!(sum(&tb), 0, "checksum of {:?}", &tb[..4]);
            (tb[..4].try_into().unwrap(), tb)
        };
        let (sig, xsdt) = get(u64_at(b, 24));
        assert_eq!(&sig, b"XSDT");
        let mut out = vec![];
        for i in 0..(xsdt.len() - HEADER_LEN) / 8 {
            let (sig, tb) = get(u64_at(&xsdt, HEADER_LEN + i * 8));
            if &sig == b"FACP" {
                out.push(get(u64_at(&tb, 140)));
            }
            out.push((sig, tb));
        }
        out
    }

    fn windows() -> PciWindows {
        PciWindows {
            mmio32: vec![(0xc000_0000, 0xe000_0000), (0xe010_0000, 0xfec0_0000)],
            mmio64: (0x1_4000_0000, 0x101_4000_0000),
            ecam: (0xe000_0000, 0xe010_0000),
        }
    }

    #[test]
    fn with_pci_the_dsdt_has_the_host_bridge_and_mcfg_points_at_ecam() {
        let all = walk(&build(0xe_0000, 2, Some(&windows())));
        let sigs: Vec<_> = all.iter().map(|(s, _)| *s).collect();
        assert_eq!(sigs, vec![*b"DSDT", *b"FACP", *b"APIC", *b"MCFG"]);
        let mcfg = &all[3].1;
        assert_eq!(mcfg.len(), HEADER_LEN + 8 + 16, "one ECAM entry");
        assert_eq!(u64_at(mcfg, HEADER_LEN + 8), 0xe000_0000);
        assert_eq!(
            &mcfg[HEADER_LEN + 8 + 10..HEADER_LEN + 8 + 12],
            &[0, 0],
            "buses 0-0"
        );
        let dsdt = &all[0].1;
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"PCI0") && has(b"MRES") && has(b"_CRS"));
        // EisaId("PNP0A08") and ("PNP0C02") as AML DWords.
        assert!(has(&[0x0c, 0x41, 0xd0, 0x0a, 0x08]));
        assert!(has(&[0x0c, 0x41, 0xd0, 0x0c, 0x02]));
        // The 64-bit window as a QWordMemory descriptor's minimum.
        assert!(has(&0x1_4000_0000u64.to_le_bytes()));
    }

    /// Writes each table to GRANULE_ACPI_DUMP (when set), for `iasl -d` by hand.
    #[test]
    fn dump_tables_for_inspection() {
        let Ok(dir) = std::env::var("GRANULE_ACPI_DUMP") else {
            return;
        };
        for (sig, t) in walk(&build(0xe_0000, 2, Some(&windows()))) {
            let name = String::from_utf8_lossy(&sig).to_lowercase();
            std::fs::write(format!("{dir}/{name}.dat"), t).unwrap();
        }
    }

    #[test]
    fn tables_chain_from_the_rsdp_with_valid_checksums() {
        let t = build(0xe_0000, 2, None);
        let sigs: Vec<_> = walk(&t).into_iter().map(|(s, _)| s).collect();
        assert_eq!(sigs, vec![*b"DSDT", *b"FACP", *b"APIC"]);
        assert!(t.bytes.len() < 0x1_0000);
    }

    #[test]
    fn fadt_is_hardware_reduced_with_sleep_and_reset_registers() {
        let t = build(0xe_0000, 1, None);
        let all = walk(&t);
        let fadt = &all.iter().find(|(s, _)| s == b"FACP").unwrap().1;
        assert_eq!(fadt.len(), FADT_LEN);
        assert_ne!(u32_at(fadt, 112) & FADT_HW_REDUCED_ACPI, 0);
        assert_eq!(u64_at(fadt, 116 + 4), u64::from(ports::ACPI_RESET));
        assert_eq!(fadt[128], ports::ACPI_RESET_VALUE);
        let iapc = u16::from_le_bytes([fadt[109], fadt[110]]);
        assert_eq!(iapc, IAPC_NO_VGA | IAPC_NO_CMOS_RTC, "no 8042, no RTC");
        assert_eq!(u64_at(fadt, 244 + 4), u64::from(ports::ACPI_SLEEP_CONTROL));
        let dsdt = &all.iter().find(|(s, _)| s == b"DSDT").unwrap().1;
        assert_eq!(&dsdt[HEADER_LEN + 1..HEADER_LEN + 5], b"_S5_");
    }

    /// Walks the COM1 AML by its package lengths, as an AML parser would.
    #[test]
    fn com1_device_aml_is_well_formed() {
        let a = com1_aml();
        assert_eq!(a[0], 0x10, "ScopeOp");
        assert_eq!(a[1] as usize, a.len() - 1, "scope length covers the rest");
        assert_eq!(&a[2..7], b"\\_SB_");
        assert_eq!(&a[7..9], &[0x5b, 0x82], "DeviceOp");
        assert_eq!(a[9] as usize, a.len() - 9, "device length covers the rest");
        assert_eq!(&a[10..14], b"COM1");
        let crs = a.windows(4).position(|w| w == b"_CRS").unwrap() + 4;
        assert_eq!(a[crs], 0x11, "BufferOp");
        assert_eq!(
            crs + a[crs + 1] as usize + 1,
            a.len(),
            "buffer ends the device"
        );
        let res = &a[crs + 4..];
        assert_eq!(res.len(), a[crs + 3] as usize);
        assert_eq!(u16::from_le_bytes([res[2], res[3]]), 0x3f8);
        assert_eq!(u16::from_le_bytes([res[9], res[10]]), 1 << 4, "IRQ 4");
        assert_eq!(&res[res.len() - 2..], &[0x79, 0x00]);
    }

    #[test]
    fn pvpanic_device_aml_is_well_formed_and_in_the_dsdt() {
        let a = pvpanic_aml();
        assert_eq!(a[1] as usize, a.len() - 1, "scope length covers the rest");
        assert!(a.len() < 64, "one-byte package lengths");
        assert_eq!(a[9] as usize, a.len() - 9, "device length covers the rest");
        assert_eq!(&a[10..14], b"PEVT");
        let hid = a.windows(4).position(|w| w == b"_HID").unwrap() + 4;
        assert_eq!(&a[hid..hid + 10], b"\x0dQEMU0001\0");
        let crs = a.windows(4).position(|w| w == b"_CRS").unwrap() + 4;
        assert_eq!(crs + a[crs + 1] as usize + 1, a.len());
        let res = &a[crs + 4..];
        assert_eq!(u16::from_le_bytes([res[2], res[3]]), ports::PVPANIC);
        assert_eq!(res[7], 1, "one port");
        let all = walk(&build(0xe_0000, 1, None));
        let dsdt = &all.iter().find(|(s, _)| s == b"DSDT").unwrap().1;
        assert!(dsdt.windows(a.len()).any(|w| w == a.as_slice()));
    }

    #[test]
    fn madt_lists_one_enabled_local_apic_per_vcpu() {
        for n in [1u8, 2, 7] {
            let all = walk(&build(0xe_0000, n, None));
            let madt = &all.iter().find(|(s, _)| s == b"APIC").unwrap().1;
            let mut at = HEADER_LEN + 8;
            let mut lapics = vec![];
            let mut ioapics = 0;
            while at < madt.len() {
                let (kind, len) = (madt[at], madt[at + 1] as usize);
                match kind {
                    0 => lapics.push((madt[at + 3], u32_at(madt, at + 4))),
                    1 => ioapics += 1,
                    _ => {}
                }
                at += len;
            }
            assert_eq!(at, madt.len(), "entries fill the table exactly");
            assert_eq!(lapics, (0..n).map(|i| (i, 1)).collect::<Vec<_>>());
            assert_eq!(ioapics, 1);
        }
    }
}
