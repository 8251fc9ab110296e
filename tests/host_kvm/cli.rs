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
#[cfg(target_arch = "x86_64")]
fn touch_writes_json_with_verified_pages() {
    if !common::kvm_available("cli_touch_writes_json_with_verified_pages") {
        return;
    }
    let dir = common::Scratch::new("cli-touch");
    let json = dir.file("touch.json");
    let (code, _, err) = granule(&["run", "touch", "-c", "2", "-m", "1G", "--json", &json]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["verdict"], "ok");
    assert_eq!(v["vcpus"], 2);
    assert_eq!(v["memory_bytes"], 1u64 << 30);
    assert!(v["pages_touched"].as_u64().unwrap() > 260_000);
    assert!(v["pages_verified"].as_u64().unwrap() > 1000);
    assert!(err.contains("progress:"), "progress is shown: {err}");
}

/// `--json` has granule's own footprint (memory besides the guest's, time to the first
/// KVM_RUN) and KVM's exit counters (also printed with `-v`), and a zone given without
/// `backing=` says what this host's THP mode chose.
#[test]
fn run_json_has_the_footprint_exits_and_the_default_backing_with_its_reason() {
    if !common::kvm_available(
        "cli_run_json_has_the_footprint_exits_and_the_default_backing_with_its_reason",
    ) {
        return;
    }
    let dir = common::Scratch::new("cli-footprint");
    let json = dir.file("hello.json");
    let (code, _, err) = granule(&["run", "hello", "-m", "256M", "-v", "--json", &json]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("footprint: ") && err.contains("first KVM_RUN"),
        "{err}"
    );
    assert!(err.contains("KVM exits by reason"), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let f = &v["footprint"];
    let (vmm, rss) = (f["vmm_bytes"].as_u64(), f["process_rss_bytes"].as_u64());
    assert!(vmm.is_some_and(|b| b > 0 && b < 256 << 20), "{f}");
    assert!(rss >= vmm, "{f}");
    assert!(
        f["first_kvm_run_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{f}"
    );
    // Every text byte the guest wrote left it through an exit.
    let exits = &v["exits"]["exits"];
    assert!(exits.as_u64().is_some_and(|n| n > 0), "{}", v["exits"]);
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let thp = mode.contains("[always]") || mode.contains("[madvise]");
    let zone = &v["stage2"]["zones"][0];
    assert_eq!(
        zone["backing"],
        if thp { "thp" } else { "4k" },
        "{mode}: {zone}"
    );
    assert!(
        zone["backing_default"]
            .as_str()
            .is_some_and(|why| why.starts_with("default: host THP")),
        "{zone}"
    );
}

/// x86: a triple fault at CPL 3. arm64: the undefined instruction reaches the
/// program's vector table, which reports the exception (class 0: unknown reason).
#[test]
fn triple_fault_exits_3_naming_the_crash() {
    if !common::kvm_available("cli_triple_fault_exits_3_naming_the_crash") {
        return;
    }
    let (code, _, err) = granule(&["run", "triple-fault"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("guest crashed"), "{err}");
    if cfg!(target_arch = "aarch64") {
        assert!(
            err.contains("unhandled exception at EL1: ESR_EL1 0x")
                && err.contains("(exception class 0x0;")
                && err.contains("x2=0x1004"),
            "the syndrome of an undefined instruction, ELR in the program: {err}"
        );
    } else {
        assert!(
            err.contains("triple fault") && err.contains("cpl=3"),
            "{err}"
        );
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn unclaimed_port_is_logged_and_reads_all_ones() {
    if !common::kvm_available("cli_unclaimed_port_is_logged_and_reads_all_ones") {
        return;
    }
    // Guests probe absent devices as a matter of course: quiet at the default level.
    let (code, _, err) = granule(&["run", "port-probe", "--port", "0x99"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("no device claims it"), "{err}");
    let (code, _, err) = common::granule_logging(&["run", "port-probe", "--port", "0x99"], "debug");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("at 0x99: no device claims it"), "{err}");
    assert!(err.contains("reported value 0xffffffff"), "{err}");
    // stderr is a pipe here: log lines are plain text, without terminal colour codes.
    assert!(
        !err.contains('\x1b'),
        "escape codes in a piped log: {err:?}"
    );
}

#[test]
fn unclaimed_mmio_is_logged_once_and_reads_all_ones() {
    if !common::kvm_available("cli_unclaimed_mmio_is_logged_once_and_reads_all_ones") {
        return;
    }
    let (code, _, err) =
        common::granule_logging(&["run", "mmio-probe", "--gpa", "0xe0000000"], "debug");
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

/// RUST_LOG is read before anything runs: a filter granule cannot apply is exit 2
/// naming it, not a silent fall-back to the default.
#[test]
fn a_bad_rust_log_is_a_usage_error_naming_it() {
    for bad in ["granule_vmm=loud", "granule_vmm[run]=debug"] {
        let (code, out, err) = common::granule_logging(&["run", "hello"], bad);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains(&format!("RUST_LOG={bad:?}")), "{err}");
        assert!(out.is_empty(), "the guest ran: {out}");
    }
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
    // The oracle: what the host's module list (x86) or kernel command line (arm64)
    // says, decided here independently.
    let module = |m: &str| std::path::Path::new("/sys/module").join(m).exists();
    let param = |p: &str| std::fs::read_to_string(format!("/sys/module/{p}")).unwrap_or_default();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let expected = if cfg!(target_arch = "aarch64") {
        if cmdline.contains("kvm-arm.mode=nvhe") || cmdline.contains("kvm-arm.mode=protected") {
            "arm64_nvhe"
        } else {
            "arm64_vhe"
        }
    } else if module("kvm_pvm") {
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

fn plan_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = granule(&all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).expect("plan --json prints JSON")
}

/// (gpa, size, leaf, reason tag) of each planned range.
fn ranges(v: &serde_json::Value) -> Vec<(u64, u64, u64, Option<String>)> {
    v["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["gpa"].as_u64().unwrap(),
                r["size"].as_u64().unwrap(),
                r["leaf"].as_u64().unwrap(),
                r["reason"]["reason"].as_str().map(String::from),
            )
        })
        .collect()
}

const G: u64 = 1 << 30;
const M: u64 = 1 << 20;

/// `granule plan` needs no KVM: 1G hugetlb on x86 TDP is 1G everywhere it is aligned,
/// and every smaller range says why.
#[test]
fn plan_x86_tdp_hugetlb_1g() {
    let v = plan_json(&[
        "--arch",
        "x86_64",
        "--mmu",
        "tdp",
        "--max-leaf",
        "1G",
        "-m",
        "size=4G,backing=hugetlb-1g",
        "-m",
        "size=64M,backing=thp",
        "-m",
        "size=64M,backing=thp,misalign=4K",
    ]);
    assert_eq!(v["target"]["mmu"], "x86_tdp");
    let r = ranges(&v);
    // 4 GiB of 1G pages split around the MMIO hole: 3 GiB below, 1 GiB above 4 GiB.
    assert_eq!(r[0], (0, 3 * G, G, None));
    assert_eq!(r[1], (4 * G, G, G, None));
    // THP: 2M leaves, because the host maps 2M pages.
    assert_eq!(r[2], (5 * G, 64 * M, 2 * M, Some("backing".into())));
    // Misaligned THP: 4K, because GPA and HVA differ modulo 2 MiB (its bulk; the
    // edges say their 2M block leaves the mapping).
    let bulk = r[3..].iter().max_by_key(|x| x.1).unwrap();
    assert_eq!((bulk.2, bulk.3.as_deref()), (4096, Some("not_congruent")));
    for (gpa, _, leaf, reason) in &r {
        assert!(
            *leaf == G || reason.is_some(),
            "range at {gpa:#x} smaller than 1G without a reason"
        );
    }
    // With a 2M-only CPU, 2M is the best there is: no reasons on the 1G zone.
    let v = plan_json(&[
        "--arch",
        "x86_64",
        "--mmu",
        "tdp",
        "--max-leaf",
        "2M",
        "-m",
        "size=2G,backing=hugetlb-1g",
    ]);
    assert_eq!(ranges(&v), vec![(0, 2 * G, 2 * M, None)]);
    // Shadow paging with 2M guest pages caps everything at 2M and says so.
    let v = plan_json(&[
        "--arch",
        "x86_64",
        "--mmu",
        "shadow",
        "--max-leaf",
        "1G",
        "-m",
        "size=2G,backing=hugetlb-1g",
    ]);
    assert_eq!(
        ranges(&v),
        vec![(0, 2 * G, 2 * M, Some("guest_page_cap".into()))]
    );
}

/// arm64 PFN-map geometry on a host kernel that maps device memory with up to 1G
/// (`pfnmap=1G`): a 1 GiB BAR at an aligned GPA gets 1G blocks; unaligned ones get 2M
/// or 4K with the reason. Without `pfnmap=` the plan follows this host's kernel.
#[test]
fn plan_arm64_bar_geometry() {
    let aligned = "gpa=0x8000000000,size=1G,pfnmap=1G";
    let v = plan_json(&[
        "--arch",
        "aarch64",
        "-m",
        "size=1G,backing=hugetlb-1g",
        "--bar",
        aligned,
    ]);
    assert_eq!(v["target"]["mmu"], "arm64");
    let r = ranges(&v);
    assert_eq!(
        r[0],
        (0x4000_0000, G, G, None),
        "RAM at 1 GiB, 1G hugetlb -> 1G blocks"
    );
    assert_eq!(r[1], (0x80_0000_0000, G, G, None));
    // GPA 2 MiB off a 1 GiB boundary: not congruent mod 1G -> 2M blocks.
    let v = plan_json(&[
        "--arch",
        "aarch64",
        "--bar",
        "gpa=0x8040200000,size=1G,pfnmap=1G",
    ]);
    assert_eq!(
        ranges(&v)[1],
        (0x80_4020_0000, G, 2 * M, Some("not_congruent".into()))
    );
    // The BAR mapped 4 KiB off its alignment with a matching PA: 2M blocks inside,
    // pages at the edges where a 2M block would leave the mapping.
    let v = plan_json(&[
        "--arch",
        "aarch64",
        "--bar",
        "gpa=0x8000001000,size=1G,hva_offset=4K,pa=0x10000001000,pfnmap=1G",
    ]);
    let r = ranges(&v);
    assert_eq!(r[1].2, 4096);
    assert_eq!(r[1].3.as_deref(), Some("vma_edge"));
    assert_eq!(r[2].2, 2 * M);
    // By default, what this host's kernel does for arm64 device memory (PMD since 6.12).
    let host =
        granule_vmm::probe::huge_pfnmap_leaf(&granule_vmm::probe::kernel_release(), "aarch64");
    let v = plan_json(&["--arch", "aarch64", "--bar", "gpa=0x8000000000,size=1G"]);
    assert_eq!(ranges(&v)[1].2, host, "{v}");
    // 16K granule: THP blocks are 32M.
    let v = plan_json(&[
        "--arch",
        "aarch64",
        "--granule",
        "16k",
        "-m",
        "size=1G,backing=thp",
    ]);
    assert_eq!(ranges(&v)[0].2, 32 * M);
}

#[test]
fn plan_prints_a_table_and_rejects_bad_values() {
    let (code, out, err) = granule(&[
        "plan",
        "--arch",
        "x86_64",
        "--mmu",
        "tdp",
        "-m",
        "size=2G,backing=thp",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("stage-2 plan for x86 TDP") && out.contains("why not larger"),
        "{out}"
    );
    assert!(
        out.contains("predicted: 2 GiB in 2M leaves (100.0%)"),
        "{out}"
    );
    for (args, needle) in [
        (&["plan", "--max-leaf", "4M"][..], "expected 2M or 1G"),
        (&["plan", "--bar", "size=1G"][..], "no gpa"),
        (
            &["plan", "--bar", "gpa=0xffffffffc0000000,size=2G"][..],
            "gpa + size passes the end",
        ),
        (
            &["plan", "--bar", "gpa=0,gpa=0x1000,size=4K"][..],
            "'gpa' is given twice",
        ),
        (&["plan", "--arch", "riscv"][..], "possible values"),
        (&["plan", "--granule", "8k"][..], "possible values"),
    ] {
        let (code, _, err) = granule(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (code, _, err) = granule(&["plan", "-m", "2G", "-m", "size=1G,gpa=0x40000000"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("overlap"), "{err}");
    let (code, _, err) = granule(&["plan", "-m", "16777215T"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("64-bit host address space"), "{err}");
}

/// The planner's work follows the layout's edges, not its size: a 1 PiB zone is a few
/// ranges (it once meant a breakpoint per 2 MiB, 2^29 of them).
#[test]
fn plan_of_a_petabyte_is_a_few_ranges() {
    let (code, out, err) = granule(&["plan", "--mmu", "tdp", "-m", "size=1024T,backing=thp"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("predicted: 1024 TiB in"), "{out}");
    assert!(out.lines().count() < 20, "{out}");
}

/// x86 KVM counts its leaves, so the verdict is a comparison; arm64 KVM does not (and
/// the bed's kernel has no stage-2 dump), so there the report is the prediction, 2 MiB
/// leaves over THP, and says so.
#[test]
fn run_prints_the_stage2_report_and_writes_it_as_json() {
    if !common::kvm_available("cli_run_prints_the_stage2_report_and_writes_it_as_json") {
        return;
    }
    let dir = common::Scratch::new("cli-report");
    let file = dir.file("stage2.json");
    let (code, _, err) = granule(&[
        "run",
        "touch",
        "-c",
        "2",
        "-m",
        "size=512M,backing=thp",
        "--quiet",
        "--report",
        &file,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stage-2 report:"), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["zones"][0]["backing"], "thp");
    if cfg!(target_arch = "aarch64") {
        assert!(err.contains("verdict: predicted only"), "{err}");
        assert_eq!(v["verdict"], "predicted_only");
        assert_eq!(v["plan"][0]["leaf"], 2u64 << 20, "{v}");
        assert_eq!(v["plan"][0]["gpa"], 0, "{v}");
    } else {
        assert!(
            err.contains("verdict: KVM's leaves match the prediction"),
            "{err}"
        );
        assert_eq!(v["verdict"], "match");
        assert!(v["observed"]["2097152"].as_u64().unwrap() > 100, "{v}");
    }
}

/// The real binary with a stdout nobody reads: a pipe filled to capacity before granule
/// starts, whose reader never reads, so granule's first console write would block. The
/// guest still finishes; granule exits 0 and says the output never got out. Bounded: a
/// granule that blocks is killed and the test fails.
#[test]
#[cfg(target_arch = "x86_64")]
fn a_stdout_nobody_reads_does_not_stop_the_guest() {
    if !common::kvm_available("cli_a_stdout_nobody_reads_does_not_stop_the_guest") {
        return;
    }
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let (reader, writer) = common::full_pipe();
    let bin = common::granule_bin();
    let mut child = Command::new(bin)
        .args(["run", "hello", "--text", "never read\n", "--timeout", "60"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the granule binary");
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(reader);
    let err = err.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("granule blocked on its stdout: {err}"));
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains(": ok after"), "{err}");
    assert!(
        err.contains("guest console output lost") && err.contains("11 bytes still unwritten"),
        "{err}"
    );
}

#[test]
fn a_hello_text_too_long_is_a_usage_error_naming_its_size() {
    let text = "x".repeat(5000);
    let (code, _, err) = granule(&["run", "hello", "--text", &text]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("5000 bytes") && err.contains("at most 4096"),
        "{err}"
    );
}

/// arm64: an Image has no decompressor of its own (granule unpacks an Image.gz itself),
/// so neither kernel option applies: a command-line error naming the option, before KVM
/// is opened (x86's refusals, which depend on the file, are in kernel_decompress.rs).
#[cfg(target_arch = "aarch64")]
#[test]
fn kernel_payload_options_are_refused_for_an_arm64_image() {
    let dir = common::Scratch::new("arm64-kernel-options");
    // The header the kernel's head.S writes: "ARM\x64" at 56, image_size 1 MiB, 4K
    // pages, anywhere in RAM.
    let mut header = vec![0u8; 64];
    header[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    header[24..32].copy_from_slice(&0xau64.to_le_bytes());
    header[56..60].copy_from_slice(b"ARM\x64");
    let image = dir.file("Image");
    std::fs::write(&image, header).unwrap();
    for (option, value) in [
        ("--kernel-decompress", "host"),
        ("--kernel-decompress", "guest"),
        ("--kernel-cache", "off"),
    ] {
        let args = ["run", "--kernel", &image, option, value, "--timeout", "5"];
        let (code, _, err) = granule(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!("{option} does not apply to kernel"))
                && err.contains("arm64 Image.gz"),
            "{args:?}: {err}"
        );
    }
}
