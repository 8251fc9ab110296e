//! Reading the boot scenario's cases (resources/bed/scenarios/boot), the same on both
//! architectures.

use crate::BedRun;

/// One case of the boot scenario: its exit code, console output, stderr and JSON.
pub struct BootCase {
    pub rc: i32,
    pub out: String,
    pub err: String,
    pub json: serde_json::Value,
}

/// The case `name`; panics (failing the test) when it printed no JSON summary.
pub fn boot_case(run: &BedRun, name: &str) -> BootCase {
    let c = run.case(name);
    BootCase {
        rc: c.rc,
        out: c.out,
        err: c.err,
        json: c
            .json
            .unwrap_or_else(|| panic!("no JSON for case {name}\n{}", run.excerpt())),
    }
}

/// The guest's own report of what it sees: "cpus=N online=... ram_bytes=N".
pub fn guest_facts(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("GRANULE-GUEST: USERSPACE"))
        .unwrap_or_else(|| panic!("the guest never reached userspace:\n{out}"));
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    (field("cpus="), field("ram_bytes="))
}

/// The guest's init wrote the boot timer after granule started the vCPUs, and the
/// boot's phases came in order: memory mapped, kernel loaded, vCPUs started, the first
/// KVM_RUN, userspace.
pub fn assert_boot_timer_fired(c: &BootCase) {
    let boot = &c.json["boot"];
    let phases = [
        "memory_mapped_ms",
        "kernel_loaded_ms",
        "vcpus_started_ms",
        "first_kvm_run_ms",
        "userspace_ms",
    ];
    let at: Vec<f64> = phases
        .iter()
        .map(|p| {
            boot[p]
                .as_f64()
                .unwrap_or_else(|| panic!("no {p} in {boot}"))
        })
        .collect();
    assert!(at[0] > 0.0, "{boot}");
    assert!(
        at.windows(2).all(|w| w[0] <= w[1]),
        "phases out of order: {boot}"
    );
    assert!(at[4] > at[2], "boot timer after the vCPUs started: {boot}");
    let p = &boot["phases"];
    let init = p["kernel_until_init_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no kernel_until_init_ms in {boot}"));
    assert!((init - (at[4] - at[3])).abs() < 0.01, "{boot}");
}

/// The case ran with `--boot-marker` on init's USERSPACE line: the line was timed
/// after the boot timer, and the last phase spans the two.
pub fn assert_boot_marker_timed(c: &BootCase) {
    let boot = &c.json["boot"];
    assert_eq!(
        c.json["boot_marker"], "GRANULE-GUEST: USERSPACE",
        "{}",
        c.json
    );
    let (user, marker) = (boot["userspace_ms"].as_f64(), boot["marker_ms"].as_f64());
    let (Some(user), Some(marker)) = (user, marker) else {
        panic!("the marker line was not timed: {boot}");
    };
    assert!(
        marker > user,
        "init prints the line after the boot timer: {boot}"
    );
    let last = boot["phases"]["init_until_marker_ms"].as_f64();
    assert!(
        last.is_some_and(|ms| (ms - (marker - user)).abs() < 0.01),
        "{boot}"
    );
    assert!(c.err.contains("boot phases (ms)"), "{}", c.err);
}

/// The kernel's warnings the guest's init picked out of dmesg (PCI, ACPI, device tree).
pub fn kernel_warnings(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains("GRANULE-GUEST: KERNEL-WARNING"))
        .collect()
}
