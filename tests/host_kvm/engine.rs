//! The VM and vCPU engine on the host's /dev/kvm, through the library API.

// The built-in guest programs exist for x86_64 only so far (arm64 comes with mmu_stress).
#![cfg(target_arch = "x86_64")]

mod common;

use std::time::{Duration, Instant};

use granule_arch::report::ReportKind;
use granule_arch::touch_shares;
use granule_arch::Program;
use granule_vmm::memory::{Backing, ZoneConfig};
use granule_vmm::programs::{self, launch, RunConfig, Verdict};
use granule_vmm::vcpu::{VcpuEvent, VcpuOutcome};

fn config(program: Program, vcpus: usize, memory: u64) -> RunConfig {
    RunConfig {
        program,
        vcpus,
        zones: vec![ZoneConfig::new(memory, Backing::Anon4k)],
        timeout: Some(Duration::from_secs(120)),
        progress: false,
    }
}

#[test]
fn touch_1g_on_2_vcpus_writes_every_page_with_its_address() {
    if !common::kvm_available("touch_1g_on_2_vcpus_writes_every_page_with_its_address") {
        return;
    }
    let kvm = common::kvm();
    let cfg = config(Program::Touch, 2, 1 << 30);
    let mut l = launch(&kvm, &cfg, std::io::sink()).unwrap();
    let exit = l
        .running
        .wait(
            Some(Instant::now() + Duration::from_secs(120)),
            Duration::from_secs(1),
            |_| {},
        )
        .unwrap();
    assert_eq!(programs::verdict(&exit), Verdict::Ok, "{:?}", exit.outcomes);
    assert_eq!(exit.outcomes, vec![VcpuOutcome::Done { code: 0 }; 2]);

    // Check, independently of granule's own sampling: every 61st page (co-prime with
    // the huge-page strides) of both shares, plus both shares' first and last pages.
    let shares = touch_shares(&l.ram, l.image.reserved_end, 2);
    assert_eq!(shares.len(), 2);
    let mut checked = 0;
    for share in &shares {
        let pages: Vec<u64> = share
            .iter()
            .flat_map(|&(s, e)| (s..e).step_by(4096))
            .collect();
        assert!(pages.len() > 100_000, "each vCPU touches ~half of 1 GiB");
        let ends = [pages[0], pages[pages.len() - 1]];
        let picks = pages.iter().step_by(61).chain(ends.iter());
        for &gpa in picks {
            assert_eq!(l.running.ram().read_u64(gpa).unwrap(), gpa, "page {gpa:#x}");
            checked += 1;
        }
    }
    assert!(checked > 4000);
    // The image's own area is left alone: the GDT's null descriptor is still zero and
    // the first kernel-code descriptor is intact.
    assert_eq!(l.running.ram().read_u64(0x1000).unwrap(), 0);
    assert_eq!(
        l.running.ram().read_u64(0x1008).unwrap(),
        0x00af_9b00_0000_ffff
    );
}

#[test]
fn triple_fault_is_reported_as_shutdown_with_the_faulting_state() {
    if !common::kvm_available("triple_fault_is_reported_as_shutdown_with_the_faulting_state") {
        return;
    }
    let kvm = common::kvm();
    let s = programs::run(
        &kvm,
        &config(Program::TripleFault, 1, 64 << 20),
        std::io::sink(),
    )
    .unwrap();
    assert_eq!(s.verdict, Verdict::Crashed);
    let VcpuOutcome::Shutdown { regs } = &s.outcomes[0] else {
        panic!("expected a shutdown, got {:?}", s.outcomes[0]);
    };
    assert_eq!(regs.cpl, 3, "the workload runs at CPL3");
    assert_eq!(regs.cs, 0x23);
    assert_ne!(regs.rip, 0);
}

#[test]
fn unclaimed_port_reads_all_ones_and_the_guest_carries_on() {
    if !common::kvm_available("unclaimed_port_reads_all_ones_and_the_guest_carries_on") {
        return;
    }
    let kvm = common::kvm();
    let s = programs::run(
        &kvm,
        &config(Program::PortProbe { port: 0x80 }, 1, 64 << 20),
        std::io::sink(),
    )
    .unwrap();
    assert_eq!(s.verdict, Verdict::Ok, "{:?}", s.outcomes);
    assert_eq!(s.values, vec![(0, 0xffff_ffff)]);
}

#[test]
fn unclaimed_mmio_write_is_dropped_and_reads_all_ones() {
    if !common::kvm_available("unclaimed_mmio_write_is_dropped_and_reads_all_ones") {
        return;
    }
    let kvm = common::kvm();
    let probe = Program::MmioProbe { gpa: 0xd000_0000 };
    let s = programs::run(&kvm, &config(probe, 1, 64 << 20), std::io::sink()).unwrap();
    assert_eq!(s.verdict, Verdict::Ok, "{:?}", s.outcomes);
    // The guest stored 0x0123456789abcdef; nothing kept it.
    assert_eq!(s.values, vec![(0, u64::MAX)]);
}

#[test]
fn hello_prints_on_the_serial_port() {
    if !common::kvm_available("hello_prints_on_the_serial_port") {
        return;
    }
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Shared::default();
    let kvm = common::kvm();
    let text = "granule says hi\n".to_string();
    let s = programs::run(
        &kvm,
        &config(Program::Hello { text: text.clone() }, 2, 64 << 20),
        out.clone(),
    )
    .unwrap();
    assert_eq!(s.verdict, Verdict::Ok);
    assert_eq!(
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap(),
        text
    );
}

/// A console whose writes block until the test releases it: a stdout pipe nobody reads.
struct NeverRead(std::sync::mpsc::Receiver<()>);

impl std::io::Write for NeverRead {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The UART never writes to the console itself: a console that is never read leaves
/// the guest running to its end, and the lost output is counted.
#[test]
fn hello_finishes_when_its_console_is_never_read() {
    if !common::kvm_available("hello_finishes_when_its_console_is_never_read") {
        return;
    }
    let kvm = common::kvm();
    let (release, blocked) = std::sync::mpsc::channel();
    let text = "never read\n".repeat(4);
    let mut cfg = config(Program::Hello { text: text.clone() }, 1, 64 << 20);
    cfg.timeout = Some(Duration::from_secs(60));
    let s = programs::run(&kvm, &cfg, NeverRead(blocked)).unwrap();
    assert_eq!(s.verdict, Verdict::Ok, "{:?}", s.outcomes);
    // Nothing reached the console, and all of it is counted as unwritten.
    assert_eq!(
        s.console.unwritten_bytes,
        text.len() as u64,
        "{:?}",
        s.console
    );
    assert_eq!(s.console.dropped_bytes, 0);
    drop(release);
}

/// Pause stops progress, resume restarts it, stop ends every vCPU within the bound.
#[test]
fn spin_pauses_resumes_and_stops() {
    if !common::kvm_available("spin_pauses_resumes_and_stops") {
        return;
    }
    let kvm = common::kvm();
    let mut l = launch(&kvm, &config(Program::Spin, 2, 64 << 20), std::io::sink()).unwrap();
    let progress_within = |l: &mut programs::Launched, d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if let Some(VcpuEvent::Report {
                kind: ReportKind::Progress,
                ..
            }) = l.running.next_event(Duration::from_millis(50))
            {
                return true;
            }
        }
        false
    };
    assert!(
        progress_within(&mut l, Duration::from_secs(30)),
        "spin reports progress"
    );
    assert!(l.running.pause(Duration::from_secs(5)), "both vCPUs park");
    // Drain what was sent before the pause took effect, then expect silence.
    while l.running.next_event(Duration::from_millis(200)).is_some() {}
    assert!(
        !progress_within(&mut l, Duration::from_secs(1)),
        "no progress while paused"
    );
    l.running.resume();
    assert!(
        progress_within(&mut l, Duration::from_secs(30)),
        "progress after resume"
    );
    let t = Instant::now();
    let outcomes = l.running.stop().unwrap();
    assert_eq!(outcomes, vec![VcpuOutcome::Stopped; 2]);
    assert!(t.elapsed() < granule_vmm::vcpu::STOP_TIMEOUT);
}

#[test]
fn timeout_stops_a_guest_that_never_finishes() {
    if !common::kvm_available("timeout_stops_a_guest_that_never_finishes") {
        return;
    }
    let kvm = common::kvm();
    let mut cfg = config(Program::Spin, 2, 64 << 20);
    cfg.timeout = Some(Duration::from_millis(300));
    let s = programs::run(&kvm, &cfg, std::io::sink()).unwrap();
    assert_eq!(s.verdict, Verdict::TimedOut);
    assert_eq!(s.outcomes, vec![VcpuOutcome::Stopped; 2]);
}

/// A port whose reads block until released: a vCPU stuck in a device model.
#[derive(Default)]
struct BlockingPort {
    state: std::sync::Mutex<(bool, bool)>, // (entered, released)
    cv: std::sync::Condvar,
}

impl granule_devices::BusDevice for BlockingPort {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).unwrap();
        }
        data.fill(0);
    }
    fn write(&self, _offset: u64, _data: &[u8]) {}
}

/// Whether `[start, end)` is exactly one mapping of this process.
fn mapped_exactly(start: u64, end: u64) -> bool {
    let want = format!("{start:x}-{end:x} ");
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .any(|l| l.starts_with(&want))
}

/// A vCPU that does not stop when asked (here: blocked in a device model) is reported,
/// and the guest RAM it could still write stays mapped until its thread really ends.
#[test]
fn a_stuck_vcpu_keeps_guest_memory_mapped_until_its_thread_ends() {
    if !common::kvm_available("a_stuck_vcpu_keeps_guest_memory_mapped_until_its_thread_ends") {
        return;
    }
    let kvm = common::kvm();
    let port = std::sync::Arc::new(BlockingPort::default());
    let cfg = config(Program::PortProbe { port: 0x80 }, 1, 64 << 20);
    let l = programs::launch_with(
        &kvm,
        &cfg,
        std::io::sink(),
        vec![(0x80, 4, port.clone())], // the program reads 4 bytes (in eax, dx)
    )
    .unwrap();
    let slot = l.running.ram().slots()[0];
    let (start, end) = (slot.hva, slot.hva + slot.size);
    {
        let s = port.state.lock().unwrap();
        let (s, _) = port
            .cv
            .wait_timeout_while(s, Duration::from_secs(60), |s| !s.0)
            .unwrap();
        assert!(s.0, "the vCPU never read the blocking port");
    }
    let mut running = l.running;
    let err = running.stop().unwrap_err();
    assert!(
        matches!(
            err,
            granule_vmm::vm::VmError::Threads(granule_vmm::vcpu::ThreadsError::Stuck {
                index: 0,
                ..
            })
        ),
        "{err}"
    );
    drop(running);
    assert!(
        mapped_exactly(start, end),
        "guest RAM was unmapped under a vCPU that may still run"
    );
    // Once the device lets go, the thread ends and takes the last reference along.
    port.state.lock().unwrap().1 = true;
    port.cv.notify_all();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mapped_exactly(start, end) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !mapped_exactly(start, end),
        "guest RAM still mapped 30 s after the last vCPU thread ended"
    );
}
