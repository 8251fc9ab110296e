//! Stage-2 prediction vs what KVM reports, on the host's KVM, for each backing.
//!
//! The hugetlb pool is machine-wide state and the mapping count process-wide, so the
//! tests take turns (SERIAL) and the pool is given back (also on failure, by a guard).

// The built-in guest programs exist for x86_64 only so far (arm64 comes with mmu_stress).
#![cfg(target_arch = "x86_64")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use granule_arch::Program;
use granule_vmm::memory::{parse_zone, Backing, ZoneConfig};
use granule_vmm::programs::{self, RunConfig, Verdict};
use granule_vmm::report::{self, Stage2Report};
use granule_vmm::stage2::Reason;

/// The tests here measure process-wide state (mappings, the hugetlb pool): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const K4: u64 = 4 << 10;
const M2: u64 = 2 << 20;

fn run_touch(zone: ZoneConfig) -> Stage2Report {
    let cfg = RunConfig {
        program: Program::Touch,
        vcpus: 2,
        zones: vec![zone],
        timeout: Some(Duration::from_secs(300)),
        progress: false,
    };
    let kvm = common::kvm();
    let s = programs::run(&kvm, &cfg, std::io::sink()).expect("touch runs");
    assert_eq!(s.verdict, Verdict::Ok, "{:?}", s.outcomes);
    assert!(s.pages_touched >= 261_000, "touch covers ~1 GiB");
    s.stage2
}

/// The nominal (pre-run) prediction for the bulk of the zone: (leaf, reason).
fn main_range(r: &Stage2Report) -> (u64, Option<Reason>) {
    let p = r.plan.iter().max_by_key(|p| p.size).expect("a plan");
    (p.leaf, p.reason)
}

fn observed(r: &Stage2Report) -> BTreeMap<u64, u64> {
    r.observed.clone().expect("x86 KVM reports pages_4k/2m/1g")
}

#[test]
fn observed_leaves_match_the_prediction_for_each_backing() {
    if !common::kvm_available("observed_leaves_match_the_prediction_for_each_backing") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // 4 KiB anonymous memory: 4K leaves only, one per touched page.
    let r = run_touch(parse_zone("size=1G,backing=4k").unwrap());
    eprint!("{}", report::render(&r));
    assert_eq!(r.verdict, report::Verdict::Match);
    assert_eq!(r.matches_nominal, Some(true));
    assert_eq!(
        main_range(&r),
        (K4, Some(Reason::Backing { host_page: K4 }))
    );
    let o = observed(&r);
    assert_eq!(o[&M2], 0);
    assert!(o[&K4] >= 261_632, "{o:?}");

    // THP: 2M leaves for every touched 2 MiB block (as far as THP got huge pages,
    // which the report accounts for), a few 4K leaves in the image's block.
    let r = run_touch(parse_zone("size=1G,backing=thp").unwrap());
    eprint!("{}", report::render(&r));
    assert_eq!(r.verdict, report::Verdict::Match);
    assert_eq!(observed(&r)[&M2], r.expected_min[&M2]);
    assert!(
        r.expected_min[&M2] >= 400,
        "THP gave most of 1 GiB as huge pages"
    );
    assert_eq!(main_range(&r).0, M2);
    if r.zones[0].huge == r.zones[0].present {
        assert_eq!(r.matches_nominal, Some(true));
    }

    // hugetlb 2M, prefaulted: every touched block a 2M leaf, exactly.
    {
        let _pool = common::PoolGuard::reserve(512);
        let r = run_touch(parse_zone("size=1G,backing=hugetlb-2m,prefault=on").unwrap());
        eprint!("{}", report::render(&r));
        assert_eq!(r.verdict, report::Verdict::Match);
        assert_eq!(r.matches_nominal, Some(true));
        assert_eq!(main_range(&r).0, M2);
        assert_eq!(observed(&r)[&M2], 511);
        assert!(r.zones[0].prefault_s.is_some());
    }

    // A deliberately misaligned THP layout: predicted 4K because GPA and HVA are not
    // congruent modulo 2 MiB, and observed 4K although the host has huge pages.
    let r = run_touch(parse_zone("size=1G,backing=thp,misalign=4K").unwrap());
    eprint!("{}", report::render(&r));
    assert_eq!(
        main_range(&r),
        (K4, Some(Reason::NotCongruent { align: M2 }))
    );
    assert!(
        r.zones[0].huge.unwrap_or(0) > 0,
        "the host did map huge pages"
    );
    assert_eq!(observed(&r)[&M2], 0);
    assert_eq!(r.verdict, report::Verdict::Match);
}

/// Bad memory configurations fail before the guest starts and leave nothing mapped.
#[test]
fn bad_memory_leaves_nothing_behind() {
    if !common::kvm_available("bad_memory_leaves_nothing_behind") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let kvm = common::kvm();
    let free_1g: u64 = common::free_hugepages(1 << 20);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["size=256M,backing=thp", "size=1G,gpa=0x8000000"],
            "overlap",
        ),
        (vec!["size=1G,gpa=0xc0000000"], "MMIO hole"),
        (
            vec!["size=256M,backing=thp", "size=64T"],
            "exceeds this host's RAM",
        ),
    ];
    // Warm up once so lazily created process state (the console writer's allocator
    // arena, the signal handler) is not counted as left behind.
    let warm_up = RunConfig {
        program: Program::Hello {
            text: String::new(),
        },
        vcpus: 1,
        zones: vec![ZoneConfig::new(64 << 20, Backing::Anon4k)],
        timeout: Some(Duration::from_secs(10)),
        progress: false,
    };
    programs::run(&kvm, &warm_up, std::io::sink()).expect("a good layout runs");
    let before = common::mapped_bytes();
    for (zones, needle) in &cases {
        let cfg = RunConfig {
            program: Program::Hello {
                text: String::new(),
            },
            vcpus: 1,
            zones: zones.iter().map(|z| parse_zone(z).unwrap()).collect(),
            timeout: Some(Duration::from_secs(10)),
            progress: false,
        };
        let err = programs::run(&kvm, &cfg, std::io::sink()).expect_err("bad layout is refused");
        let msg = format!("{err:#}");
        assert!(msg.contains(needle), "{zones:?}: {msg}");
    }
    // A 1 GiB pool smaller than asked for: the error says what is missing and how to fix it.
    let want = free_1g + 1;
    let host_ram = granule_vmm::probe::host_memory();
    if want << 30 < host_ram {
        let cfg = RunConfig {
            program: Program::Hello {
                text: String::new(),
            },
            vcpus: 1,
            zones: vec![
                ZoneConfig::new(256 << 20, Backing::Thp),
                ZoneConfig::new(want << 30, Backing::Hugetlb1g),
            ],
            timeout: Some(Duration::from_secs(10)),
            progress: false,
        };
        let msg = programs::run(&kvm, &cfg, std::io::sink())
            .expect_err("short pool")
            .to_string();
        assert!(
            msg.contains("1 GiB hugetlb pool too small") && msg.contains("more needed"),
            "{msg}"
        );
        assert!(
            msg.contains("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"),
            "{msg}"
        );
    }
    let after = common::mapped_bytes();
    assert!(
        after <= before + (8 << 20),
        "failed set-ups left mappings behind: {before} bytes mapped before, {after} after"
    );
}
