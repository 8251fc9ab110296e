//! Device models for granule. They know nothing of KVM: the VMM's vCPU loop hands them
//! guest accesses through a [`bus::Bus`], and they answer with bytes.

pub mod bus;
pub mod serial;

pub use bus::{Access, Bus, BusDevice, BusError};
pub use serial::SerialPort;
