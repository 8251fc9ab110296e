//! ECAM: configuration space memory-mapped, 4 KiB per function, 1 MiB per bus.

use std::sync::Arc;

use super::root::{PciAddress, PciRoot};
use crate::BusDevice;

/// The ECAM space of one bus.
pub const ECAM_BUS_SIZE: u64 = 1 << 20;

pub struct PciConfigMmio {
    root: Arc<PciRoot>,
}

impl PciConfigMmio {
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root }
    }

    /// The access at `offset`, when it stays inside one dword.
    fn target(offset: u64, len: usize) -> Option<PciAddress> {
        let in_dword = (offset & 3) + len as u64 <= 4;
        in_dword.then_some(PciAddress {
            bus: (offset >> 20) as u8,
            device: ((offset >> 15) & 0x1f) as u8,
            function: ((offset >> 12) & 7) as u8,
            offset: (offset & 0xfff) as u16,
        })
    }
}

impl BusDevice for PciConfigMmio {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match Self::target(offset, data.len()) {
            Some(a) => super::dword_bytes(self.root.read(a), usize::from(a.offset & 3), data),
            None => data.fill(0xff),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        if let Some(a) = Self::target(offset, data.len()) {
            self.root.write(a, data);
        }
    }
}
