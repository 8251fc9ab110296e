//! Deciding how a Linux guest's run ended, from what the platform devices, the vCPU
//! threads, the clock and the console report. Pure logic: the main loop feeds it.
//!
//! A panic is known from the kernel itself: its pvpanic driver writes the device from
//! the panic path. The console's "Kernel panic - not syncing" line only supplies the
//! reason, since any guest process can print it. For a kernel without the pvpanic
//! driver bound (a panic before init loaded it, or a kernel built without it), a panic
//! line that is followed within [`PANIC_GRACE`] by a reset or a triple fault (what
//! `panic=-1` does) still counts as a panic.

use std::time::{Duration, Instant};

use granule_devices::{PlatformEvent, ResetSource};

use super::console::PanicSlot;
use super::summary::End;
use crate::vcpu::VcpuOutcome;

/// How long a panicking kernel may keep printing (its backtrace) after signalling the
/// panic before granule ends the VM; with `panic=N` it resets sooner and ends it so.
pub const PANIC_GRACE: Duration = Duration::from_secs(2);

const PVPANIC: &str = "pvpanic";
const LINE_THEN_RESET: &str = "the console's panic line and the reset after it";

pub struct EndJudge {
    panic_line: PanicSlot,
    /// Whether a pvpanic driver bound in the guest (it read the device).
    pvpanic_bound: Box<dyn Fn() -> bool + Send>,
    pvpanic_at: Option<Instant>,
    deadline: Option<Instant>,
    /// When the guest's init wrote the boot timer.
    pub userspace: Option<Instant>,
}

impl EndJudge {
    pub fn new(
        panic_line: PanicSlot,
        pvpanic_bound: Box<dyn Fn() -> bool + Send>,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            panic_line,
            pvpanic_bound,
            pvpanic_at: None,
            deadline,
            userspace: None,
        }
    }

    fn line(&self) -> Option<(String, Instant)> {
        self.panic_line.lock().ok().and_then(|l| l.clone())
    }

    /// The panic as an end, if the kernel signalled one (or, without a pvpanic driver,
    /// printed its line within the grace period before `now`).
    fn panic_end(&self, now: Instant) -> Option<End> {
        let line = self.line();
        let reason = |fallback: &str| {
            line.as_ref()
                .map_or_else(|| fallback.to_string(), |(l, _)| l.clone())
        };
        if self.pvpanic_at.is_some() {
            return Some(End::Panic {
                reason: reason("the kernel signalled a panic (no panic line on the console)"),
                via: PVPANIC.into(),
            });
        }
        let recent = line
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) <= PANIC_GRACE);
        (recent && !(self.pvpanic_bound)()).then(|| End::Panic {
            reason: reason(""),
            via: LINE_THEN_RESET.into(),
        })
    }

    /// A platform device's event; the end it implies, if any.
    pub fn platform(&mut self, event: PlatformEvent, now: Instant) -> Option<End> {
        match event {
            PlatformEvent::UserspaceReached(at) => {
                self.userspace = Some(at);
                None
            }
            PlatformEvent::Panicked { .. } => {
                self.pvpanic_at.get_or_insert(now);
                None
            }
            PlatformEvent::PowerOff => Some(self.panic_end(now).unwrap_or(End::PowerOff)),
            PlatformEvent::Reset(via) => Some(
                self.panic_end(now).unwrap_or(End::Reboot {
                    via: match via {
                        ResetSource::AcpiResetRegister => "ACPI reset register",
                        ResetSource::I8042 => "i8042 reset",
                    }
                    .into(),
                }),
            ),
        }
    }

    /// A vCPU thread ended with `outcome`; the end it implies, if any.
    pub fn vcpu_ended(&mut self, vcpu: usize, outcome: VcpuOutcome, now: Instant) -> Option<End> {
        match outcome {
            VcpuOutcome::Stopped => None,
            VcpuOutcome::PowerOff => Some(self.panic_end(now).unwrap_or(End::PowerOff)),
            VcpuOutcome::Reset => Some(self.panic_end(now).unwrap_or(End::Reboot {
                via: "PSCI SYSTEM_RESET".into(),
            })),
            // A triple fault is how a panicking kernel without a reset path stops.
            VcpuOutcome::Shutdown { .. } => {
                self.panic_end(now).or(Some(End::Crashed { vcpu, outcome }))
            }
            _ => Some(End::Crashed { vcpu, outcome }),
        }
    }

    /// The end the clock or a signal implies at `now`, if any.
    pub fn tick(&mut self, now: Instant, interrupted: bool) -> Option<End> {
        if self
            .pvpanic_at
            .is_some_and(|at| now.saturating_duration_since(at) > PANIC_GRACE)
        {
            return self.panic_end(now);
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return Some(End::TimedOut);
        }
        interrupted.then_some(End::Interrupted)
    }

    /// How long the main loop may sleep before [`EndJudge::tick`] has news.
    pub fn next_wake(&self, now: Instant, at_most: Duration) -> Duration {
        [
            Some(at_most),
            self.deadline.map(|d| d.saturating_duration_since(now)),
            self.pvpanic_at
                .map(|at| (at + PANIC_GRACE).saturating_duration_since(now)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(at_most)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::RegsSnapshot;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn judge(bound: bool) -> (EndJudge, PanicSlot) {
        let slot = PanicSlot::default();
        let b = Arc::new(AtomicBool::new(bound));
        let j = EndJudge::new(
            slot.clone(),
            Box::new(move || b.load(Ordering::SeqCst)),
            None,
        );
        (j, slot)
    }

    fn print_line(slot: &PanicSlot, text: &str, at: Instant) {
        *slot.lock().unwrap() = Some((text.into(), at));
    }

    #[test]
    fn a_panic_line_alone_never_ends_the_run() {
        let (mut j, slot) = judge(true);
        let t0 = Instant::now();
        print_line(&slot, "Kernel panic - not syncing: faked", t0);
        assert_eq!(j.tick(t0 + Duration::from_secs(60), false), None);
        // ...and with the driver bound, a reboot right after it is a reboot.
        let end = j.platform(PlatformEvent::Reset(ResetSource::AcpiResetRegister), t0);
        assert!(matches!(end, Some(End::Reboot { .. })), "{end:?}");
    }

    #[test]
    fn pvpanic_ends_the_run_with_the_console_line_as_the_reason() {
        let (mut j, slot) = judge(true);
        let t0 = Instant::now();
        print_line(
            &slot,
            "Kernel panic - not syncing: sysrq triggered crash",
            t0,
        );
        let panicked = PlatformEvent::Panicked {
            crash_kernel_loaded: false,
        };
        assert_eq!(j.platform(panicked, t0), None);
        assert_eq!(j.tick(t0 + Duration::from_secs(1), false), None, "grace");
        assert_eq!(j.next_wake(t0, Duration::from_secs(9)), PANIC_GRACE);
        let end = j.tick(t0 + PANIC_GRACE * 2, false).unwrap();
        assert_eq!(
            end,
            End::Panic {
                reason: "Kernel panic - not syncing: sysrq triggered crash".into(),
                via: PVPANIC.into()
            }
        );
        // The reset panic=-1 makes is the same panic.
        let (mut j, _) = judge(true);
        j.platform(panicked, t0);
        let end = j.platform(PlatformEvent::Reset(ResetSource::AcpiResetRegister), t0);
        assert!(matches!(end, Some(End::Panic { .. })), "{end:?}");
    }

    #[test]
    fn without_a_pvpanic_driver_a_line_then_a_reset_or_triple_fault_is_a_panic() {
        let t0 = Instant::now();
        let (mut j, slot) = judge(false);
        print_line(&slot, "Kernel panic - not syncing: VFS", t0);
        let end = j.platform(PlatformEvent::Reset(ResetSource::I8042), t0);
        assert!(
            matches!(&end, Some(End::Panic { via, .. }) if via == LINE_THEN_RESET),
            "{end:?}"
        );
        let (mut j, slot) = judge(false);
        print_line(&slot, "Kernel panic - not syncing: VFS", t0);
        let shutdown = VcpuOutcome::Shutdown {
            regs: RegsSnapshot::default(),
        };
        let end = j.vcpu_ended(0, shutdown.clone(), t0 + Duration::from_millis(10));
        assert!(matches!(end, Some(End::Panic { .. })), "{end:?}");
        // A line long before the reset is not this reset's reason.
        let later = t0 + PANIC_GRACE * 3;
        let (mut j, slot) = judge(false);
        print_line(&slot, "Kernel panic - not syncing: old", t0);
        let end = j.vcpu_ended(1, shutdown, later);
        assert!(matches!(end, Some(End::Crashed { vcpu: 1, .. })), "{end:?}");
    }

    /// arm64: PSCI SYSTEM_OFF and SYSTEM_RESET arrive as vCPU outcomes and end the run
    /// like ACPI's: power-off, reboot, or (right after a panic line, without a pvpanic
    /// driver) a panic; a panic line long before a power-off is only text.
    #[test]
    fn psci_power_off_and_reset_end_the_run_like_acpi() {
        let t0 = Instant::now();
        let (mut j, _) = judge(false);
        assert_eq!(
            j.vcpu_ended(0, VcpuOutcome::PowerOff, t0),
            Some(End::PowerOff)
        );
        let (mut j, _) = judge(false);
        assert_eq!(
            j.vcpu_ended(1, VcpuOutcome::Reset, t0),
            Some(End::Reboot {
                via: "PSCI SYSTEM_RESET".into()
            })
        );
        let (mut j, slot) = judge(false);
        print_line(
            &slot,
            "Kernel panic - not syncing: sysrq triggered crash",
            t0,
        );
        let end = j.vcpu_ended(0, VcpuOutcome::Reset, t0 + Duration::from_millis(50));
        assert!(
            matches!(&end, Some(End::Panic { via, .. }) if via == LINE_THEN_RESET),
            "{end:?}"
        );
        // What the guest's init does in the bed's fake-panic case: a line, 3 s, poweroff.
        let (mut j, slot) = judge(false);
        print_line(&slot, "Kernel panic - not syncing: printed by init", t0);
        let end = j.vcpu_ended(0, VcpuOutcome::PowerOff, t0 + Duration::from_secs(3));
        assert_eq!(end, Some(End::PowerOff));
    }

    #[test]
    fn timeout_interrupt_and_power_off() {
        let t0 = Instant::now();
        let mut j = EndJudge::new(
            PanicSlot::default(),
            Box::new(|| false),
            Some(t0 + Duration::from_secs(5)),
        );
        assert_eq!(j.tick(t0, false), None);
        assert_eq!(j.tick(t0, true), Some(End::Interrupted));
        assert_eq!(
            j.next_wake(t0, Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            j.tick(t0 + Duration::from_secs(5), false),
            Some(End::TimedOut)
        );
        assert_eq!(j.platform(PlatformEvent::PowerOff, t0), Some(End::PowerOff));
        assert_eq!(j.vcpu_ended(0, VcpuOutcome::Stopped, t0), None);
    }
}
