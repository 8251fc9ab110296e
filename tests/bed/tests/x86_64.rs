//! Scenarios in the x86_64 bed: q35 under TCG with nested AMD SVM + NPT, an Intel
//! vIOMMU with interrupt remapping, and an ivshmem device bound to vfio-pci.

use std::sync::Mutex;

use clap::Parser;
use granule_bed::{
    assert_boot_marker_timed, assert_boot_timer_fired, bed_available, boot_case, guest_facts,
    kernel_warnings, Arch, Bed, TcgThreads,
};

/// One bed at a time: TCG wants the cores, and timings stay representative.
static SERIAL: Mutex<()> = Mutex::new(());

/// `granule probe` in the bed: SVM with NPT, /dev/vfio, the ivshmem device bound to
/// vfio-pci with its 1 GiB BAR able to take 1G leaves.
fn check_probe(run: &granule_bed::BedRun) {
    let v = run
        .json("probe")
        .unwrap_or_else(|| panic!("no probe JSON\n{}", run.excerpt()));
    assert_eq!(v["kvm"]["backend"]["kind"], "svm_npt", "{}", run.excerpt());
    assert_eq!(v["kvm"]["backend"]["hardware_stage2"], true);
    assert_eq!(v["vfio"]["dev_vfio"], true);
    // Linux 6.12 on x86_64: PUD and PMD PFN maps.
    assert_eq!(v["pfnmap_max_leaf"], 1u64 << 30, "{v}");
    assert!(v["vfio"]["iommu_groups"].as_u64().unwrap_or(0) > 0);
    let bound = run.markers("VFIO-BOUND");
    assert_eq!(
        bound.len(),
        1,
        "the ivshmem device is bound to vfio-pci\n{}",
        run.excerpt()
    );
    // probe lists it, with its 1 GiB BAR 2 able to take 1G leaves.
    let devices = v["vfio"]["devices"].as_array().cloned().unwrap_or_default();
    assert_eq!(devices.len(), 1, "{}", v["vfio"]);
    let bar2 = devices[0]["bars"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["index"] == 2).cloned())
        .unwrap_or_default();
    assert_eq!(bar2["size"], 1u64 << 30, "{}", devices[0]);
    assert_eq!(bar2["kind"], "mem64");
    assert_eq!(bar2["max_leaf"], 1u64 << 30, "{}", devices[0]);
    assert!(devices[0]["iommu_group"].is_u64(), "{}", devices[0]);
}

/// `granule plan` on this host (the same code path as the CLI) for one zone on x86 TDP.
fn planned_leaves(zone: &str) -> std::collections::BTreeMap<u64, u64> {
    let cli = granule_vmm::cli::Cli::try_parse_from([
        "granule",
        "plan",
        "--mmu",
        "tdp",
        "--max-leaf",
        "1G",
        "-m",
        zone,
    ])
    .expect("plan arguments");
    let granule_vmm::cli::Command::Plan(args) = cli.command else {
        unreachable!()
    };
    let out = granule_vmm::plan_command::run(&args).expect("plan");
    // touch writes every page of the zone, so each planned leaf gets mapped once.
    let mut counts = std::collections::BTreeMap::new();
    for r in &out.plan {
        *counts.entry(r.leaf).or_insert(0) += r.size / r.leaf;
    }
    counts
}

/// Real TDP stage 2: hugetlb 1G and 2M backings, observed leaves equal to the plan.
#[test]
fn x86_touch_with_hugetlb_matches_granule_plan() {
    let Some(m) = bed_available(
        "bed_x86_touch_with_hugetlb_matches_granule_plan",
        Arch::X86_64.qemu(),
    ) else {
        return;
    };
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // 4 GiB so the guest kernel finds a free, aligned gigabyte for the 1G pool.
    let run = Bed::new(Arch::X86_64, "touch-hugetlb")
        .memory("4G")
        .cmdline("hugepagesz=1G hugepages=1 hugepagesz=2M hugepages=300")
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.excerpt());
    for (name, zone, leaf) in [
        ("hugetlb-1g", "size=1G,backing=hugetlb-1g", 1u64 << 30),
        ("hugetlb-2m", "size=512M,backing=hugetlb-2m", 2 << 20),
    ] {
        let r = run
            .json(name)
            .unwrap_or_else(|| panic!("no {name} report\n{}", run.excerpt()));
        assert_eq!(r["target"]["mmu"], "x86_tdp", "{r}");
        assert_eq!(r["verdict"], "match", "{name}: {r}");
        let planned = planned_leaves(zone);
        let observed = r["observed"][leaf.to_string()].as_u64().unwrap_or(0);
        assert_eq!(
            Some(&observed),
            planned.get(&leaf),
            "{name}: observed vs granule plan {planned:?}"
        );
        assert!(observed > 0);
    }
}

/// mmu_stress on real nested TDP, both fault modes; the results go through
/// `granule stress compare` on the host into one table and chart.
#[test]
fn x86_stress_both_modes_compare() {
    let Some(m) = bed_available("bed_x86_stress_both_modes_compare", Arch::X86_64.qemu()) else {
        return;
    };
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Software-emulated nested faults are slow: a few minutes per bed.
    let run = Bed::new(Arch::X86_64, "stress")
        .timeout(std::time::Duration::from_secs(900))
        .memory("4G")
        .cmdline("granule.stress_mem=1")
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.excerpt());
    let results = granule_bed::stress_results(&run, "x86_64", "svm_npt", &["skip", "stop"]);
    for (v, _) in &results {
        // Hardware stage 2: 4K backing gives 4K leaves, one per page, as predicted
        // (plus the program image's own pages in slot 0).
        let r = &v["runs"][0];
        let p4 = r["predicted_run1"]["pages_4k"].as_u64().unwrap_or(0);
        let o4 = r["stats"]["run1"]["pages_4k"].as_u64().unwrap_or(0);
        assert_eq!(p4, 262_144, "{r}");
        assert!(o4 >= p4 && o4 <= p4 + 512, "observed {o4}, predicted {p4}");
    }
    let files: Vec<_> = results.into_iter().map(|(_, f)| f).collect();
    let dir = granule_bed::logs_dir();
    let svg = dir.join("x86_64-stress-compare.svg");
    let table = granule_vmm::stress_command::compare(&files, &svg).expect("stress compare");
    assert!(
        table.contains("x86_64/svm_npt 4k skip") && table.contains("x86_64/svm_npt 4k stop"),
        "{table}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    eprintln!("{table}");
    // x86 vs arm64 side by side, when the arm64 bed ran first (cargo runs aarch64.rs
    // before x86_64.rs), as one table and chart.
    let arm = [dir.join("aarch64-stress-skip.json")];
    if arm.iter().all(|f| f.exists()) {
        let all: Vec<_> = files.iter().chain(&arm).collect();
        let both =
            granule_vmm::stress_command::compare(&all, &dir.join("stress-x86_64-vs-aarch64.svg"))
                .expect("compare");
        assert!(
            both.contains("aarch64/arm64_vhe 4k skip") && both.contains("x86_64/svm_npt 4k skip"),
            "{both}"
        );
        eprintln!("{both}");
    }
}

/// Requested guest RAM minus what the E820 map reserves below 1 MiB (EBDA to 1 MiB).
fn guest_visible_ram(requested: u64) -> u64 {
    use granule_arch::x86_64::boot::layout::{EBDA_START, HIMEM_START};
    requested - (HIMEM_START - EBDA_START)
}

/// The probe, then `granule run --kernel` boots the bed's Debian 6.12 kernel on real
/// nested SVM+NPT: bzImage and ELF, 1 and 2 vCPUs, the console both ways, poweroff,
/// reboot, panic (and a panic line that is not a panic), a stdout nobody reads, the PCI
/// host bridge, the boot timer and the stage-2 share with hugetlb backing. One bed boot
/// serves both. Every case runs once, in a bed with one vCPU: with two, no VMM boots a
/// 2-vCPU guest reliably in this bed (README, "How the test beds run").
#[test]
fn x86_probe_and_linux_boots() {
    let Some(m) = bed_available("bed_x86_probe_and_linux_boots", Arch::X86_64.qemu()) else {
        return;
    };
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Eight cases of at most 120 s each (granule's --timeout; the never-read case is
    // killed at 180 s), plus the bed's own boot.
    let run = Bed::new(Arch::X86_64, "probe")
        .label("probe-boot")
        .initrd("X86_64_BOOT_INITRD")
        .tcg(TcgThreads::Single)
        .cpus(1)
        .timeout(std::time::Duration::from_secs(1200))
        .cmdline(
            "hugepagesz=2M hugepages=300 \
             granule.boot_cases=1cpu,2cpu-stdin,2cpu-hugetlb,reboot,panic,fake-panic,\
             never-read,guest-decompress",
        )
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.excerpt());
    check_probe(&run);
    check_first_boot(&run);
    check_other_cases(&run);
    check_never_read(&run);
}

/// bzImage, 1 vCPU, poweroff; the PCI host bridge and ECAM as the kernel sees them.
fn check_first_boot(run: &granule_bed::BedRun) {
    let ram = 256u64 << 20;
    // bzImage, 1 vCPU, poweroff: exit 0, the guest sees 1 CPU and the RAM asked for.
    let c = boot_case(run, "1cpu");
    assert_eq!(c.rc, 0, "poweroff exits 0\n{}\n{}", c.out, c.err);
    assert_eq!(guest_facts(&c.out), (1, guest_visible_ram(ram)));
    assert_eq!(c.json["end"]["kind"], "power_off", "{}", c.json);
    assert_eq!(c.json["format"], "bz_image");
    // The first boot of the bzImage: its kernel decompressed on the host and cached.
    let d = &c.json["decompression"];
    assert_eq!(d["by"], "host", "{d}");
    assert_eq!(d["cache"]["kind"], "stored", "{d}");
    assert!(c.err.contains("decompressed on the host"), "{}", c.err);
    assert_boot_timer_fired(&c);
    assert_boot_marker_timed(&c);
    // `-m 256M` without backing=: THP in this bed (its THP mode is `always`), so most
    // of what the guest touched sits in 2 MiB leaves (with 4K it was none).
    let zone = &c.json["stage2"]["zones"][0];
    assert_eq!(zone["backing"], "thp", "{zone}");
    let share = &c.json["stage2_share"];
    assert!(share["huge_share"].as_f64().unwrap_or(0.0) > 0.5, "{share}");
    assert!(c.err.contains("guest userspace"), "{}", c.err);
    // The PCI host bridge is enumerated (through ECAM from the MCFG table) and the kernel
    // has no warning about PCI, ACPI or the windows.
    assert!(
        c.out
            .contains("GRANULE-GUEST: PCI 0000:00:00.0 0x1b36:0x0008 class=0x060000"),
        "{}",
        c.out
    );
    let warnings = kernel_warnings(&c.out);
    assert!(warnings.is_empty(), "{warnings:#?}");
    // The kernel takes ECAM from MCFG and finds it reserved by the firmware.
    let ecam: Vec<&str> = c
        .out
        .lines()
        .filter(|l| l.contains("GRANULE-GUEST: KERNEL-ECAM"))
        .collect();
    assert!(
        ecam.iter().any(|l| l.contains("0xe0000000")
            && l.contains("reserved")
            && !l.contains("not reserved")),
        "{ecam:#?}"
    );
}

/// The cases after the first: 2 vCPUs with stdin, hugetlb, reboot, panic, fake panic,
/// the guest's own decompressor.
fn check_other_cases(run: &granule_bed::BedRun) {
    let ram = 256u64 << 20;
    // bzImage, 2 vCPUs (4K-backed): a line on granule's stdin runs in the guest's shell.
    let c = boot_case(run, "2cpu-stdin");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    assert_eq!(guest_facts(&c.out), (2, guest_visible_ram(ram)));
    assert!(
        c.out.contains("STDIN-REACHED-42"),
        "the shell did not run the line from stdin:\n{}",
        c.out
    );
    // The second boot of the same bzImage: the vmlinux from the cache.
    let d = &c.json["decompression"];
    assert_eq!(d["cache"]["kind"], "hit", "{d}");

    // ELF vmlinux, 2 vCPUs, hugetlb 2M: mapped guest RAM is (nearly) all in 2M leaves.
    let c = boot_case(run, "2cpu-hugetlb");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    assert_eq!(c.json["format"], "elf");
    assert_eq!(guest_facts(&c.out).0, 2);
    let share = &c.json["stage2_share"];
    assert_eq!(
        share["mapped_bytes"]["4096"], 0,
        "no 4K leaves on hugetlb: {share}"
    );
    assert!(
        share["huge_share"].as_f64().unwrap_or(0.0) >= 1.0,
        "{share}"
    );
    assert_eq!(c.json["stage2"]["verdict"], "match", "{}", c.json["stage2"]);

    // A reboot (Linux's default: the ACPI reset register) ends the VM with exit 0.
    let c = boot_case(run, "reboot");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    assert_eq!(c.json["end"]["kind"], "reboot", "{}", c.json);
    assert_eq!(c.json["end"]["via"], "ACPI reset register");
    assert!(c.err.contains("asked to reboot"), "{}", c.err);

    // A kernel panic, signalled by the guest's pvpanic driver: non-zero exit, the
    // console's panic line as the reason.
    let c = boot_case(run, "panic");
    assert_eq!(c.rc, 3, "{}\n{}", c.out, c.err);
    assert_eq!(c.json["end"]["kind"], "panic");
    assert_eq!(c.json["end"]["via"], "pvpanic", "{}", c.json["end"]);
    let reason = c.json["end"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("sysrq triggered crash"), "{reason}");
    assert!(c.err.contains("panicked"), "{}", c.err);

    // A panic line printed by the guest's init is only text: the guest then powers
    // off, and that is how the run ends.
    let c = boot_case(run, "fake-panic");
    assert!(
        c.out.contains("Kernel panic - not syncing: printed by"),
        "{}",
        c.out
    );
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    assert_eq!(c.json["end"]["kind"], "power_off", "{}", c.json["end"]);

    // The bzImage's own decompressor in the guest, when asked for.
    let c = boot_case(run, "guest-decompress");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    assert_eq!(c.json["decompression"]["by"], "guest", "{}", c.json);
    assert_eq!(c.json["end"]["kind"], "power_off", "{}", c.json["end"]);
    assert_boot_timer_fired(&c);
}

/// A stdout nobody reads (a FIFO whose pipe fills): the 2-vCPU guest floods the
/// console and powers off all the same, and what never got out is counted, not
/// silently lost. A granule that blocked on the FIFO would stall the guest's
/// console and end by --timeout (exit 5) or be killed (137).
fn check_never_read(run: &granule_bed::BedRun) {
    let c = boot_case(run, "never-read");
    assert_eq!(c.rc, 0, "{}", c.err);
    assert_eq!(c.json["end"]["kind"], "power_off", "{}", c.json["end"]);
    let console = &c.json["console"];
    let lost = console["unwritten_bytes"].as_u64().unwrap_or(0)
        + console["dropped_bytes"].as_u64().unwrap_or(0);
    assert!(lost > 0, "the FIFO cannot have taken it all: {console}");
    assert!(c.err.contains("console output lost"), "{}", c.err);
}
