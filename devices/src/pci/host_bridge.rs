//! The host bridge at 00:00.0: what firmware and Linux expect to find first on bus 0.

use std::sync::Mutex;

use super::config::{ConfigSpace, Header};
use super::PciDevice;

/// Red Hat's "QEMU PCIe host bridge" id: a generic bridge no Linux driver binds to or
/// applies chipset quirks for.
pub const HOST_BRIDGE: Header = Header {
    vendor: 0x1b36,
    device: 0x0008,
    class: (0x06, 0x00, 0x00),
    revision: 0,
};

pub struct HostBridge {
    config: Mutex<ConfigSpace>,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self {
            config: Mutex::new(ConfigSpace::type0(HOST_BRIDGE)),
        }
    }
}

impl PciDevice for HostBridge {
    fn config_read(&self, offset: u16) -> u32 {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read_dword(offset)
    }

    fn config_write(&self, offset: u16, data: &[u8]) {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(offset, data);
    }
}
