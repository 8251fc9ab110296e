//! Every way a VM's life can end (finished, crashed, timed out, interrupted by a
//! signal, failed in set-up) leaves no thread, file descriptor, mapping or hugetlb page
//! behind, from /proc and the pool's counters. One test in its own binary (process), so
//! other tests cannot disturb the counts.

// The built-in guest programs exist for x86_64 only so far (arm64 comes with mmu_stress).
#![cfg(target_arch = "x86_64")]

mod common;

use std::time::{Duration, Instant};

use granule_arch::Program;
use granule_vmm::memory::{Backing, ZoneConfig};
use granule_vmm::programs::{self, RunConfig, Verdict};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Sends SIGTERM to this process once `vcpus` vCPU threads run (bounded wait).
fn interrupt_when_running(vcpus: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        while common::thread_names("self")
            .iter()
            .filter(|t| t.starts_with("vcpu"))
            .count()
            < vcpus
        {
            assert!(start.elapsed() < Duration::from_secs(60), "vCPUs never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: kill(2) on this process; the run's scope handles SIGTERM while its
        // vCPUs exist (spin never ends on its own).
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    })
}

/// Threads (not counting those already exiting), fds, mapped bytes and free 2 MiB
/// hugetlb pages now.
fn resources() -> (usize, usize, u64, u64) {
    (
        common::live_threads(),
        count("/proc/self/fd"),
        common::mapped_bytes(),
        common::free_hugepages(2048),
    )
}

#[test]
fn every_exit_path_leaves_no_threads_fds_mappings_or_hugetlb_pages() {
    if !common::kvm_available(
        "leaks_every_exit_path_leaves_no_threads_fds_mappings_or_hugetlb_pages",
    ) {
        return;
    }
    let _pool = common::PoolGuard::reserve(64);
    let kvm = common::kvm();
    let run = |program: Program, backing: Backing, size: u64, timeout: u64| {
        let cfg = RunConfig {
            program,
            vcpus: 2,
            zones: vec![ZoneConfig::new(size, backing)],
            timeout: Some(Duration::from_millis(timeout)),
            progress: false,
        };
        programs::run(&kvm, &cfg, std::io::sink()).map(|s| s.verdict)
    };
    let every_path = || {
        let (t, thp, h2m) = (Program::Touch, Backing::Thp, Backing::Hugetlb2m);
        let spin = run(Program::Spin, thp, 256 << 20, 300);
        assert_eq!(spin.unwrap(), Verdict::TimedOut);
        assert_eq!(run(t.clone(), thp, 256 << 20, 60_000).unwrap(), Verdict::Ok);
        assert_eq!(run(t.clone(), h2m, 64 << 20, 60_000).unwrap(), Verdict::Ok);
        let triple = run(Program::TripleFault, h2m, 64 << 20, 60_000);
        assert_eq!(triple.unwrap(), Verdict::Crashed);
        let signal = interrupt_when_running(2);
        let interrupted = run(Program::Spin, h2m, 64 << 20, 60_000);
        signal.join().unwrap();
        assert_eq!(interrupted.unwrap(), Verdict::Interrupted);
        // Set-up fails: the pool (64 pages) is too small for 256 MiB.
        assert!(run(t, h2m, 256 << 20, 60_000).is_err());
    };
    // Once first, so lazily created process state (signal handlers, an allocator
    // arena per new thread) is not counted as a leak.
    every_path();
    let before = resources();
    for _ in 0..3 {
        every_path();
    }
    let after = resources();
    assert_eq!(
        after.0,
        before.0,
        "vCPU or helper threads left behind; threads now: {:?}",
        common::thread_names("self")
    );
    assert_eq!(after.1, before.1, "file descriptors left open");
    let grown = after.2.saturating_sub(before.2);
    assert!(
        grown < 64 << 20,
        "{grown} bytes of mappings left behind (guest RAM is 64-256 MiB per run)"
    );
    assert_eq!(after.3, before.3, "2 MiB hugetlb pages not given back");
}
