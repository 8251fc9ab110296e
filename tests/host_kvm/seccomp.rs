//! `--seccomp`: every granule thread runs under its own filter, and a call outside a
//! vCPU thread's list ends granule (on), is let through (log), or nothing is installed
//! (off).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::granule;

/// `hello` whose vCPU thread calls socket(2) after its filter is in.
#[test]
fn a_forbidden_call_from_a_vcpu_thread_ends_granule_only_when_on() {
    if !common::kvm_available(
        "seccomp_a_forbidden_call_from_a_vcpu_thread_ends_granule_only_when_on",
    ) {
        return;
    }
    let socket = libc::SYS_socket.to_string();
    let (code, out, err) = granule(&["run", "hello", "--seccomp-probe"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "seccomp: a vCPU thread made system call {socket},"
        )) && !out.contains("Hello"),
        "{err}"
    );
    for mode in ["log", "off"] {
        let (code, out, err) = granule(&["run", "hello", "--seccomp-probe", "--seccomp", mode]);
        assert_eq!(code, 0, "--seccomp {mode}: {err}");
        assert!(
            out.contains("Hello from a granule guest!"),
            "--seccomp {mode}: {out}"
        );
        assert!(!err.contains("seccomp"), "--seccomp {mode}: {err}");
    }
}

/// (thread name, "Seccomp:" mode, "Seccomp_filters:") of every thread of `pid`.
fn thread_filters(pid: u32) -> Vec<(String, u32, u32)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.ok()?.path().join("status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            Some((
                field("Name:")?,
                field("Seccomp:")?.parse().ok()?,
                field("Seccomp_filters:")?.parse().ok()?,
            ))
        })
        .collect()
}

/// While `spin` runs on 2 vCPUs, /proc shows each thread in filter mode with its own
/// filter: the main thread one, each vCPU and the console writer one (installed before
/// the main thread's, so not stacked on it). With `off`, none.
#[test]
fn every_thread_of_a_running_guest_has_its_filter() {
    if !common::kvm_available("seccomp_every_thread_of_a_running_guest_has_its_filter") {
        return;
    }
    for (mode, want) in [("on", (2, 1)), ("off", (0, 0))] {
        let mut child = Command::new(common::granule_bin())
            .args([
                "run",
                "spin",
                "-c",
                "2",
                "--timeout",
                "60",
                "--quiet",
                "--seccomp",
                mode,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the state to appear: both vCPU threads and the main thread filtered.
        let start = Instant::now();
        let mut seen = thread_filters(child.id());
        let ready = |s: &[(String, u32, u32)]| {
            s.iter().filter(|t| t.0.starts_with("vcpu")).count() == 2
                && (mode == "off" || s.iter().all(|t| t.1 == 2))
        };
        while !ready(&seen) && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
            seen = thread_filters(child.id());
        }
        let _ = child.kill();
        let _ = child.wait();
        let names: Vec<&str> = seen.iter().map(|t| t.0.as_str()).collect();
        for name in ["granule", "vcpu0", "vcpu1", "console-out"] {
            assert!(names.contains(&name), "--seccomp {mode}: threads {seen:?}");
        }
        for t in &seen {
            assert_eq!(
                (t.1, t.2),
                want,
                "--seccomp {mode}: thread {t:?} of {seen:?}"
            );
        }
    }
}
