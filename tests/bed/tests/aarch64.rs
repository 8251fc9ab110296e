//! Scenarios in the arm64 bed: `virt` under TCG with virtualization=on (KVM at EL2),
//! GICv3, an SMMUv3 and an ivshmem device bound to vfio-pci.

use std::sync::Mutex;

use granule_bed::{bed_available, Arch, Bed};

static SERIAL: Mutex<()> = Mutex::new(());

fn probe(test: &str, label: &str, cmdline: &str, expected: &str) {
    let Some(m) = bed_available(test, Arch::Aarch64.qemu()) else {
        return;
    };
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let run = Bed::new(Arch::Aarch64, "probe")
        .label(label)
        .cmdline(cmdline)
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.tail());
    let v = run
        .json("probe")
        .unwrap_or_else(|| panic!("no probe JSON\n{}", run.tail()));
    assert_eq!(v["arch"], "aarch64");
    assert_eq!(v["kvm"]["backend"]["kind"], expected, "{}", run.tail());
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
    assert_eq!(run.markers("VFIO-BOUND").len(), 1, "{}", run.tail());
}

#[test]
fn arm64_probe_sees_vhe_and_a_vfio_device() {
    probe(
        "bed_arm64_probe_sees_vhe_and_a_vfio_device",
        "probe-vhe",
        "",
        "arm64_vhe",
    );
}

#[test]
fn arm64_probe_sees_nvhe_when_asked() {
    probe(
        "bed_arm64_probe_sees_nvhe_when_asked",
        "probe-nvhe",
        "kvm-arm.mode=nvhe",
        "arm64_nvhe",
    );
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
        run.tail()
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
        run.tail()
    );
    assert!(
        results.iter().all(|l| l.starts_with("test result: ok.")),
        "{results:?}\n{}",
        run.tail()
    );
    let passed: u64 = results
        .iter()
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    assert!(passed >= 50, "{passed} tests passed inside the bed");
    assert_eq!(run.rc, 0, "{}", run.tail());
}

/// mmu_stress in the arm64 bed, both fault modes, FEAT_FWB recorded; the results are
/// kept in target/bed-logs for the x86 bed test's cross-architecture comparison.
#[test]
fn arm64_stress_both_modes_compare() {
    let Some(m) = bed_available("bed_arm64_stress_both_modes_compare", Arch::Aarch64.qemu()) else {
        return;
    };
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Software-emulated nested faults are slow: a few minutes per bed.
    let run = Bed::new(Arch::Aarch64, "stress")
        .timeout(std::time::Duration::from_secs(900))
        .cmdline("granule.stress_mem=1")
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.tail());
    let results = granule_bed::stress_results(&run, "aarch64", "arm64_vhe");
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
    assert!(
        table.contains("aarch64/arm64_vhe 4k skip") && table.contains("aarch64/arm64_vhe 4k stop"),
        "{table}"
    );
}
