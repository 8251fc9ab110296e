//! The `granule` binary as a user runs it.

mod common;

use common::granule;

#[test]
fn hello_prints_and_exits_0() {
    if !common::kvm_available("cli_hello_prints_and_exits_0") {
        return;
    }
    let (code, out, err) = granule(&["run", "hello", "--text", "from the cli\n"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from the cli\n");
    assert!(
        err.contains("hello on 1 vCPU(s)") && err.contains(": ok after"),
        "{err}"
    );
}

#[test]
fn touch_writes_json_with_verified_pages() {
    if !common::kvm_available("cli_touch_writes_json_with_verified_pages") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("granule-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("touch.json");
    let (code, _, err) = granule(&[
        "run",
        "touch",
        "-c",
        "2",
        "-m",
        "1G",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["verdict"], "ok");
    assert_eq!(v["vcpus"], 2);
    assert_eq!(v["memory_bytes"], 1u64 << 30);
    assert!(v["pages_touched"].as_u64().unwrap() > 260_000);
    assert!(v["pages_verified"].as_u64().unwrap() > 1000);
    assert!(err.contains("progress:"), "progress is shown: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn triple_fault_exits_3_naming_the_crash() {
    if !common::kvm_available("cli_triple_fault_exits_3_naming_the_crash") {
        return;
    }
    let (code, _, err) = granule(&["run", "triple-fault"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("guest crashed") && err.contains("triple fault") && err.contains("cpl=3"),
        "{err}"
    );
}

#[test]
fn unclaimed_port_and_mmio_are_logged_and_read_all_ones() {
    if !common::kvm_available("cli_unclaimed_port_and_mmio_are_logged_and_read_all_ones") {
        return;
    }
    let (code, _, err) = granule(&["run", "port-probe", "--port", "0x99"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("at 0x99: no device claims it"), "{err}");
    assert!(err.contains("reported value 0xffffffff"), "{err}");
    let (code, _, err) = granule(&["run", "mmio-probe", "--gpa", "0xe0000000"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("write of 8 byte(s) at 0xe0000000: no device claims it"),
        "{err}"
    );
    assert!(err.contains("reported value 0xffffffffffffffff"), "{err}");
    assert_eq!(
        err.matches("0xe0000000: no device").count(),
        1,
        "logged once: {err}"
    );
}

#[test]
fn timeout_exits_5() {
    if !common::kvm_available("cli_timeout_exits_5") {
        return;
    }
    let (code, _, err) = granule(&["run", "spin", "-c", "2", "--timeout", "0.5"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn probe_json_names_this_hosts_backend() {
    if !common::kvm_available("cli_probe_json_names_this_hosts_backend") {
        return;
    }
    let (code, out, err) = granule(&["probe", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("probe --json prints JSON");
    let kvm = &v["kvm"];
    assert_eq!(kvm["api_version"], 12);
    // The oracle: what the host's module list says, decided here independently.
    let module = |m: &str| std::path::Path::new("/sys/module").join(m).exists();
    let param = |p: &str| std::fs::read_to_string(format!("/sys/module/{p}")).unwrap_or_default();
    let expected = if module("kvm_pvm") {
        "pvm_shadow"
    } else if module("kvm_intel") {
        if param("kvm_intel/parameters/ept").trim() == "Y" {
            "vmx_ept"
        } else {
            "vmx_shadow"
        }
    } else if module("kvm_amd") {
        if matches!(param("kvm_amd/parameters/npt").trim(), "1" | "Y") {
            "svm_npt"
        } else {
            "svm_shadow"
        }
    } else {
        "unknown"
    };
    assert_eq!(kvm["backend"]["kind"], expected, "{out}");
    assert_eq!(kvm["capabilities"]["USER_MEMORY"], true);
    assert!(kvm["max_vcpus"].as_u64().unwrap() >= 1);
    assert!(kvm["nr_memslots"].as_u64().unwrap() >= 32);
    assert!(v["hugepages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["page_size"] == 2 << 20));
    assert!(v["thp"]["enabled"].is_string());
    assert!(v["vfio"]["dev_vfio"].is_boolean());
    // And the table form is there too.
    let (code, table, _) = granule(&["probe"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("kvm backend") && table.contains("hugepages 2 MiB"),
        "{table}"
    );
}

/// Bad values are rejected by the parser (exit 2) naming the value and the form; none
/// may panic. These need no KVM.
#[test]
fn bad_cli_values_get_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--cpus", "0"], "'0'"),
        (&["run", "--cpus", "-1"], "1 to"),
        (&["run", "--cpus", "two"], "'two'"),
        (&["run", "--cpus", "100000"], "1 to"),
        (&["run", "--memory", "1.5G"], "invalid memory zone '1.5G'"),
        (
            &["run", "--memory", "size=5M,backing=hugetlb-2m"],
            "not a multiple of the 2 MiB page size",
        ),
        (
            &["run", "--memory", "size=3G,backing=hugetlb-1g,gpa=0x40000"],
            "gpa 0x40000",
        ),
        (
            &["run", "--memory", "size=1G,backing=hugepages"],
            "unknown backing 'hugepages'",
        ),
        (&["run", "--memory", "12Q"], "'12Q'"),
        (&["run", "--memory", "99999999999999999999"], "too large"),
        (&["run", "--memory", "20000000T"], "64 bits"),
        (&["run", "--timeout", "0"], "positive number of seconds"),
        (&["run", "--timeout", "soon"], "'soon'"),
        (&["run", "--timeout", "-3"], "positive number of seconds"),
        (&["run", "--memory", "-1G"], "does not start with a number"),
        (
            &["run", "--memory", "size=1G,prefault=yes"],
            "prefault 'yes'",
        ),
        (&["run", "port-probe", "--port", "70000"], "0 to 65535"),
        (&["run", "mmio-probe", "--gpa", "0xzz"], "'0xzz'"),
        (&["run", "no-such-program"], "possible values"),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, needle) in cases {
        let (code, _, err) = granule(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?} should mention {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn bad_values_caught_at_run_time_are_errors_not_panics() {
    if !common::kvm_available("cli_bad_values_caught_at_run_time_are_errors_not_panics") {
        return;
    }
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--memory", "64T"], "exceeds this host's RAM"),
        (
            &["run", "-m", "2G", "-m", "size=1G,gpa=0x40000000"],
            "overlap",
        ),
        (&["run", "-m", "size=1G,gpa=0xc0000000"], "MMIO hole"),
        (&["run", "--cpus", "4096"], "at most"),
        (
            &["run", "mmio-probe", "--gpa", "0x100000"],
            "inside guest RAM",
        ),
        (
            &["run", "mmio-probe", "--gpa", "0x10000000000000"],
            "beyond the identity map",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, err) = granule(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?} should mention {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
