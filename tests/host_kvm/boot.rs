//! `granule run --kernel` on the host: every way a kernel file or boot option can be
//! wrong gets a clear error before the guest runs. (This host's KVM cannot run Linux;
//! real boots are tested in the x86 bed, tests/bed/tests/x86_64.rs.)
#![cfg(target_arch = "x86_64")]

mod common;

use common::{granule, Scratch};

/// A bzImage-looking file: the real kernel the beds use when it is there, else a
/// minimal header (enough for the truncation check).
fn kernel_bytes() -> Vec<u8> {
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/bed/manifest.env");
    if let Ok(text) = std::fs::read_to_string(manifest) {
        if let Some(path) = text.lines().find_map(|l| l.strip_prefix("X86_64_KERNEL=")) {
            if let Ok(b) = std::fs::read(path) {
                return b;
            }
        }
    }
    common::minimal_bzimage()
}

#[test]
fn bad_kernel_files_get_a_clear_error_naming_the_file() {
    if !common::kvm_available("boot_bad_kernel_files_get_a_clear_error_naming_the_file") {
        return;
    }
    let dir = Scratch::new("boot-bad-kernels");
    let full = kernel_bytes();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("empty", vec![], "the kernel file is empty"),
        (
            "truncated",
            full[..full.len() / 2].to_vec(),
            "the bzImage is truncated",
        ),
        (
            "script",
            b"#!/bin/sh\necho not a kernel\n".to_vec(),
            "not a Linux kernel",
        ),
        (
            "elf-arm",
            {
                let mut e = vec![0u8; 128];
                e[..4].copy_from_slice(b"\x7fELF");
                e[4] = 2;
                e[5] = 1;
                e[16] = 2;
                e[18] = 183; // aarch64
                e
            },
            "not x86_64",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.file(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, out, err) = granule(&["run", "--kernel", &path, "--timeout", "5"]);
        assert_eq!(code, 1, "{name}: {err}");
        assert!(err.contains(want) && err.contains(&path), "{name}: {err}");
        assert!(out.is_empty(), "{name}: no guest ran: {out}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    // A FIFO nobody writes, and a directory: refused at once, never waited on.
    let fifo = dir.file("fifo");
    let c = std::ffi::CString::new(fifo.clone()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (what, path) in [("kernel", &fifo), ("kernel", &dir.file(""))] {
        let (code, _, err) = granule(&["run", "--kernel", path, "--timeout", "5"]);
        assert_eq!(code, 1, "{path}: {err}");
        assert!(
            err.contains(&format!("the {what}")) && err.contains("not a regular file"),
            "{err}"
        );
    }
    let kernel = dir.file("good");
    std::fs::write(&kernel, &full).unwrap();
    let (code, _, err) = granule(&["run", "--kernel", &kernel, "--initrd", &fifo]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("initramfs") && err.contains("not a regular file"),
        "{err}"
    );
    let missing = dir.file("missing");
    let (code, _, err) = granule(&["run", "--kernel", &missing]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read the kernel") && err.contains(&missing),
        "{err}"
    );
}

#[test]
fn bad_boot_options_are_refused() {
    if !common::kvm_available("boot_bad_boot_options_are_refused") {
        return;
    }
    let dir = Scratch::new("boot-bad-options");
    let kernel = dir.file("vmlinuz");
    std::fs::write(&kernel, kernel_bytes()).unwrap();
    let long = "x".repeat(5000);
    let (code, _, err) = granule(&["run", "--kernel", &kernel, "--cmdline", &long]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("command line is 5000 bytes"), "{err}");
    let empty = dir.file("empty.cpio");
    std::fs::write(&empty, b"").unwrap();
    let (code, _, err) = granule(&["run", "--kernel", &kernel, "--initrd", &empty]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("initramfs") && err.contains("empty"), "{err}");
    let foreign = dir.file("notes.txt");
    std::fs::write(&foreign, b"shopping list\n").unwrap();
    let (code, _, err) = granule(&["run", "--kernel", &kernel, "--initrd", &foreign]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("the initramfs {foreign} is not a cpio archive"))
            && err.contains("73686f707069"),
        "{err}"
    );
    // Usage errors: a program together with a kernel, an initrd without one (also when
    // a program is named), a built-in program's option with a kernel.
    let (code, _, err) = granule(&["run", "hello", "--kernel", &kernel]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = granule(&["run", "--initrd", &empty]);
    assert_eq!(code, 2, "{err}");
    for args in [
        &["run", "hello", "--initrd", &empty][..],
        &["run", "hello", "--cmdline", "quiet"],
        &["run", "--kernel", &kernel, "--text", "hi"],
        &["run", "--kernel", &kernel, "--port", "0x60"],
        &["run", "--kernel", &kernel, "--gpa", "0x1000"],
        &["run", "hello", "--boot-marker", "READY"],
    ] {
        let (code, _, err) = granule(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("cannot be used with"), "{args:?}: {err}");
    }
    // A boot marker must be one line of sensible length.
    let long_marker = "m".repeat(300);
    for (marker, want) in [
        ("", "the boot marker is empty"),
        ("READY\nGO", "spans lines"),
        (long_marker.as_str(), "300 bytes; at most 256"),
    ] {
        let (code, _, err) = granule(&["run", "--kernel", &kernel, "--boot-marker", marker]);
        assert_eq!(code, 2, "{marker:?}: {err}");
        assert!(err.contains(want), "{marker:?}: {err}");
    }
    // RAM that does not start at 0 cannot hold a Linux kernel.
    let (code, _, err) = granule(&["run", "--kernel", &kernel, "-m", "size=1G,gpa=0x40000000"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("guest-physical 0"), "{err}");
}

/// `--device vfio,...` is checked against this host's sysfs before the guest runs:
/// a missing device, a device on a host without an IOMMU (this machine has PCI
/// functions but no IOMMU groups), a device named twice, a device without a kernel.
#[test]
fn passthrough_devices_are_checked_before_the_guest_runs() {
    if !common::kvm_available("boot_passthrough_devices_are_checked_before_the_guest_runs") {
        return;
    }
    let dir = Scratch::new("boot-vfio");
    let kernel = dir.file("vmlinuz");
    std::fs::write(&kernel, kernel_bytes()).unwrap();
    let run =
        |device: &str| granule(&["run", "--kernel", &kernel, "-m", "128M", "--device", device]);
    let (code, _, err) = run("vfio,0000:ff:1f.7");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no PCI device 0000:ff:1f.7") && err.contains("lspci"),
        "{err}"
    );
    // The first PCI function of this host, and what its IOMMU group says.
    let first = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()
        .and_then(|d| d.filter_map(Result::ok).map(|e| e.file_name()).min())
        .map(|n| n.to_string_lossy().into_owned());
    if let Some(bdf) = first {
        let grouped = std::path::Path::new("/sys/bus/pci/devices")
            .join(&bdf)
            .join("iommu_group")
            .exists();
        let (code, _, err) = run(&format!("vfio,path=/sys/bus/pci/devices/{bdf}"));
        assert_eq!(code, 1, "{err}");
        let says = if grouped {
            "driver_override"
        } else {
            "intel_iommu=on"
        };
        assert!(err.contains(&bdf) && err.contains(says), "{err}");
    }
    let (code, _, err) = granule(&[
        "run",
        "--kernel",
        &kernel,
        "--device",
        "vfio,0000:00:02.0",
        "--device",
        "vfio,path=/sys/bus/pci/devices/0000:00:02.0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("names PCI device 0000:00:02.0 twice"), "{err}");
    // Passthrough is for Linux guests; the built-in programs have no PCI bus.
    let (code, _, err) = granule(&["run", "hello", "--device", "vfio,0000:00:02.0"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = granule(&[
        "run",
        "--kernel",
        &kernel,
        "--device",
        "virtio,0000:00:02.0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown device type 'virtio'"), "{err}");
}
