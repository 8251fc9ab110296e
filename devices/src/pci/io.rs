//! Configuration mechanism #1: an address register at 0xCF8 and a data window at
//! 0xCFC..0xD00 (the x86 PC's way, which Linux tries first there).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::root::{PciAddress, PciRoot};
use crate::BusDevice;

/// The address register's port; the data window follows it.
pub const PCI_CONFIG_IO_BASE: u64 = 0xcf8;
/// The two registers' span: 0xCF8..0xD00.
pub const PCI_CONFIG_IO_LEN: u64 = 8;
const ENABLE: u32 = 1 << 31;

pub struct PciConfigIo {
    root: Arc<PciRoot>,
    address: AtomicU32,
}

impl PciConfigIo {
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self {
            root,
            address: AtomicU32::new(0),
        }
    }

    /// The function and byte the data window's byte `at` (0..4) reaches, if enabled.
    fn target(&self, at: u64) -> Option<PciAddress> {
        let a = self.address.load(Ordering::SeqCst);
        (a & ENABLE != 0).then(|| PciAddress {
            bus: (a >> 16) as u8,
            device: ((a >> 11) & 0x1f) as u8,
            function: ((a >> 8) & 7) as u8,
            offset: (a & 0xfc) as u16 + at as u16,
        })
    }
}

impl BusDevice for PciConfigIo {
    fn read(&self, offset: u64, data: &mut [u8]) {
        match offset {
            // Only whole-dword accesses reach the address register (0xCF9, a byte, is
            // the PC's reset control, which granule does not emulate here).
            0 if data.len() == 4 => {
                data.copy_from_slice(&self.address.load(Ordering::SeqCst).to_le_bytes())
            }
            4..=7 => match self.target(offset - 4) {
                Some(a) => super::dword_bytes(self.root.read(a), usize::from(a.offset & 3), data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => self.address.store(
                u32::from_le_bytes([data[0], data[1], data[2], data[3]]),
                Ordering::SeqCst,
            ),
            4..=7 => {
                if let Some(a) = self.target(offset - 4) {
                    // The bus already keeps an access inside the window, so it stays
                    // inside one dword.
                    self.root.write(a, data);
                }
            }
            _ => {}
        }
    }
}
