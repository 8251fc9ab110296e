//! The run of a Linux guest: vCPU threads plus the main thread's event-manager loop,
//! which pumps console input and watches for power events, panics, crashed vCPUs, the
//! timeout and Ctrl-C.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use granule_devices::{PlatformEvent, ResetSource};
use vmm_sys_util::signal::register_signal_handler;

use super::console::{StdinPump, TerminalMode, WakeListener};
use super::setup::{prepare, Prepared};
use super::summary::{BootSummary, BootTimes, End, LeafShare};
use super::{BootError, LinuxConfig};
use crate::kvm::KvmHandle;
use crate::vcpu::{VcpuEvent, VcpuOutcome};
use crate::vm::RunningVm;

/// The longest the main loop sleeps without an event (a safety net: every event that
/// ends a run also wakes it).
const MAX_WAIT: Duration = Duration::from_secs(1);
/// How long a panicking kernel may keep printing (its backtrace) before granule ends
/// the VM; a kernel with `panic=N` resets sooner and ends it that way.
const PANIC_GRACE: Duration = Duration::from_secs(2);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The main loop's wake-up eventfd, for the signal handler (-1: none).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_interrupt(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: write(2) is async-signal-safe; `one` lives for the call and is the
        // 8 bytes an eventfd expects. The fd stays open while WAKE_FD holds it (it is
        // reset before the eventfd is dropped).
        unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Boots `cfg.kernel` and runs it until it ends; console on stdin/stdout.
pub fn boot(kvm: &KvmHandle, cfg: &LinuxConfig) -> Result<BootSummary, BootError> {
    let Prepared {
        vm,
        vcpus,
        serial,
        drained,
        events,
        wake,
        panic,
        format,
        guest_page_size,
    } = prepare(kvm, cfg, Box::new(std::io::stdout()))?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        if let Err(e) = register_signal_handler(sig, on_interrupt) {
            tracing::warn!("cannot handle signal {sig}: {e}");
        }
    }
    let mut manager = EventManager::<Box<dyn MutEventSubscriber>>::new()
        .map_err(|e| BootError::EventLoop(format!("{e:?}")))?;
    let pump = StdinPump::new(drained, serial).map_err(BootError::EventFd)?;
    manager.add_subscriber(Box::new(pump));
    WAKE_FD.store(wake.as_raw_fd(), Ordering::SeqCst);
    manager.add_subscriber(Box::new(WakeListener(wake)));
    let _terminal = TerminalMode::raw_if_tty();

    let vcpus_started = cfg.process_start.elapsed();
    let mut running = vm.start(vcpus, None)?;
    let deadline = cfg.timeout.map(|t| Instant::now() + t);
    let mut userspace = None;
    let mut end = None;
    while end.is_none() {
        let panic_at = panic
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|(_, at)| *at));
        let wait = [
            Some(MAX_WAIT),
            deadline.map(|d| d.saturating_duration_since(Instant::now())),
            panic_at.map(|at| (at + PANIC_GRACE).saturating_duration_since(Instant::now())),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(MAX_WAIT);
        // Round up so a deadline is reached, not spun on in zero-length waits.
        let wait_ms = i32::try_from(wait.as_millis() + 1).unwrap_or(i32::MAX);
        match manager.run_with_timeout(wait_ms) {
            Ok(_) => {}
            Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EINTR => {}
            Err(e) => return Err(BootError::EventLoop(format!("{e:?}"))),
        }
        let panicked = panic.lock().ok().and_then(|p| p.clone());
        while let Ok(ev) = events.try_recv() {
            match ev {
                PlatformEvent::UserspaceReached(at) => {
                    userspace = Some(at.saturating_duration_since(cfg.process_start));
                }
                PlatformEvent::PowerOff => end = end.or(Some(End::PowerOff)),
                PlatformEvent::Reset(via) => {
                    let e = match &panicked {
                        Some((reason, _)) => End::Panic {
                            reason: reason.clone(),
                        },
                        None => End::Reboot {
                            via: match via {
                                ResetSource::AcpiResetRegister => "ACPI reset register",
                                ResetSource::I8042 => "i8042 reset",
                            }
                            .into(),
                        },
                    };
                    end = end.or(Some(e));
                }
            }
        }
        end = end
            .or_else(|| crashed(&mut running, panicked.as_ref().map(|p| &p.0)))
            .or_else(|| match &panicked {
                Some((reason, at)) if at.elapsed() > PANIC_GRACE => Some(End::Panic {
                    reason: reason.clone(),
                }),
                _ => None,
            })
            .or_else(|| {
                deadline
                    .filter(|d| Instant::now() >= *d)
                    .map(|_| End::TimedOut)
            })
            .or_else(|| {
                INTERRUPTED
                    .load(Ordering::SeqCst)
                    .then_some(End::Interrupted)
            });
    }
    WAKE_FD.store(-1, Ordering::SeqCst);
    let end = end.unwrap_or(End::Interrupted);
    // Outcomes after a stop are all "stopped" or already recorded; the end says why.
    running.stop()?;
    let stage2 = stage2_report(&running, guest_page_size);
    Ok(BootSummary {
        kernel: cfg.kernel.clone(),
        format,
        initrd: cfg.initrd.clone(),
        cmdline: cfg.cmdline.clone(),
        vcpus: cfg.vcpus,
        memory_bytes: cfg.zones.iter().map(|z| z.size).sum(),
        exit_code: end.exit_code(),
        end,
        boot: BootTimes {
            vcpus_started_ms: ms(vcpus_started),
            userspace_ms: userspace.map(ms),
        },
        stage2_share: stage2.observed.as_ref().map(LeafShare::from_counts),
        stage2,
    })
}

/// The first vCPU that ended badly, as the run's end. A triple fault after a panic
/// line is the panic.
fn crashed(running: &mut RunningVm, panic: Option<&String>) -> Option<End> {
    while let Some(ev) = running.next_event(Duration::ZERO) {
        let VcpuEvent::Exited { vcpu, outcome } = ev else {
            continue;
        };
        match (&outcome, panic) {
            (VcpuOutcome::Stopped, _) => {}
            (VcpuOutcome::Shutdown { .. }, Some(reason)) => {
                return Some(End::Panic {
                    reason: reason.clone(),
                })
            }
            _ => return Some(End::Crashed { vcpu, outcome }),
        }
    }
    None
}

/// The stage-2 report after boot: the guest may have touched any of its RAM, so the
/// expected counts are upper bounds over all of it.
fn stage2_report(running: &RunningVm, guest_page: u64) -> crate::report::Stage2Report {
    let backend = crate::probe::Backend::detect().kind;
    let all: Vec<(u64, u64)> = running
        .ram
        .ranges()
        .iter()
        .map(|r| (r.gpa, r.end()))
        .collect();
    let vm_stats = crate::observe::stats::read(&running.fd)
        .map_err(|e| tracing::warn!("no KVM statistics: {e}"))
        .ok();
    crate::report::build(crate::report::RunFacts {
        ram: &running.ram,
        backend,
        target: crate::report::host_target(backend, guest_page),
        write_tracked: vec![],
        accessed_min: vec![],
        accessed_max: all,
        vm_stats,
    })
}
