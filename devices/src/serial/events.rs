//! The eventfds a Linux guest's UART uses: its interrupt line (registered by the VMM as
//! an irqfd, so KVM injects the IRQ without a trip through userspace) and the "receive
//! FIFO drained" notice that tells the input pump to send more.

use vm_superio::serial::SerialEvents;
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

/// A UART interrupt line backed by an eventfd.
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// Signals its eventfd when the guest has read every queued input byte.
pub struct InputDrained(pub EventFd);

impl SerialEvents for InputDrained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        if let Err(e) = self.0.write(1) {
            tracing::warn!("serial: cannot signal drained input: {e}");
        }
    }
}
