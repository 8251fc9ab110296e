//! SIGINT and SIGTERM at each phase of `run` and `stress`: granule stops the guest and
//! ends with exit code 130 and a message, and the result files are complete JSON (run)
//! or absent (stress), never truncated.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::Scratch;

/// How long granule may take to end after the signal: set-up (prefaulting) finishes
/// first, which takes tens of seconds in the emulated arm64 bed.
const END_WITHIN: Duration = Duration::from_secs(120);

fn start(args: &[&str]) -> Child {
    common::spawn_granule(args)
}

/// Names of the threads of `pid` now.
fn threads(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Whether `pid` catches `sig` now (its handler is installed), from /proc.
fn catches(pid: u32, sig: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

/// Waits (bounded) until `ready` holds for the child, then sends `sig`.
fn signal_when(child: &Child, sig: i32, what: &str, ready: impl Fn(u32) -> bool) {
    let start = Instant::now();
    while !ready(child.id()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never reached: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits for the child to end within [`END_WITHIN`]; (exit code, stdout, stderr).
fn finish(child: Child) -> (i32, String, String) {
    common::finish_within(child, END_WITHIN, "after the signal")
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not whole JSON: {e}", path.display()))
}

/// (phase name, signal, program and its options, when the phase has come).
type Phase = (&'static str, i32, &'static [&'static str], fn(u32) -> bool);

/// `run`: a signal while the vCPUs run, and one during set-up (the handler is in, no
/// vCPU thread yet: prefaulting 256 MiB), each ends with the summary, exit 130 and
/// both result files whole.
#[test]
fn run_ends_with_130_and_whole_results_on_a_signal_in_any_phase() {
    if !common::kvm_available(
        "interrupts_run_ends_with_130_and_whole_results_on_a_signal_in_any_phase",
    ) {
        return;
    }
    let dir = Scratch::new("interrupt-run");
    let cases: [Phase; 2] = [
        ("mid-run", libc::SIGINT, &["spin", "-c", "2"], |pid| {
            threads(pid)
                .iter()
                .filter(|t| t.starts_with("vcpu"))
                .count()
                == 2
        }),
        (
            "set-up",
            libc::SIGTERM,
            &["touch", "-m", "size=256M,prefault=on"],
            |pid| catches(pid, libc::SIGTERM),
        ),
    ];
    for (phase, sig, program, ready) in cases {
        let (j, r) = (
            dir.file(&format!("{phase}.json")),
            dir.file(&format!("{phase}-report.json")),
        );
        let mut args = vec!["run", "--quiet", "--json", &j, "--report", &r];
        args.extend_from_slice(program);
        let child = start(&args);
        signal_when(&child, sig, phase, ready);
        let (code, _, err) = finish(child);
        assert_eq!(code, 130, "{phase}: {err}");
        assert!(
            err.contains("interrupted (SIGINT or SIGTERM)"),
            "{phase}: {err}"
        );
        assert_eq!(json(Path::new(&j))["verdict"], "interrupted", "{phase}");
        assert!(json(Path::new(&r)).is_object(), "{phase}");
        assert!(!err.contains("panicked"), "{phase}: {err}");
    }
}

/// `stress`: a signal in the middle of a phase stops it with exit 130 and a message
/// naming the phase, and no results file.
#[test]
fn stress_ends_with_130_and_no_results_on_a_signal() {
    if !common::kvm_available("interrupts_stress_ends_with_130_and_no_results_on_a_signal") {
        return;
    }
    let dir = Scratch::new("interrupt-stress");
    let j = dir.file("stress.json");
    let child = start(&[
        "stress", "--quiet", "-c", "2", "-m", "1", "-s", "1", "--json", &j,
    ]);
    signal_when(&child, libc::SIGINT, "stress vCPUs running", |pid| {
        threads(pid)
            .iter()
            .filter(|t| t.starts_with("vcpu"))
            .count()
            == 2
    });
    let (code, _, err) = finish(child);
    assert_eq!(code, 130, "{err}");
    assert!(
        err.contains("interrupted by SIGINT or SIGTERM during"),
        "{err}"
    );
    assert!(
        !Path::new(&j).exists(),
        "no results file after an interrupted stress run"
    );
    assert!(!err.contains("panicked"), "{err}");
}
