//! Scenarios in the arm64 bed: `virt` under TCG with virtualization=on (KVM at EL2),
//! GICv3, an SMMUv3 and an ivshmem device bound to vfio-pci.

use std::sync::Mutex;

use granule_bed::{
    assert_boot_marker_timed, assert_boot_timer_fired, bed_available, boot_case, guest_facts,
    kernel_warnings, Arch, Bed,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// Boots the bed in one KVM mode (with the Linux-boot payload), runs `granule probe`
/// and then the boot scenario's `cases`; checks the probe and returns the run for
/// the cases' own checks. None when the bed is not available (the test then skips).
fn probe_and_boot(
    test: &str,
    label: &str,
    cmdline: &str,
    expected: &str,
    cases: &str,
) -> Option<granule_bed::BedRun> {
    let m = bed_available(test, Arch::Aarch64.qemu())?;
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // At most 120 s per boot case (granule's --timeout), plus the bed's own boot.
    let run = Bed::new(Arch::Aarch64, "probe")
        .label(label)
        .initrd("AARCH64_BOOT_INITRD")
        .timeout(std::time::Duration::from_secs(900))
        .cmdline(&format!("{cmdline} granule.boot_cases={cases}"))
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.excerpt());
    let v = run
        .json("probe")
        .unwrap_or_else(|| panic!("no probe JSON\n{}", run.excerpt()));
    assert_eq!(v["arch"], "aarch64");
    assert_eq!(v["kvm"]["backend"]["kind"], expected, "{}", run.excerpt());
    assert!(
        v["kvm"]["backend"]["detected_by"]
            .as_str()
            .unwrap_or("")
            .contains("kernel log"),
        "the mode comes from the kernel's own log line: {v}"
    );
    assert_eq!(v["vfio"]["dev_vfio"], true);
    // Linux 6.12 on arm64: PMD PFN maps only.
    assert_eq!(v["pfnmap_max_leaf"], 2u64 << 20, "{v}");
    assert_eq!(run.markers("VFIO-BOUND").len(), 1, "{}", run.excerpt());
    Some(run)
}

/// 2 vCPUs (the second started with PSCI CPU_ON): the guest sees both and exactly the
/// RAM given, a line on granule's stdin runs in its shell, PSCI SYSTEM_OFF exits 0,
/// the boot timer fired and the kernel printed no device-tree or PCI warning.
fn check_two_vcpus_and_stdin(run: &granule_bed::BedRun) {
    let c = boot_case(run, "2cpu-stdin");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    assert_eq!(guest_facts(&c.out), (2, 256 << 20), "{}", c.out);
    assert!(
        c.out.contains("STDIN-REACHED-42"),
        "the shell did not run the line from stdin:\n{}",
        c.out
    );
    assert_eq!(c.json["end"]["kind"], "power_off", "{}", c.json);
    assert_eq!(c.json["format"], "image");
    assert_boot_timer_fired(&c);
    assert_boot_marker_timed(&c);
    let warnings = kernel_warnings(&c.out);
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// VHE (the bed's default): the probe, then granule boots the bed's Debian 6.12 arm64
/// kernel: the Image and the Image.gz, 1 and 2 vCPUs, the console both ways, PSCI
/// poweroff and reset, a panic (the bed's kernel has no pvpanic driver, so the panic
/// line and the reset after it), the boot timer and the stage-2 prediction with
/// hugetlb backing. Every case runs once. (A panic line that is not a panic is judged
/// by the same code as on x86, whose bed runs that case; the PSCI side of it is a unit
/// test in linux/ending.rs.)
#[test]
fn arm64_vhe_probe_and_linux_boots() {
    let Some(run) = probe_and_boot(
        "bed_arm64_vhe_probe_and_linux_boots",
        "probe-vhe",
        "hugepagesz=2M hugepages=300",
        "arm64_vhe",
        "2cpu-stdin,2cpu-hugetlb,reboot,panic",
    ) else {
        return;
    };
    check_two_vcpus_and_stdin(&run);
    check_other_cases(&run);
}

/// nVHE (`kvm-arm.mode=nvhe`): the probe sees the mode, and a 2-vCPU Linux boots.
#[test]
fn arm64_nvhe_probe_and_linux_boot() {
    let Some(run) = probe_and_boot(
        "bed_arm64_nvhe_probe_and_linux_boot",
        "probe-nvhe",
        "kvm-arm.mode=nvhe",
        "arm64_nvhe",
        "2cpu-stdin",
    ) else {
        return;
    };
    check_two_vcpus_and_stdin(&run);
}

/// granule's aarch64 unit and integration test binaries, run inside the bed on its
/// /dev/kvm (those that exist for aarch64 so far).
#[test]
fn arm64_granule_tests_pass_inside_the_bed() {
    let Some(m) = bed_available(
        "bed_arm64_granule_tests_pass_inside_the_bed",
        Arch::Aarch64.qemu(),
    ) else {
        return;
    };
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let run = Bed::new(Arch::Aarch64, "selftests")
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    let binaries = run.markers("TEST");
    assert!(
        binaries.len() >= 4,
        "test binaries found: {binaries:?}\n{}",
        run.excerpt()
    );
    let results: Vec<&str> = run
        .text
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect();
    assert_eq!(
        results.len(),
        binaries.len(),
        "one result per binary\n{}",
        run.excerpt()
    );
    assert!(
        results.iter().all(|l| l.starts_with("test result: ok.")),
        "{results:?}\n{}",
        run.excerpt()
    );
    let passed: u64 = results
        .iter()
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    assert!(passed >= 50, "{passed} tests passed inside the bed");
    assert_eq!(run.rc, 0, "{}", run.excerpt());
}

/// mmu_stress in the arm64 bed, FEAT_FWB recorded; the result is kept in
/// target/bed-logs for the x86 bed test's cross-architecture comparison. Only the skip
/// mode: stop mode (the same fault decoding, then a wait) runs in the x86 bed and on
/// the host, and another 5 minutes of TCG here would take CI past its time budget.
#[test]
fn arm64_stress_skip_compare() {
    let Some(m) = bed_available("bed_arm64_stress_skip_compare", Arch::Aarch64.qemu()) else {
        return;
    };
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Software-emulated nested faults are slow: a few minutes per bed.
    let run = Bed::new(Arch::Aarch64, "stress")
        .timeout(std::time::Duration::from_secs(900))
        .cmdline("granule.stress_mem=1 granule.stress_modes=skip")
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.excerpt());
    let results = granule_bed::stress_results(&run, "aarch64", "arm64_vhe", &["skip"]);
    for (v, _) in &results {
        assert!(
            v["host"]["fwb"].is_boolean(),
            "FEAT_FWB is recorded: {}",
            v["host"]
        );
        assert!(v["runs"][0]["guest_fwb"].is_boolean());
    }
    let skipped = results[0].0["runs"][0]["efaults"].as_u64().unwrap_or(0);
    assert!(skipped > 1000, "PC += 4 skipped every store: {skipped}");
    let files: Vec<_> = results.into_iter().map(|(_, f)| f).collect();
    let dir = granule_bed::logs_dir();
    let table =
        granule_vmm::stress_command::compare(&files, &dir.join("aarch64-stress-compare.svg"))
            .expect("compare");
    assert!(table.contains("aarch64/arm64_vhe 4k skip"), "{table}");
}

/// The VHE run's cases besides 2cpu-stdin.
fn check_other_cases(run: &granule_bed::BedRun) {
    // The Image.gz (decompressed by granule), 2 vCPUs, hugetlb 2M: RAM predicted in 2M
    // leaves, hugetlb-backed on the host. arm64 KVM has no leaf statistics and this
    // kernel no stage-2 page-table dump, so the report must say "predicted only"; on a
    // kernel that shows the leaves, they must match.
    let c = boot_case(run, "2cpu-hugetlb");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    assert_eq!(c.json["format"], "image_gz");
    assert_eq!(guest_facts(&c.out).0, 2);
    let s2 = &c.json["stage2"];
    assert_eq!(s2["plan"][0]["leaf"], 2u64 << 20, "{s2}");
    assert_eq!(s2["plan"][0]["gpa"], 1u64 << 30, "RAM starts at 1 GiB");
    let hugetlb = s2["zones"][0]["smaps"]["private_hugetlb"]
        .as_u64()
        .unwrap_or(0)
        + s2["zones"][0]["smaps"]["shared_hugetlb"]
            .as_u64()
            .unwrap_or(0);
    assert!(hugetlb > 0, "hugetlb pages back the zone: {s2}");
    let verdict = if s2["observed"].is_null() {
        "predicted_only"
    } else {
        "match"
    };
    assert_eq!(s2["verdict"], verdict, "{s2}");

    // 1 vCPU, PSCI SYSTEM_RESET: the VM ends with exit 0.
    let c = boot_case(run, "reboot");
    assert_eq!(c.rc, 0, "{}\n{}", c.out, c.err);
    assert_eq!(guest_facts(&c.out), (1, 256 << 20), "{}", c.out);
    assert_eq!(c.json["end"]["kind"], "reboot", "{}", c.json);
    assert_eq!(c.json["end"]["via"], "PSCI SYSTEM_RESET");
    assert!(c.err.contains("asked to reboot"), "{}", c.err);

    // A kernel panic with panic=-1: the panic line, then PSCI SYSTEM_RESET.
    let c = boot_case(run, "panic");
    assert_eq!(c.rc, 3, "{}\n{}", c.out, c.err);
    assert_eq!(c.json["end"]["kind"], "panic", "{}", c.json["end"]);
    assert_eq!(
        c.json["end"]["via"], "the console's panic line and the reset after it",
        "{}",
        c.json["end"]
    );
    let reason = c.json["end"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("sysrq triggered crash"), "{reason}");
    assert!(c.err.contains("panicked"), "{}", c.err);
}
