//! Scenarios in the x86_64 bed: q35 under TCG with nested AMD SVM + NPT, an Intel
//! vIOMMU with interrupt remapping, and an ivshmem device bound to vfio-pci.

use std::sync::Mutex;

use clap::Parser;
use granule_bed::{bed_available, Arch, Bed};

/// One bed at a time: TCG wants the cores, and timings stay representative.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn x86_probe_sees_svm_npt_and_a_vfio_device() {
    let Some(m) = bed_available(
        "bed_x86_probe_sees_svm_npt_and_a_vfio_device",
        Arch::X86_64.qemu(),
    ) else {
        return;
    };
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let run = Bed::new(Arch::X86_64, "probe")
        .run(&m)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.rc, 0, "{}", run.tail());
    let v = run
        .json("probe")
        .unwrap_or_else(|| panic!("no probe JSON\n{}", run.tail()));
    assert_eq!(v["kvm"]["backend"]["kind"], "svm_npt", "{}", run.tail());
    assert_eq!(v["kvm"]["backend"]["hardware_stage2"], true);
    assert_eq!(v["vfio"]["dev_vfio"], true);
    assert!(v["vfio"]["iommu_groups"].as_u64().unwrap_or(0) > 0);
    let bound = run.markers("VFIO-BOUND");
    assert_eq!(
        bound.len(),
        1,
        "the ivshmem device is bound to vfio-pci\n{}",
        run.tail()
    );
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
    assert_eq!(run.rc, 0, "{}", run.tail());
    for (name, zone, leaf) in [
        ("hugetlb-1g", "size=1G,backing=hugetlb-1g", 1u64 << 30),
        ("hugetlb-2m", "size=512M,backing=hugetlb-2m", 2 << 20),
    ] {
        let r = run
            .json(name)
            .unwrap_or_else(|| panic!("no {name} report\n{}", run.tail()));
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
    assert_eq!(run.rc, 0, "{}", run.tail());
    let results = granule_bed::stress_results(&run, "x86_64", "svm_npt");
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
    let arm: Vec<_> = ["skip", "stop"]
        .map(|m| dir.join(format!("aarch64-stress-{m}.json")))
        .into();
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
