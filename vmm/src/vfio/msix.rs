//! MSI-X of a passed-through function. The guest programs vectors in a table inside a
//! BAR; the table is trapped (never mmapped) and emulated here, and the vectors'
//! host side (GSIs, routes, irqfds, VFIO's eventfds) is a [`VectorSet`]. A masked
//! vector, or a masked or disabled function, is inactive.

use std::sync::{Arc, Mutex, MutexGuard};

use kvm_ioctls::VmFd;
use vfio_bindings::bindings::vfio::VFIO_PCI_MSIX_IRQ_INDEX;
use vfio_ioctls::VfioDevice;

use super::intx::Intx;
use super::msix_table::{MsixTable, ENTRY_SIZE};
use super::vectors::VectorSet;
use crate::devices::irq_routes::GsiRoutes;

const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_MASK: u16 = 1 << 14;

/// The MSI-X capability's layout, read from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixCap {
    /// Offset of the capability in configuration space.
    pub at: u16,
    pub vectors: u16,
    pub table_bar: usize,
    pub table_offset: u64,
    pub pba_bar: usize,
    pub pba_offset: u64,
}

impl MsixCap {
    /// The capability at `at`, from its three dwords.
    pub fn parse(at: u16, dwords: [u32; 3]) -> Self {
        let control = (dwords[0] >> 16) as u16;
        Self {
            at,
            vectors: (control & 0x7ff) + 1,
            table_bar: (dwords[1] & 7) as usize,
            table_offset: u64::from(dwords[1] & !7),
            pba_bar: (dwords[2] & 7) as usize,
            pba_offset: u64::from(dwords[2] & !7),
        }
    }

    /// Bytes of the table.
    pub fn table_len(&self) -> u64 {
        u64::from(self.vectors) * ENTRY_SIZE
    }

    /// Bytes of the pending-bit array.
    pub fn pba_len(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }
}

struct State {
    enabled: bool,
    masked: bool,
    table: MsixTable,
    set: VectorSet,
}

pub struct Msix {
    cap: MsixCap,
    state: Mutex<State>,
}

impl Msix {
    /// MSI-X for `cap` with one GSI per vector from `gsis`.
    pub fn new(
        cap: MsixCap,
        device: (Arc<VfioDevice>, Option<Arc<Intx>>),
        kvm: (Arc<VmFd>, Arc<GsiRoutes>),
        gsis: Vec<u32>,
    ) -> std::io::Result<Self> {
        let table = MsixTable::new(gsis.len());
        let set = VectorSet::new((VFIO_PCI_MSIX_IRQ_INDEX, "MSI-X"), device, kvm, gsis)?;
        Ok(Self {
            cap,
            state: Mutex::new(State {
                enabled: false,
                masked: false,
                table,
                set,
            }),
        })
    }

    pub fn cap(&self) -> &MsixCap {
        &self.cap
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The message control register as the guest sees it.
    pub fn control(&self) -> u16 {
        let s = self.lock();
        (self.cap.vectors - 1)
            | if s.enabled { CONTROL_ENABLE } else { 0 }
            | if s.masked { CONTROL_MASK } else { 0 }
    }

    pub fn write_control(&self, value: u16) {
        let mut s = self.lock();
        s.enabled = value & CONTROL_ENABLE != 0;
        s.masked = value & CONTROL_MASK != 0;
        Self::sync(&mut s);
    }

    /// A read of the table at `offset` (the guest chooses offset and width).
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        self.lock().table.read(offset, data);
    }

    /// A write to the table at `offset`; the vectors follow at once.
    pub fn table_write(&self, offset: u64, data: &[u8]) {
        let mut s = self.lock();
        s.table.write(offset, data);
        Self::sync(&mut s);
    }

    /// All vectors are armed on the device while MSI-X is enabled; each is live while
    /// neither it nor the function is masked.
    fn sync(s: &mut State) {
        let messages = s.table.messages(s.enabled, s.masked);
        let count = if s.enabled { s.set.len() } else { 0 };
        s.set.sync(count, &messages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_says_where_table_and_pba_are() {
        // QEMU's NVMe: 65 vectors, table in BAR 0 at 0x2000, PBA in BAR 0 at 0x3000.
        let c = MsixCap::parse(0x40, [0x0040_0011, 0x2000, 0x3000]);
        assert_eq!((c.vectors, c.table_bar, c.table_offset), (65, 0, 0x2000));
        assert_eq!((c.pba_bar, c.pba_offset), (0, 0x3000));
        assert_eq!((c.table_len(), c.pba_len()), (65 * 16, 16));
        let c = MsixCap::parse(0x70, [0x0007_0011, 0x0000_0004, 0x0000_0804]);
        assert_eq!(
            (c.vectors, c.table_bar, c.pba_bar, c.pba_offset),
            (8, 4, 4, 0x800)
        );
    }
}
