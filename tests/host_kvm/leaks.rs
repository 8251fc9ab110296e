//! A VM's whole life leaves no thread, file descriptor or guest mapping behind.
//! One test in its own binary (process), so other tests cannot disturb the counts.

mod common;

use std::time::Duration;

use granule_arch::Program;
use granule_vmm::memory::{Backing, ZoneConfig};
use granule_vmm::programs::{self, RunConfig, Verdict};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Bytes of address space mapped, from /proc/self/maps.
fn mapped_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
        })
        .sum()
}

#[test]
fn runs_leave_no_threads_fds_or_mappings() {
    if !common::kvm_available("runs_leave_no_threads_fds_or_mappings") {
        return;
    }
    let kvm = common::kvm();
    let run = |program: Program| {
        let cfg = RunConfig {
            program,
            vcpus: 2,
            zones: vec![ZoneConfig::new(256 << 20, Backing::Thp)],
            timeout: Some(Duration::from_millis(300)),
            progress: false,
        };
        programs::run(&kvm, &cfg, std::io::sink()).unwrap().verdict
    };
    // Warm up once so lazily created process state (signal handler, allocator arenas)
    // is not counted as a leak.
    assert_eq!(run(Program::Spin), Verdict::TimedOut);
    let (threads, fds, mapped) = (
        count("/proc/self/task"),
        count("/proc/self/fd"),
        mapped_bytes(),
    );
    for _ in 0..3 {
        assert_eq!(run(Program::Spin), Verdict::TimedOut);
        assert_eq!(run(Program::Touch), Verdict::Ok);
        assert_eq!(run(Program::TripleFault), Verdict::Crashed);
    }
    assert_eq!(
        count("/proc/self/task"),
        threads,
        "vCPU threads left behind"
    );
    assert_eq!(count("/proc/self/fd"), fds, "file descriptors left open");
    let grown = mapped_bytes().saturating_sub(mapped);
    assert!(
        grown < 64 << 20,
        "{grown} bytes of mappings left behind (guest RAM is 256 MiB per run)"
    );
}
