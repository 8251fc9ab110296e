//! The bad-input catalogue: every subcommand given values, files and output paths that
//! are wrong. Each case asserts the exit code (2: the command line; 1: a file's content
//! or the host), that the message names the bad value, and that nothing panicked. The
//! binary runs with a timeout, so a hang fails the case instead of the suite.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Scratch;

/// How long any bad input may take to be refused.
const REFUSE_WITHIN: Duration = Duration::from_secs(30);

/// Runs granule with `args`; (exit code, stderr). A hang fails the case.
fn refuse(args: &[String]) -> (i32, String) {
    let (code, _, err) = common::finish_within(
        common::spawn_granule(args),
        REFUSE_WITHIN,
        &format!("{args:?}"),
    );
    (code, err)
}

/// Files of every wrong kind, in a scratch directory.
struct Fixtures {
    dir: Scratch,
}

impl Fixtures {
    fn new(name: &str) -> Self {
        let dir = Scratch::new(name);
        std::fs::write(dir.file("empty"), b"").unwrap();
        // Longer than any kernel header, so the check is on content, not length.
        std::fs::write(dir.file("text"), "#!/bin/sh\necho not a kernel\n".repeat(8)).unwrap();
        std::fs::write(
            dir.file("shape.json"),
            br#"{"tool": "something else", "runs": 3}"#,
        )
        .unwrap();
        std::fs::write(dir.file("noruns.json"), NO_RUNS).unwrap();
        std::fs::write(dir.file("binary"), [0xffu8, 0xfe, 0x00, 0x81]).unwrap();
        std::fs::create_dir_all(dir.file("subdir")).unwrap();
        let fifo = std::ffi::CString::new(dir.file("fifo")).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        Self { dir }
    }

    /// Replaces `@name` words with the fixture's path.
    fn args(&self, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|a| {
                a.strip_prefix('@')
                    .map_or_else(|| (*a).to_string(), |f| self.dir.file(f))
            })
            .collect()
    }

    /// Runs every case of every table; fails once, listing every case that failed.
    fn check(&self, tables: &[&[(&[&str], i32, &str)]]) {
        let mut failures = Vec::new();
        for (args, code, needle) in tables.iter().flat_map(|t| t.iter()) {
            let args = self.args(args);
            let needle = self.args(&[needle]).remove(0);
            let (got, err) = refuse(&args);
            if got != *code || !err.contains(&needle) || err.contains("panicked") {
                failures.push(format!(
                    "{args:?}: exit {got} (want {code}), stderr should name {needle:?}:\n{err}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// A well-formed stress result with no runs.
const NO_RUNS: &str = r#"{"tool": "granule stress 0.1.0",
 "host": {"arch": "x86_64", "kernel": "6", "cpu_model": "cpu", "cpus": 2,
          "backend": "tdp", "hardware_stage2": true, "fwb": null},
 "config": {"vcpus": 1, "max_mem_gib": 1, "slot_gib": 1, "slots": 1, "backing": "4k",
            "on_fault": "skip", "guest_page": 4096},
 "runs": []}"#;

/// A case: the arguments (`@name` is a fixture file), the exit code, what stderr names.
type Case = (&'static [&'static str], i32, &'static str);

/// `run`: values.
const RUN_VALUES: &[Case] = &[
    (&["run", "--cpus", "0"], 2, "'0'"),
    (&["run", "--cpus", "-1"], 2, "1 to"),
    (&["run", "--cpus", "two"], 2, "'two'"),
    (&["run", "--cpus", "100000"], 2, "1 to"),
    (
        &["run", "--cpus", "1", "--cpus", "2"],
        2,
        "'--cpus <CPUS>' cannot be used multiple times",
    ),
    (&["run", "--timeout", "0"], 2, "positive number of seconds"),
    (&["run", "--timeout", "soon"], 2, "'soon'"),
    (&["run", "--timeout", "-3"], 2, "positive number of seconds"),
    (&["run", "--timeout", "1e400"], 2, "'1e400'"),
    (&["run", "port-probe", "--port", "70000"], 2, "0 to 65535"),
    (&["run", "mmio-probe", "--gpa", "0xzz"], 2, "'0xzz'"),
    (&["run", "no-such-program"], 2, "'no-such-program'"),
    (&["run", "hammer", "--count", "0"], 2, "invalid count '0'"),
    (
        &["run", "touch", "--text", "hi"],
        2,
        "--text does not apply to `touch`",
    ),
    (
        &["run", "--gpa", "0x1000"],
        2,
        "--gpa does not apply to `hello`",
    ),
    (
        &["run", "spin", "--port", "0x60"],
        2,
        "--port does not apply to `spin`",
    ),
    (
        &["run", "mmio-probe", "--count", "9"],
        2,
        "--count does not apply",
    ),
];

/// `run`: memory zones.
const RUN_ZONES: &[Case] = &[
    (
        &["run", "--memory", "1.5G"],
        2,
        "invalid memory zone '1.5G'",
    ),
    (&["run", "--memory", "12Q"], 2, "'12Q'"),
    (
        &["run", "--memory", "-1G"],
        2,
        "does not start with a number",
    ),
    (&["run", "--memory", "99999999999999999999"], 2, "too large"),
    (&["run", "--memory", "18446744073709551616"], 2, "too large"),
    (&["run", "--memory", "20000000T"], 2, "64 bits"),
    (
        &["run", "--memory", "size=5M,backing=hugetlb-2m"],
        2,
        "not a multiple of the 2 MiB page size",
    ),
    (
        &["run", "--memory", "size=3G,backing=hugetlb-1g,gpa=0x40000"],
        2,
        "gpa 0x40000",
    ),
    (
        &["run", "--memory", "size=1G,backing=hugepages"],
        2,
        "unknown backing 'hugepages'",
    ),
    (
        &["run", "--memory", "size=1G,prefault=yes"],
        2,
        "prefault 'yes'",
    ),
    (
        &["run", "--memory", "size=1G,size=2G"],
        2,
        "'size' is given twice",
    ),
    (
        &["run", "--memory", "size=1G,gpa=0x0,gpa=0x0"],
        2,
        "'gpa' is given twice",
    ),
    (&["run", "--memory", "size=0"], 2, "must not be zero"),
];

/// `run`: options of the other mode (program or kernel).
const RUN_MODES: &[Case] = &[
    (
        &["run", "hello", "--kernel", "@text"],
        2,
        "cannot be used with",
    ),
    (&["run", "--initrd", "@text"], 2, "--kernel"),
    (&["run", "touch", "--cmdline", "quiet"], 2, "--cmdline"),
    (&["run", "--kernel", "@text", "--text", "hi"], 2, "--text"),
    (&["run", "--kernel", "@text", "--port", "0x60"], 2, "--port"),
    (&["run", "--device", "vfio,0000:00:01.0"], 2, "--kernel"),
];

/// `run --kernel`: devices to pass through.
const RUN_DEVICES: &[Case] = &[
    (
        &["run", "--kernel", "@text", "--device", "nonsense"],
        2,
        "unknown device type 'nonsense'",
    ),
    (
        &[
            "run",
            "--kernel",
            "@text",
            "--device",
            "vfio,path=/dev/null",
        ],
        2,
        "'/dev/null' does not end in a PCI address",
    ),
    (
        &[
            "run",
            "--kernel",
            "@text",
            "--device",
            "vfio,0000:00:01.0,iommu=smmu",
        ],
        2,
        "smmu",
    ),
    (
        &[
            "run",
            "--kernel",
            "@text",
            "--device",
            "vfio,0000:00:01.0",
            "--device",
            "vfio,path=/sys/bus/pci/devices/0000:00:01.0",
        ],
        2,
        "0000:00:01.0 twice",
    ),
];

/// Output paths, checked before any guest runs.
const OUTPUT_PATHS: &[Case] = &[
    (
        &["run", "--json", "@missing/summary.json"],
        2,
        "@missing/summary.json",
    ),
    (
        &["run", "--report", "@subdir"],
        2,
        "@subdir: it is a directory",
    ),
    (&["run", "--json", "@fifo"], 2, "@fifo: it is a FIFO"),
    (
        &["run", "--report", "/dev/null"],
        2,
        "/dev/null: it is a character device",
    ),
    (
        &["run", "--kernel", "@text", "--json", "@subdir"],
        2,
        "@subdir: it is a directory",
    ),
];

/// `plan`.
const PLAN: &[Case] = &[
    (&["plan", "--bar", "gpa=0x1000"], 2, "no size"),
    (&["plan", "--bar", "gpa=zz,size=2M"], 2, "'gpa=zz,size=2M'"),
    (
        &["plan", "--bar", "size=2M,size=4M,gpa=0"],
        2,
        "'size' is given twice",
    ),
    (&["plan", "--bar", "gpa=0,size=3M"], 2, "'gpa=0,size=3M'"),
    (&["plan", "--max-leaf", "4M"], 2, "'4M'"),
    (&["plan", "--arch", "sparc"], 2, "'sparc'"),
    (&["plan", "--granule", "8k"], 2, "'8k'"),
    (
        &["plan", "--json", "--json"],
        2,
        "'--json' cannot be used multiple times",
    ),
    (&["plan", "--cpus", "2"], 2, "'--cpus'"),
];

/// `probe`.
const PROBE: &[Case] = &[
    (&["probe", "extra"], 2, "'extra'"),
    (&["probe", "--memory", "1G"], 2, "'--memory'"),
];

/// `stress`.
const STRESS: &[Case] = &[
    (&["stress", "--vcpus", "0"], 2, "'0'"),
    (&["stress", "-m", "0"], 2, "'0'"),
    (&["stress", "--repeat", "0"], 2, "invalid repeat count '0'"),
    (&["stress", "--repeat", "5000"], 2, "from 1 to 1000"),
    (&["stress", "--backing", "2m"], 2, "'2m'"),
    (
        &["stress", "-H", "--backing", "thp"],
        2,
        "cannot be used with",
    ),
    (
        &["stress", "--phase-timeout", "0"],
        2,
        "positive number of seconds",
    ),
    (
        &["stress", "--json", "@subdir"],
        2,
        "@subdir: it is a directory",
    ),
    (
        &["stress", "--json", "@missing/r.json"],
        2,
        "@missing/r.json",
    ),
    (
        &["stress", "-c", "2", "compare", "@noruns.json"],
        2,
        "cannot be used with",
    ),
];

/// `stress compare`: its inputs and chart.
const STRESS_COMPARE: &[Case] = &[
    (&["stress", "compare"], 2, "<FILES>"),
    (&["stress", "compare", "@absent.json"], 2, "@absent.json"),
    (
        &["stress", "compare", "@subdir"],
        2,
        "@subdir is a directory",
    ),
    (&["stress", "compare", "@fifo"], 2, "@fifo is a FIFO"),
    (&["stress", "compare", "@binary"], 2, "@binary is not UTF-8"),
    (
        &[
            "stress",
            "compare",
            "@noruns.json",
            "--svg",
            "@missing/c.svg",
        ],
        2,
        "@missing/c.svg",
    ),
    (
        &["stress", "compare", "@noruns.json", "--svg", "@subdir"],
        2,
        "@subdir: it is a directory",
    ),
    (
        &["stress", "compare", "@text"],
        1,
        "@text is not a granule stress result",
    ),
    (
        &["stress", "compare", "@shape.json"],
        1,
        "@shape.json is not a granule stress result",
    ),
    (
        &["stress", "compare", "@noruns.json"],
        1,
        "@noruns.json has no runs",
    ),
    (&["frobnicate"], 2, "unrecognized subcommand 'frobnicate'"),
];

/// Refused by the command-line parser or the checks before any VM exists: exit 2, no
/// KVM needed.
#[test]
fn bad_command_lines_exit_2_naming_the_value() {
    let f = Fixtures::new("bad-cli");
    f.check(&[
        RUN_VALUES,
        RUN_ZONES,
        RUN_MODES,
        RUN_DEVICES,
        OUTPUT_PATHS,
        PLAN,
        PROBE,
        STRESS,
        STRESS_COMPARE,
    ]);
}

/// Refused once KVM is open: host limits and the content of the files named. Exit 1.
#[test]
fn bad_files_and_host_limits_exit_1_naming_the_value() {
    if !common::kvm_available("bad_input_bad_files_and_host_limits_exit_1_naming_the_value") {
        return;
    }
    let f = Fixtures::new("bad-files");
    let mut cases: Vec<(&[&str], i32, &str)> = vec![
        (&["run", "--memory", "64T"], 1, "exceeds this host's RAM"),
        (
            &["run", "-m", "9000000T", "-m", "9000000T"],
            1,
            "exceeds this host's RAM",
        ),
        (
            &["run", "-m", "256M", "-m", "size=256M,gpa=0x8000000"],
            1,
            "overlap",
        ),
        (&["run", "--kernel", "@absent"], 1, "@absent: No such file"),
        (&["run", "--kernel", "@subdir"], 1, "@subdir is a directory"),
        (&["run", "--kernel", "@fifo"], 1, "@fifo is a FIFO"),
        (
            &["run", "--kernel", "/dev/null"],
            1,
            "/dev/null is a character device",
        ),
        (
            &["run", "--kernel", "@empty"],
            1,
            "the kernel file is empty",
        ),
        (&["run", "--kernel", "@text"], 1, "@text: not a"),
    ];
    #[cfg(target_arch = "x86_64")]
    let arch: &[(&[&str], i32, &str)] = &[
        (&["run", "-m", "size=1G,gpa=0xc0000000"], 1, "MMIO hole"),
        (&["run", "--cpus", "4096"], 1, "at most"),
        (
            &["run", "mmio-probe", "--gpa", "0x100000"],
            1,
            "inside guest RAM",
        ),
        (
            &["run", "mmio-probe", "--gpa", "0x10000000000000"],
            1,
            "beyond the identity map",
        ),
    ];
    #[cfg(target_arch = "aarch64")]
    let arch: &[(&[&str], i32, &str)] = &[(&["run", "port-probe"], 1, "x86")];
    cases.extend_from_slice(arch);
    if common::free_hugepages(1 << 20) == 0 {
        cases.push((
            &["run", "-m", "size=1G,backing=hugetlb-1g"],
            1,
            "1 GiB hugetlb pool too small",
        ));
    }
    f.check(&[&cases]);
}

/// granule's own stdout closed by its reader (EPIPE) or full (ENOSPC): the first ends
/// printing quietly, the second is an error naming stdout; neither panics.
#[test]
fn a_closed_or_full_stdout_is_not_a_panic() {
    let bin = common::granule_bin();
    for args in [&["plan"][..], &["plan", "--json"], &["probe", "--json"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(&bin)
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked"),
            "{args:?} into a closed pipe: {err}"
        );
        let full = Command::new(&bin)
            .args(args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&full.stderr);
        assert_eq!(
            full.status.code(),
            Some(1),
            "{args:?} into /dev/full: {err}"
        );
        assert!(
            err.contains("writing to stdout: No space left on device") && !err.contains("panicked"),
            "{args:?} into /dev/full: {err}"
        );
    }
}
