//! KVM's coalesced I/O ring: writes to registered ranges that KVM buffered instead of
//! exiting, delivered by the vCPUs in order.

use std::sync::Mutex;

use granule_devices::Bus;
use kvm_ioctls::VcpuFd;

use super::exit::BusKind;

/// The VM's one ring (every vCPU fd maps the same page). Readers take turns; the count
/// of delivered writes is what the lock guards.
#[derive(Debug, Default)]
pub struct CoalescedRing {
    delivered: Mutex<u64>,
}

impl CoalescedRing {
    /// Writes delivered so far.
    pub fn delivered(&self) -> u64 {
        *self.delivered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers every buffered write, in order, each to the bus its entry names.
    /// `route(bus, addr, data)` performs one write.
    pub(super) fn drain(&self, fd: &mut VcpuFd, mut route: impl FnMut(BusKind, u64, &mut [u8])) {
        let mut delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(Some(e)) = fd.coalesced_mmio_read() {
            let len = (e.len as usize).min(e.data.len());
            // SAFETY: both members of this union are u32s (pad, pio): any bits are valid.
            let is_pio = unsafe { e.__bindgen_anon_1.pio };
            let bus = if is_pio != 0 {
                BusKind::Pio
            } else {
                BusKind::Mmio
            };
            let mut data = e.data;
            route(bus, e.phys_addr, &mut data[..len]);
            *delivered += 1;
        }
    }
}

/// The buses a vCPU's accesses go to, and the ring to drain before each exit.
#[derive(Clone)]
pub struct VcpuIo {
    pub pio: std::sync::Arc<Bus>,
    pub mmio: std::sync::Arc<Bus>,
    pub ring: Option<std::sync::Arc<CoalescedRing>>,
}

impl VcpuIo {
    /// Hands one access to the bus it belongs to.
    pub(super) fn route(&self, bus: BusKind, write: bool, addr: u64, data: &mut [u8]) {
        let bus = match bus {
            BusKind::Pio => &self.pio,
            BusKind::Mmio => &self.mmio,
        };
        if write {
            bus.write(addr, data);
        } else {
            bus.read(addr, data);
        }
    }
}
