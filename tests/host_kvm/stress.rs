//! `granule stress` on the host's KVM: both fault modes, stage-2 leaves after run 1 as
//! the planner predicts, bounded failure, clear errors, and `stress compare`.

// The stress workload exists for x86_64 only so far.
#![cfg(target_arch = "x86_64")]

mod common;

use std::time::{Duration, Instant};

use common::granule;

/// Checks the upstream line: five `name = S.NNNNNNNNNs` fields in order.
fn assert_upstream_line(line: &str) {
    let names = ["run1", "reset", "run2", "ro", "rw"];
    let parts: Vec<&str> = line.split(", ").collect();
    assert_eq!(parts.len(), 5, "{line}");
    for (p, n) in parts.iter().zip(names) {
        let v = p
            .strip_prefix(&format!("{n} = "))
            .unwrap_or_else(|| panic!("{line}"));
        let (s, ns) = v
            .strip_suffix('s')
            .and_then(|v| v.split_once('.'))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            s.parse::<u64>().is_ok() && ns.len() == 9 && ns.parse::<u64>().is_ok(),
            "{line}"
        );
    }
}

fn run_json(args: &[&str], file: &str) -> serde_json::Value {
    let mut all = vec!["stress", "--quiet", "--json", file];
    all.extend_from_slice(args);
    let (code, out, err) = granule(&all);
    assert_eq!(code, 0, "{args:?}: {err}");
    // One upstream line per run on stdout.
    for line in out.lines() {
        assert_upstream_line(line);
    }
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// pages_* after run 1 vs the planner: huge leaves exactly; 4K leaves may exceed the
/// prediction by the program image's own pages in slot 0.
fn assert_run1_as_predicted(v: &serde_json::Value) {
    let run = &v["runs"][0];
    let (pred, obs) = (&run["predicted_run1"], &run["stats"]["run1"]);
    assert_eq!(obs["pages_2m"], pred["pages_2m"], "{run}");
    assert_eq!(obs["pages_1g"], pred["pages_1g"], "{run}");
    let (p4, o4) = (
        pred["pages_4k"].as_u64().unwrap(),
        obs["pages_4k"].as_u64().unwrap(),
    );
    assert!(
        o4 >= p4 && o4 <= p4 + 512,
        "4K leaves {o4}, predicted {p4}: {run}"
    );
}

#[test]
fn stress_runs_in_both_modes_and_compares() {
    if !common::kvm_available("stress_runs_in_both_modes_and_compares") {
        return;
    }
    let dir = common::Scratch::new("stress");
    let (skip, stop, thp) = (
        dir.file("skip.json"),
        dir.file("stop.json"),
        dir.file("thp.json"),
    );

    // The configuration, 4 KiB backing, both fault modes.
    let v = run_json(
        &["-c", "2", "-m", "4", "-s", "1", "--on-fault", "skip"],
        &skip,
    );
    assert_eq!(v["config"]["on_fault"], "skip");
    assert_eq!(v["config"]["slots"], 4);
    assert_run1_as_predicted(&v);
    assert_eq!(
        v["runs"][0]["predicted_run1"]["pages_4k"],
        1u64 << 20,
        "4 GiB of 4K pages"
    );
    assert!(
        v["runs"][0]["efaults"].as_u64().unwrap() > 1000,
        "skip mode faults on every page"
    );
    // granule's own memory, besides the 1 GiB chunk the guest wrote (4K pages).
    let f = &v["runs"][0]["footprint"];
    assert!(
        f["guest_resident_bytes"].as_u64().unwrap_or(0) >= 1 << 30,
        "{f}"
    );
    assert!(
        f["vmm_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0 && b < 256 << 20),
        "{f}"
    );
    let v = run_json(
        &["-c", "2", "-m", "4", "-s", "1", "--on-fault", "stop"],
        &stop,
    );
    assert_eq!(v["config"]["on_fault"], "stop");
    assert_run1_as_predicted(&v);
    let faults = v["runs"][0]["efaults"].as_u64().unwrap();
    assert!(
        (1..1000).contains(&faults),
        "stop mode stops at the first fault: {faults}"
    );
    for phase in ["run1", "reset", "run2", "ro", "rw"] {
        assert!(
            v["runs"][0]["phases"][phase].as_f64().unwrap() > 0.0,
            "{phase}"
        );
        assert!(
            v["runs"][0]["stats"][phase]["pages_4k"].is_u64(),
            "stats after {phase}"
        );
    }
    assert!(v["host"]["backend"].is_string() && v["host"]["kernel"].is_string());

    // THP under 2 MiB guest pages: every aliased 2 MiB block a 2M leaf after run 1, as
    // predicted (under shadow paging the guest's page size bounds the leaf too).
    let v = run_json(
        &[
            "-c",
            "2",
            "-m",
            "2",
            "-s",
            "1",
            "--backing",
            "thp",
            "--guest-page",
            "2M",
            "--repeat",
            "2",
        ],
        &thp,
    );
    assert_eq!(v["config"]["guest_page"], 2 << 20);
    assert_run1_as_predicted(&v);
    assert_eq!(v["runs"][0]["predicted_run1"]["pages_2m"], 1024);
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);

    // compare: one table, one chart.
    let svg = dir.file("chart.svg");
    let (code, table, err) = granule(&["stress", "compare", &skip, &stop, &thp, "--svg", &svg]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("4k skip") && table.contains("4k stop") && table.contains("thp skip"),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("ro ")), "{table}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.matches("<rect x=").count() >= 15,
        "{chart}"
    );
}

#[test]
fn stress_failures_end_with_clear_errors_within_a_bound() {
    if !common::kvm_available("stress_failures_end_with_clear_errors_within_a_bound") {
        return;
    }
    // A vCPU that dies.
    let t = Instant::now();
    let (code, _, err) = granule(&[
        "stress",
        "-c",
        "2",
        "-m",
        "2",
        "-s",
        "1",
        "--crash-vcpu",
        "1",
        "--quiet",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("vCPU 1 in stage 0: unexpected exit Shutdown"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(60));
    // A guest that never reports in time.
    let (code, _, err) = granule(&[
        "stress",
        "-c",
        "2",
        "-m",
        "4",
        "-s",
        "1",
        "--phase-timeout",
        "0.05",
        "--quiet",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("had not finished after 0.050 s"), "{err}");
    // Bad configurations.
    let free_1g: u64 = common::free_hugepages(1 << 20);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-m".into(), "1".into(), "-s".into(), "2".into()],
            "-m 1 GiB is smaller than the slot size -s 2 GiB",
        ),
        (
            vec!["-m".into(), "40000".into(), "-s".into(), "1".into()],
            "memslots",
        ),
        (
            vec![
                "-m".into(),
                (free_1g + 1).to_string(),
                "-s".into(),
                (free_1g + 1).to_string(),
                "--backing".into(),
                "hugetlb-1g".into(),
            ],
            "hugetlb pool too small",
        ),
    ];
    // x86's guest maps with 2M or 1G only: a bad command line.
    let (code, _, err) = granule(&["stress", "--guest-page", "4K"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("4K is arm64 only"), "{err}");
    for (args, needle) in cases {
        let mut all = vec!["stress", "--quiet"];
        all.extend(args.iter().map(String::as_str));
        let (code, _, err) = granule(&all);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (code, _, err) = granule(&["stress", "-c", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid vCPU count '0'"), "{err}");
    let (code, _, err) = granule(&["stress", "compare", "/nonexistent.json"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.json"), "{err}");
}
