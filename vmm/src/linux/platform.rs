//! The platform devices every Linux guest gets, whichever bus an architecture puts
//! them on: the console UART (its interrupt through an irqfd, its drained-FIFO signal
//! for the stdin pump), the boot timer and pvpanic, plus the event plumbing that wakes
//! the run loop. Each backend inserts them on its bus and adds its own (x86: ACPI
//! power, the i8042 reset line).

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

use granule_devices::boot_timer::BootTimer;
use granule_devices::pvpanic::PvPanic;
use granule_devices::serial::{EventFdTrigger, InputDrained};
use granule_devices::{EventSink, PlatformEvent, SerialPort};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::console::{BootMarker, ConsoleOut, ConsoleSerial, MarkerSlot, PanicSlot};
use super::BootError;
use crate::console::OutputQueue;
use crate::vm::Vm;

pub struct Platform {
    pub serial: Arc<ConsoleSerial>,
    /// Signalled when the guest drained the UART's input FIFO.
    pub drained: EventFd,
    pub events: Receiver<PlatformEvent>,
    /// Signalled by platform events, vCPU exits and a panic line.
    pub wake: Arc<EventFd>,
    /// Where the devices a backend adds send their events (x86's power devices; arm64
    /// adds none, its power events come from PSCI).
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    pub sink: EventSink,
    pub panic: PanicSlot,
    /// When the console first showed the `--boot-marker` text (never set without one).
    pub marker: MarkerSlot,
    pub pvpanic: Arc<PvPanic>,
    pub boot_timer: Arc<BootTimer>,
}

impl Platform {
    /// The devices for `vm`: the UART's interrupt on GSI `uart_gsi`, its output to
    /// `out` (watched for `marker`), the boot timer waiting for `magic`. Every event that
    /// can end the run also signals `wake`, so the main loop sleeps until something
    /// happens instead of polling.
    pub fn new(
        vm: &mut Vm,
        out: OutputQueue,
        uart_gsi: u32,
        magic: u8,
        marker: Option<String>,
    ) -> Result<Self, BootError> {
        let wake = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(BootError::EventFd)?);
        vm.notify_exits(wake.clone());
        let (tx, events) = channel();
        let sink = EventSink::new(tx, Some(wake.clone()));
        let panic = PanicSlot::default();
        let seen = MarkerSlot::default();
        let marker_watch = marker.map(|text| BootMarker {
            text,
            seen: seen.clone(),
        });
        let irq = EventFd::new(EFD_NONBLOCK).map_err(BootError::EventFd)?;
        vm.fd()
            .register_irqfd(&irq, uart_gsi)
            .map_err(|error| BootError::Kvm {
                what: "KVM_IRQFD (console UART)",
                error,
            })?;
        let drained = EventFd::new(EFD_NONBLOCK).map_err(BootError::EventFd)?;
        let drained_dev = drained.try_clone().map_err(BootError::EventFd)?;
        let serial = Arc::new(SerialPort::with_interrupt(
            EventFdTrigger(irq),
            InputDrained(drained_dev),
            ConsoleOut::new(out, panic.clone(), marker_watch),
        ));
        Ok(Self {
            serial,
            drained,
            events,
            wake,
            boot_timer: Arc::new(BootTimer::new(magic, sink.clone())),
            pvpanic: Arc::new(PvPanic::new(sink.clone())),
            sink,
            panic,
            marker: seen,
        })
    }
}
