//! The run of a Linux guest: vCPU threads plus the main thread's event-manager loop,
//! which pumps console input and waits for whatever ends the run (power events, a
//! panic, a crashed vCPU, the timeout, Ctrl-C); [`super::ending`] decides which.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use granule_devices::PlatformEvent;

use super::backend::{BootBackend, Prepared, SetupMarks};
use super::console::{StdinPump, TerminalMode, WakeListener};
use super::ending::EndJudge;
use super::ms;
use super::platform::Platform;
use super::summary::{BootPhases, BootSummary, BootTimes, ConsoleLoss, End, LeafShare};
use super::{BootError, LinuxConfig};
use crate::console::with_console;
use crate::kernel_payload::background_store::settle;
use crate::kvm::KvmHandle;
use crate::signals::InterruptScope;
use crate::vcpu::VcpuEvent;
use crate::vm::RunningVm;

/// The longest the main loop sleeps without an event (a safety net: every event that
/// ends a run also wakes it).
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Boots `cfg.kernel` and runs it until it ends; console on stdin/stdout.
pub fn boot(kvm: &KvmHandle, cfg: &LinuxConfig) -> Result<BootSummary, BootError> {
    // A duplicate of fd 1, written only by the console writer thread.
    let stdout = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(BootError::Console)?;
    let (result, console) = with_console(Box::new(File::from(stdout)), |queue| {
        super::HostBoot::prepare(kvm, cfg, queue).and_then(|p| run(p, cfg))
    })
    .map_err(BootError::Console)?;
    let mut summary = result?;
    summary.console = console;
    Ok(summary)
}

fn run(p: Prepared, cfg: &LinuxConfig) -> Result<BootSummary, BootError> {
    let Prepared {
        vm,
        platform,
        format,
        executed,
        guest_page_size,
        passthrough,
        marks,
        decompression,
        cache_store,
    } = p;
    let Platform {
        serial,
        drained,
        events,
        wake,
        panic,
        pvpanic,
        marker,
        ..
    } = platform;
    // Dropped on every return below: handlers restored, wake fd unpublished.
    let interrupts = InterruptScope::install(wake.clone());
    let mut manager = EventManager::<Box<dyn MutEventSubscriber>>::new()
        .map_err(|e| BootError::EventLoop(format!("{e:?}")))?;
    let pump = StdinPump::new(drained, serial).map_err(BootError::EventFd)?;
    manager.add_subscriber(Box::new(pump));
    manager.add_subscriber(Box::new(WakeListener(wake)));
    let _terminal = TerminalMode::raw_if_tty();

    let vcpus_started = cfg.process_start.elapsed();
    let mut running = vm.start(false)?;
    let deadline = cfg.timeout.map(|t| Instant::now() + t);
    let mut judge = EndJudge::new(panic, Box::new(move || pvpanic.driver_bound()), deadline);
    let end = wait_for_end(&mut manager, &events, &mut running, &mut judge, &interrupts)?;
    // Outcomes after a stop are all "stopped" or already recorded; the end says why.
    running.stop()?;
    // Before the footprint: the decompressed kernel is freed once its entry is written.
    let decompression = settle(decompression, cache_store);
    let (vm_stats, footprint) = crate::footprint::stats_then_footprint(running.fd(), running.ram());
    let stage2 = stage2_report(&running, guest_page_size, &executed, vm_stats);
    let devices = predict_bars(passthrough.devices.clone(), guest_page_size);
    Ok(BootSummary {
        kernel: cfg.kernel.clone(),
        format,
        initrd: cfg.initrd.clone(),
        cmdline: cfg.cmdline.clone(),
        vcpus: cfg.vcpus,
        memory_bytes: cfg.zones.iter().map(|z| z.size).sum(),
        exit_code: end.exit_code(),
        end,
        boot: boot_times(
            cfg,
            &marks,
            vcpus_started,
            footprint.first_kvm_run_ms,
            judge.userspace,
            marker.get().copied(),
        ),
        boot_marker: cfg.boot_marker.clone(),
        stage2_share: stage2.observed.as_ref().map(LeafShare::from_counts),
        stage2,
        console: ConsoleLoss::default(),
        passthrough: devices,
        footprint,
        exits: running.exit_counts(),
        decompression,
    })
}

/// The boot's marks in ms after granule's start, and the phases between them.
fn boot_times(
    cfg: &LinuxConfig,
    marks: &SetupMarks,
    vcpus_started: Duration,
    first_kvm_run_ms: Option<f64>,
    userspace: Option<Instant>,
    marker: Option<Instant>,
) -> BootTimes {
    let after_start = |at: Instant| ms(at.saturating_duration_since(cfg.process_start));
    let memory_mapped_ms = after_start(marks.memory_mapped);
    let kernel_loaded_ms = after_start(marks.kernel_loaded);
    let userspace_ms = userspace.map(after_start);
    let marker_ms = marker.map(after_start);
    BootTimes {
        memory_mapped_ms,
        kernel_loaded_ms,
        vcpus_started_ms: ms(vcpus_started),
        first_kvm_run_ms,
        userspace_ms,
        marker_ms,
        phases: BootPhases::between(
            memory_mapped_ms,
            kernel_loaded_ms,
            first_kvm_run_ms,
            userspace_ms,
            marker_ms,
        ),
    }
}

/// Each passed-through BAR's predicted leaves on this host.
fn predict_bars(
    mut devices: Vec<crate::vfio::Passthrough>,
    guest_page: u64,
) -> Vec<crate::vfio::Passthrough> {
    if devices.is_empty() {
        return devices;
    }
    let target = crate::report::host_target(crate::probe::Backend::detect().kind, guest_page);
    let limit = crate::vfio::leaves::host_pfnmap_limit();
    for b in devices.iter_mut().flat_map(|d| d.bars.iter_mut()) {
        b.predicted = crate::vfio::leaves::predict(&b.areas, target, limit);
    }
    devices
}

/// Runs the event loop until the judge names an end.
fn wait_for_end(
    manager: &mut EventManager<Box<dyn MutEventSubscriber>>,
    events: &Receiver<PlatformEvent>,
    running: &mut RunningVm,
    judge: &mut EndJudge,
    interrupts: &InterruptScope,
) -> Result<End, BootError> {
    loop {
        // First: a request to stop made during set-up ends the run before the guest's
        // own events (on a host that cannot run it, a crash) are read.
        if interrupts.interrupted() {
            return Ok(End::Interrupted);
        }
        let wait = judge.next_wake(Instant::now(), MAX_WAIT);
        // Round up so a deadline is reached, not spun on in zero-length waits.
        let wait_ms = i32::try_from(wait.as_millis() + 1).unwrap_or(i32::MAX);
        match manager.run_with_timeout(wait_ms) {
            Ok(_) => {}
            Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EINTR => {}
            Err(e) => return Err(BootError::EventLoop(format!("{e:?}"))),
        }
        let now = Instant::now();
        while let Ok(ev) = events.try_recv() {
            if let Some(end) = judge.platform(ev, now) {
                return Ok(end);
            }
        }
        while let Some(ev) = running.next_event(Duration::ZERO) {
            if let VcpuEvent::Exited { vcpu, outcome } = ev {
                if let Some(end) = judge.vcpu_ended(vcpu, outcome, now) {
                    return Ok(end);
                }
            }
        }
        if let Some(end) = judge.tick(now, interrupts.interrupted()) {
            return Ok(end);
        }
    }
}

/// The stage-2 report after boot: the guest may have touched any of its RAM, so the
/// expected counts are upper bounds over all of it.
fn stage2_report(
    running: &RunningVm,
    guest_page: u64,
    executed: &[(u64, u64)],
    vm_stats: Option<crate::observe::stats::Stats>,
) -> crate::report::Stage2Report {
    let backend = crate::probe::Backend::detect().kind;
    let all: Vec<(u64, u64)> = running
        .ram()
        .ranges()
        .iter()
        .map(|r| (r.gpa, r.end()))
        .collect();
    crate::report::build(crate::report::RunFacts {
        ram: running.ram(),
        backend,
        target: crate::report::host_target(backend, guest_page),
        write_tracked: vec![],
        executed: executed.to_vec(),
        accessed_min: vec![],
        accessed_max: all,
        vm_stats,
    })
}
