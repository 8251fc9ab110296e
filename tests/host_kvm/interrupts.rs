//! SIGINT and SIGTERM at each phase of `run`, `run --kernel` and `stress` (set-up before
//! any vCPU, mid-run, teardown while results are written): granule ends with exit code
//! 130 and a message, and each result file is complete JSON or absent, never truncated.
//!
//! Each phase is made to last and is recognised from /proc before the signal is sent
//! (prefault threads, vCPU threads, the main thread blocked writing to a full pipe), so
//! the signal lands in the phase named, every time.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::Scratch;

/// How long granule may take to end after the signal: set-up (prefaulting) finishes
/// first, which takes tens of seconds in the emulated arm64 bed.
const END_WITHIN: Duration = Duration::from_secs(120);

/// How long a phase may take to come: a bound against a hang, not a speed test. In the
/// emulated arm64 bed a stress run's set-up alone takes a minute or more while other
/// tests run beside it.
const REACH_WITHIN: Duration = Duration::from_secs(300);

fn start(args: &[&str]) -> Child {
    common::spawn_granule(args)
}

/// Waits (bounded) until `ready` holds for the child, then sends `sig`.
fn signal_when(child: &Child, sig: i32, what: &str, ready: impl Fn(u32) -> bool) {
    let start = Instant::now();
    while !ready(child.id()) {
        assert!(start.elapsed() < REACH_WITHIN, "never reached: {what}");
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

/// Whether a thread of `pid` named `name` exists now.
fn has_thread(pid: u32, name: &str) -> bool {
    common::thread_names(&pid.to_string())
        .iter()
        .any(|t| t == name)
}

/// RAM to prefault for a set-up phase that lasts: long enough on this host for the
/// prefault threads to be seen; the emulated arm64 bed is slow enough with less.
const PREFAULT_ZONE: &str = if cfg!(target_arch = "x86_64") {
    "size=2G,prefault=on"
} else {
    "size=256M,prefault=on"
};

/// `run`: a signal while the vCPUs run ends with the summary (verdict `interrupted`)
/// and both result files whole; one while guest RAM is prefaulted (before any vCPU)
/// stops set-up at once, with no result files.
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
            common::thread_names(&pid.to_string())
                .iter()
                .filter(|t| t.starts_with("vcpu"))
                .count()
                == 2
        }),
        (
            "set-up",
            libc::SIGTERM,
            &["touch", "-m", PREFAULT_ZONE],
            |pid| has_thread(pid, "prefault"),
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
        assert!(!err.contains("panicked"), "{phase}: {err}");
        if phase == "set-up" {
            assert!(
                err.contains("interrupted (SIGINT or SIGTERM)")
                    && err.contains("stopped prefaulting guest RAM"),
                "{phase}: {err}"
            );
            assert!(!Path::new(&j).exists() && !Path::new(&r).exists());
            continue;
        }
        assert!(
            err.contains("interrupted (SIGINT or SIGTERM)"),
            "{phase}: {err}"
        );
        assert_eq!(json(Path::new(&j))["verdict"], "interrupted", "{phase}");
        assert!(json(Path::new(&r)).is_object(), "{phase}");
    }
}

/// `run --kernel`: a signal while guest RAM is prefaulted, before the kernel is loaded
/// or any vCPU exists, stops set-up at once: exit 130, no result files. (This host's
/// KVM cannot run Linux, so the header-only kernel never has to boot.)
#[test]
#[cfg(target_arch = "x86_64")]
fn run_kernel_stops_set_up_with_130_on_a_signal() {
    if !common::kvm_available("interrupts_run_kernel_stops_set_up_with_130_on_a_signal") {
        return;
    }
    let dir = Scratch::new("interrupt-kernel");
    let kernel = dir.file("bzImage");
    std::fs::write(&kernel, common::minimal_bzimage()).unwrap();
    let j = dir.file("boot.json");
    let child = start(&[
        "run",
        "--kernel",
        &kernel,
        "-m",
        PREFAULT_ZONE,
        "--json",
        &j,
        "--timeout",
        "60",
    ]);
    signal_when(&child, libc::SIGINT, "prefaulting", |pid| {
        has_thread(pid, "prefault")
    });
    let (code, _, err) = finish(child);
    assert_eq!(code, 130, "{err}");
    assert!(
        err.contains("interrupted (SIGINT or SIGTERM)") && err.contains("stopped prefaulting"),
        "{err}"
    );
    assert!(
        !Path::new(&j).exists(),
        "no summary for a boot that never began"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Whether the main thread of `pid` is in write(2) on `fd` now, from /proc.
fn main_thread_writing(pid: u32, fd: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| {
        let mut f = s.split_whitespace();
        f.next() == Some(&libc::SYS_write.to_string()) && f.next() == Some(&format!("{fd:#x}"))
    })
}

/// (name, arguments, the fd that is full, what the JSON must say).
type Teardown = (
    &'static str,
    Vec<String>,
    u32,
    fn(&serde_json::Value) -> bool,
);

/// Teardown: the guest has ended and granule is writing its results when the signal
/// comes (its main thread blocked on a full stderr for `run`, stdout for `stress`).
/// The results are finished whole, then granule exits 130 saying the guest had ended.
#[test]
fn a_signal_while_results_are_written_finishes_them_then_exits_130() {
    if !common::kvm_available(
        "interrupts_a_signal_while_results_are_written_finishes_them_then_exits_130",
    ) {
        return;
    }
    use std::process::{Command, Stdio};
    let dir = Scratch::new("interrupt-teardown");
    let cases: Vec<Teardown> = vec![
        (
            "run",
            vec!["run".into(), "hello".into(), "--quiet".into()],
            2,
            |v| v["verdict"] == "ok",
        ),
        // The same exit path as `run`'s; not repeated in the emulated arm64 bed, where
        // a whole stress run costs minutes.
        #[cfg(target_arch = "x86_64")]
        (
            "stress",
            ["stress", "--quiet", "-c", "1", "-m", "1", "-s", "1"]
                .map(String::from)
                .to_vec(),
            1,
            |v| v["runs"].as_array().is_some_and(|r| r.len() == 1),
        ),
    ];
    for (name, mut args, full_fd, whole) in cases {
        let j = dir.file(&format!("{name}.json"));
        args.extend(["--json".to_string(), j.clone()]);
        let (reader, writer) = common::full_pipe();
        let mut cmd = Command::new(common::granule_bin());
        cmd.args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if full_fd == 1 {
            cmd.stdout(Stdio::from(writer));
        } else {
            cmd.stderr(Stdio::from(writer));
        }
        let child = cmd.spawn().expect("cannot start the granule binary");
        // The command holds the pipe's write end: closed here, so the read below ends.
        drop(cmd);
        signal_when(&child, libc::SIGTERM, name, |pid| {
            main_thread_writing(pid, full_fd)
        });
        // Only now is the full pipe read, so the blocked write completes after the signal.
        let full = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut { reader }, &mut text);
            text
        });
        let (code, out, err) = finish(child);
        let all = format!("{out}{err}{}", full.join().unwrap());
        assert_eq!(code, 130, "{name}: {all}");
        assert!(
            all.contains("interrupted (SIGINT or SIGTERM) after the guest had ended"),
            "{name}: {all}"
        );
        assert!(whole(&json(Path::new(&j))), "{name}: {all}");
        assert!(!all.contains("panicked"), "{name}: {all}");
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
        common::thread_names(&pid.to_string())
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
