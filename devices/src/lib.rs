//! Device models for granule. They know nothing of KVM: the VMM's vCPU loop hands them
//! guest accesses through a [`bus::Bus`], and they answer with bytes. Interrupts and
//! events leave through eventfds and channels the VMM wires up.

pub mod boot_timer;
pub mod bus;
pub mod pci;
pub mod platform_event;
pub mod power;
pub mod pvpanic;
pub mod serial;

pub use bus::{Access, Bus, BusDevice, BusError};
pub use platform_event::{EventSink, PlatformEvent, ResetSource};
pub use serial::SerialPort;
