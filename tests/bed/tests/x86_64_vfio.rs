//! VFIO passthrough in the x86_64 bed (nested SVM+NPT under an Intel vIOMMU): a Linux
//! guest booted by granule writes into the ivshmem BAR and through an NVMe controller
//! (MSI-X) and reads through an AHCI controller (MSI); the bytes are checked here in
//! the files behind the devices; plus every passthrough error a user can meet.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use granule_bed::{bed_available, Arch, Bed, BedRun, Case, TcgThreads};

const G: u64 = 1 << 30;

/// `len` bytes at `offset` of `file`.
fn read_at(file: &Path, offset: u64, len: usize) -> String {
    let mut f = std::fs::File::open(file).expect("ivshmem backing file");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// What the test writes into the NVMe image before the bed starts.
const NVME_PATTERN: &str = "GRANULE-NVME-IMAGE-PATTERN";
/// And into the AHCI disk's image.
const AHCI_PATTERN: &str = "GRANULE-AHCI-IMAGE-PATTERN";

/// A 16 MiB raw image starting with `text`.
fn image_with(path: &Path, text: &str) {
    std::fs::write(path, text).expect("image");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(16 << 20))
        .expect("image size");
}

/// The case with all three devices in one guest.
fn three_devices_case(run: &BedRun, ivshmem: &str, backing: &Path, image: &Path) {
    let c = run.case("three");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    let j = c.json.as_ref().expect("three JSON");
    ivshmem_checks(&c, j, ivshmem, backing);
    nvme_checks(&c, &j["passthrough"][1], image, "PCI-MSIX");
    ahci_checks(&c, &j["passthrough"][2], "PCI-MSI-");
}

/// NVMe and AHCI with the guest told not to use MSI: both on INTx through the I/O
/// APIC, at the inputs the DSDT's _PRT gives their slots.
fn intx_case(run: &BedRun, image: &Path) {
    let c = run.case("intx");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    let j = c.json.as_ref().expect("intx JSON");
    for d in j["passthrough"].as_array().into_iter().flatten() {
        let gsi = d["intx_gsi"].as_u64().unwrap_or(0);
        assert!((16..24).contains(&gsi), "{d}");
    }
    nvme_checks(&c, &j["passthrough"][0], image, "IO-APIC");
    ahci_checks(&c, &j["passthrough"][1], "IO-APIC");
}

/// BAR 2 placed and mapped for a 1G leaf, KVM's leaf, all-ones with decoding off, and
/// the guest's patterns in the file behind the memory.
fn ivshmem_checks(c: &Case, j: &serde_json::Value, ivshmem: &str, backing: &Path) {
    let d = &j["passthrough"][0];
    assert_eq!(d["bdf"], ivshmem, "{j}");
    let bar2 = d["bars"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["index"] == 2))
        .unwrap_or_else(|| panic!("no BAR 2: {d}"));
    assert_eq!(
        (bar2["size"].as_u64(), bar2["kind"].as_str()),
        (Some(G), Some("mem64"))
    );
    let gpa = bar2["gpa"].as_u64().unwrap_or(1);
    let hva = bar2["areas"][0]["hva"].as_u64().unwrap_or(1);
    assert_eq!(
        (gpa % G, hva % G),
        (0, 0),
        "BAR 2 placed and mapped 1 GiB-aligned: {bar2}"
    );
    // Linux 6.12 maps vfio-pci BARs with PUD leaves: 1G predicted, and KVM has one.
    assert_eq!(bar2["predicted"][0]["leaf"], G, "{bar2}");
    assert_eq!(bar2["predicted"][0]["size"], G, "{bar2}");
    let mapped_1g = j["stage2_share"]["mapped_bytes"][G.to_string()]
        .as_u64()
        .unwrap_or(0);
    assert!(
        mapped_1g >= G,
        "KVM reports no 1G leaf: {}",
        j["stage2_share"]
    );
    assert!(
        c.err.contains("predicted 1 GiB in 1 GiB leaves"),
        "{}",
        c.err
    );
    // Before the guest turned memory decoding on, BAR 2 read all-ones (not mapped in,
    // not a vCPU error).
    let off = "GRANULE-GUEST: DECODING-OFF BARPEEK offset=0x0 value=0xffffffff";
    assert!(c.out.contains(off), "no '{off}' in\n{}", c.out);
    // The guest wrote and read back each pattern, and the bytes are in the file behind
    // the device on this host.
    for off in [0u64, 0x2000_1000, 0x3fff_f000] {
        let text = format!("GRANULE-BAR-{off:#x}");
        let line = format!("GRANULE-GUEST: BARPOKE offset={off:#x} wrote={text} read={text}");
        assert!(c.out.contains(&line), "no '{line}' in\n{}", c.out);
        assert_eq!(read_at(backing, off, text.len()), text, "at {off:#x}");
    }
}

/// The NVMe controller: MSI-X offered, the driver read the image's first block and
/// wrote block 1, and its interrupts arrived on `chip` (a queue line counts above 0).
fn nvme_checks(c: &Case, n: &serde_json::Value, image: &Path, chip: &str) {
    assert!(n["msix_vectors"].as_u64().unwrap_or(0) > 1, "{n}");
    let read = format!("GRANULE-GUEST: NVME-READ {NVME_PATTERN}");
    assert!(c.out.contains(&read), "no '{read}' in\n{}", c.out);
    assert!(c.out.contains("GRANULE-GUEST: NVME-WROTE"), "{}", c.out);
    let irqs: Vec<&str> = c.out.lines().filter(|l| l.contains("NVME-IRQ")).collect();
    let counted = irqs.iter().any(|l| {
        l.split_whitespace()
            .skip(3)
            .take_while(|w| w.parse::<u64>().is_ok())
            .any(|w| w != "0")
    });
    assert!(
        counted && irqs.iter().all(|l| l.contains(chip)),
        "{chip}: {irqs:#?}"
    );
    let written = "GRANULE-NVME-WRITTEN-BY-GUEST";
    assert_eq!(read_at(image, 4096, written.len()), written);
}

/// The AHCI controller: MSI (one vector) offered, the disk's first block read by the
/// guest's driver, its interrupt counted on `chip`.
fn ahci_checks(c: &Case, a: &serde_json::Value, chip: &str) {
    assert!(a["msi_vectors"].as_u64().unwrap_or(0) >= 1, "{a}");
    let read = format!("GRANULE-GUEST: AHCI-READ {AHCI_PATTERN}");
    assert!(c.out.contains(&read), "no '{read}' in\n{}", c.out);
    let irq = c
        .out
        .lines()
        .find(|l| l.contains("AHCI-IRQ"))
        .unwrap_or_else(|| panic!("no ahci interrupt line\n{}", c.out));
    let count: u64 = irq
        .split_whitespace()
        .nth(3)
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    assert!(count > 0 && irq.contains(chip), "{chip}: {irq}");
}

fn error_cases(run: &BedRun, ivshmem: &str) {
    let expect = |name: &str, rc: i32, says: &[&str]| {
        let c = run.case(name);
        assert_eq!(c.rc, rc, "{name}: {}", c.err);
        for s in says {
            assert!(c.err.contains(s), "{name}: no '{s}' in\n{}", c.err);
        }
    };
    expect("in-use", 1, &[&format!("PCI device {ivshmem} is in use")]);
    let holder = run.case("holder");
    assert_eq!(holder.rc, 0, "the first VM ran on: {}", holder.err);
    expect("twice", 2, &[&format!("names PCI device {ivshmem} twice")]);
    expect("missing", 1, &["no PCI device 0000:00:1e.7", "lspci"]);
    expect(
        "not-bound",
        1,
        &[
            "0000:00:06.0 is not bound to any driver",
            "echo vfio-pci > /sys/bus/pci/devices/0000:00:06.0/driver_override",
            "echo 0000:00:06.0 > /sys/bus/pci/drivers_probe",
        ],
    );
    expect(
        "driver-bound",
        1,
        &[
            "0000:00:06.1 is bound to virtio-pci",
            "echo 0000:00:06.1 > /sys/bus/pci/devices/0000:00:06.1/driver/unbind",
        ],
    );
    expect(
        "group",
        1,
        &["is not viable", "0000:00:06.1 is bound to virtio-pci"],
    );
    expect(
        "memlock",
        1,
        &[
            "RLIMIT_MEMLOCK is 65536 bytes",
            "268435456 bytes",
            "CAP_IPC_LOCK",
        ],
    );
    // The bed kernel (Debian 6.12) is built without iommufd: asking for it is an error
    // that says so; where a kernel has it, the same case boots through it.
    let iommufd = run.markers("IOMMUFD");
    let c = run.case("iommufd");
    if iommufd == ["no"] {
        assert_eq!(c.rc, 1, "{}", c.err);
        assert!(
            c.err.contains("no /dev/iommu") && c.err.contains("iommu=legacy"),
            "{}",
            c.err
        );
    } else {
        assert_eq!(c.rc, 0, "{}", c.err);
        let j = c.json.expect("iommufd JSON");
        assert_eq!(j["passthrough"][0]["iommu"], "iommufd", "{j}");
    }
}

/// The ivshmem function, an NVMe controller and an AHCI controller passed through to
/// one Linux guest (legacy container: the bed's kernel has no iommufd): ivshmem's BAR 2
/// at 1 GiB-aligned GPA and HVA with a 1G stage-2 leaf, DMA with MSI-X and with MSI;
/// and each error case. Every case runs once.
#[test]
fn x86_vfio_passthrough_ivshmem_and_errors() {
    let Some(m) = bed_available(
        "bed_x86_vfio_passthrough_ivshmem_and_errors",
        Arch::X86_64.qemu(),
    ) else {
        return;
    };
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bed-logs");
    std::fs::create_dir_all(&dir).expect("bed-logs");
    let backing = dir.join("x86_64-ivshmem.mem");
    let image = dir.join("x86_64-nvme.img");
    image_with(&image, NVME_PATTERN);
    let disk = dir.join("x86_64-ahci.img");
    image_with(&disk, AHCI_PATTERN);
    let run = Bed::new(Arch::X86_64, "passthrough")
        .initrd("X86_64_BOOT_INITRD")
        .tcg(TcgThreads::Single)
        .cpus(1)
        .ivshmem_file(backing.clone())
        .nvme_image(image.clone())
        .ahci_image(disk.clone())
        .shared_group()
        .timeout(std::time::Duration::from_secs(900))
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.excerpt());
    let ivshmem = run
        .markers("IVSHMEM")
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no ivshmem function\n{}", run.excerpt()));
    three_devices_case(&run, &ivshmem, &backing, &image);
    intx_case(&run, &image);
    error_cases(&run, &ivshmem);
    let _ = std::fs::remove_file(&backing);
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_file(&disk);
}
