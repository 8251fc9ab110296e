//! A VM's whole life leaves no thread, file descriptor or guest mapping behind.
//! One test in its own binary (process), so other tests cannot disturb the counts.

// The built-in guest programs exist for x86_64 only so far (arm64 comes with mmu_stress).
#![cfg(target_arch = "x86_64")]

mod common;

use std::time::Duration;

use granule_arch::Program;
use granule_vmm::memory::{Backing, ZoneConfig};
use granule_vmm::programs::{self, RunConfig, Verdict};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn runs_leave_no_threads_fds_or_mappings() {
    if !common::kvm_available("runs_leave_no_threads_fds_or_mappings") {
        return;
    }
    let kvm = common::kvm();
    let run = |program: Program| {
        let cfg = RunConfig {
            program: program.clone(),
            vcpus: 2,
            zones: vec![ZoneConfig::new(256 << 20, Backing::Thp)],
            // `spin` never ends: its timeout is how it stops. The others get ample time.
            timeout: Some(if program == Program::Spin {
                Duration::from_millis(300)
            } else {
                Duration::from_secs(60)
            }),
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
        common::mapped_bytes(),
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
    let grown = common::mapped_bytes().saturating_sub(mapped);
    assert!(
        grown < 64 << 20,
        "{grown} bytes of mappings left behind (guest RAM is 256 MiB per run)"
    );
}
