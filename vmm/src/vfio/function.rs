//! A passed-through PCI function as the guest's configuration space sees it: the
//! device's own registers (vfio-pci already virtualizes what a user must not touch),
//! except what the VMM owns: the BARs (placed by granule, moved with their memslots),
//! the expansion ROM (not offered), the interrupt pin (the device's where INTx is
//! routed, [`super::intx`]), and the MSI and MSI-X capabilities (emulated,
//! [`super::msi`], [`super::msix`]; unlinked from the capability list when the VM
//! cannot route them).

use std::sync::{Arc, Mutex, MutexGuard};

use granule_devices::pci::{Bar, BarError, BarKind, Bars, MoveHandler, PciDevice};
use vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX;
use vfio_ioctls::VfioDevice;

use super::caps::{CapChain, CAP_MSI, CAP_MSIX};
use super::interrupts::Irqs;
use super::msi::Msi;
use super::msix::Msix;
use crate::devices::WindowSwitch;

const COMMAND: u16 = 0x04;
const COMMAND_IO: u16 = 1 << 0;
const COMMAND_MEMORY: u16 = 1 << 1;
const ROM: u16 = 0x30;
const INTERRUPT_LINE: u16 = 0x3c;

pub struct PassthroughFunction {
    device: Arc<VfioDevice>,
    bars: Mutex<Bars>,
    caps: CapChain,
    /// The interrupt line register: the guest's scratch byte.
    line: Mutex<u8>,
    msi: Option<Arc<Msi>>,
    msix: Option<Arc<Msix>>,
    /// The INTx pin the guest sees (1 = INTA; 0: none).
    pin: u8,
    on_move: MoveHandler,
    /// Takes a memory BAR's mapped areas out of the guest while the device does not
    /// decode memory, and puts them back after.
    switch: WindowSwitch,
    /// Memory decoding as last applied.
    decoding: Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads `buf.len()` bytes of the device's configuration space at `offset`.
pub fn config_bytes(device: &VfioDevice, offset: u16, buf: &mut [u8]) {
    device.region_read(VFIO_PCI_CONFIG_REGION_INDEX, buf, u64::from(offset));
}

pub fn config_u8(device: &VfioDevice, offset: u16) -> u8 {
    let mut b = [0u8];
    config_bytes(device, offset, &mut b);
    b[0]
}

pub fn config_u32(device: &VfioDevice, offset: u16) -> u32 {
    let mut b = [0u8; 4];
    config_bytes(device, offset, &mut b);
    u32::from_le_bytes(b)
}

impl PassthroughFunction {
    /// `bars` (index, BAR) as granule placed them.
    pub fn new(
        device: Arc<VfioDevice>,
        bars: &[(usize, Bar)],
        irqs: Irqs,
        (on_move, switch): (MoveHandler, WindowSwitch),
    ) -> Result<Self, BarError> {
        let mut b = Bars::default();
        for (index, bar) in bars {
            b.add(*index, *bar)?;
        }
        let Irqs { msi, msix, intx } = irqs;
        let pin = intx.as_ref().map_or(0, |i| i.pin());
        let mut hide = Vec::new();
        if msi.is_none() {
            hide.push(CAP_MSI);
        }
        if msix.is_none() {
            hide.push(CAP_MSIX);
        }
        let caps = CapChain::new(|o| config_u8(&device, o), &hide);
        let f = Self {
            device,
            bars: Mutex::new(b),
            caps,
            line: Mutex::new(0),
            msi,
            msix,
            pin,
            on_move,
            switch,
            decoding: Mutex::new(true),
        };
        // The BARs were mapped on; follow what the device decodes now.
        let cmd = f.device_dword(COMMAND) as u16;
        f.follow_decoding(cmd & COMMAND_MEMORY != 0);
        Ok(f)
    }

    /// Switches every memory BAR's mapping to `on` if that changed.
    fn follow_decoding(&self, on: bool) {
        let mut d = lock(&self.decoding);
        if *d == on {
            return;
        }
        *d = on;
        let windows: Vec<(u64, u64)> = {
            let bars = lock(&self.bars);
            (0..6)
                .filter_map(|i| bars.get(i))
                .filter(|(bar, _)| bar.kind != BarKind::Io)
                .map(|(bar, at)| (at, bar.size))
                .collect()
        };
        for (at, size) in windows {
            (self.switch)(at, size, on);
        }
    }

    fn device_dword(&self, offset: u16) -> u32 {
        config_u32(&self.device, offset)
    }
}

impl PciDevice for PassthroughFunction {
    fn config_read(&self, offset: u16) -> u32 {
        if let Some((r, _)) = Bars::register_at(offset) {
            return lock(&self.bars).read(r);
        }
        match offset {
            ROM => 0,
            // Line as the guest wrote it; the pin where INTx is routed, else 0.
            INTERRUPT_LINE => {
                let v = self.device_dword(offset);
                (v & 0xffff_0000) | (u32::from(self.pin) << 8) | u32::from(*lock(&self.line))
            }
            _ => {
                let mut v = self.caps.patch_read(offset, self.device_dword(offset));
                if let Some(m) = self.msix.as_ref().filter(|m| m.cap().at == offset) {
                    v = (v & 0xffff) | (u32::from(m.control()) << 16);
                }
                if let Some(m) = &self.msi {
                    let at = m.layout().at;
                    if offset >= at && usize::from(offset - at) < m.layout().byte_len() {
                        let own = m.read(usize::from(offset - at));
                        // The ID and next pointer stay the (patched) device's.
                        v = if offset == at {
                            (v & 0xffff) | (own & !0xffff)
                        } else {
                            own
                        };
                    }
                }
                v
            }
        }
    }

    fn config_write(&self, offset: u16, data: &[u8]) {
        if Bars::register_at(offset).is_some() {
            let moved = lock(&self.bars).write_bytes(offset, data);
            if let Some(m) = moved {
                (self.on_move)(&m);
            }
            return;
        }
        if offset & !3 == ROM || self.caps.write_hidden(offset, data.len()) {
            return;
        }
        if offset == INTERRUPT_LINE {
            *lock(&self.line) = data[0];
            return;
        }
        if offset == INTERRUPT_LINE + 1 {
            return;
        }
        if let Some(m) = &self.msi {
            let at = m.layout().at;
            let len = m.layout().byte_len() as u16;
            if offset < at + len && offset + data.len() as u16 > at {
                let skip = usize::from(at.saturating_sub(offset));
                let from = offset.max(at) - at;
                m.write(usize::from(from), &data[skip..]);
                return;
            }
        }
        if let Some(m) = &self.msix {
            let at = m.cap().at;
            let end = offset + data.len() as u16;
            if offset < at + 4 && end > at {
                // Only the message control word (bytes 2-3) is writable.
                if offset <= at + 2 && end >= at + 4 {
                    let i = usize::from(at + 2 - offset);
                    m.write_control(u16::from_le_bytes([data[i], data[i + 1]]));
                } else if offset == at + 3 && data.len() == 1 {
                    m.write_control((m.control() & 0x00ff) | (u16::from(data[0]) << 8));
                }
                return;
            }
        }
        self.device
            .region_write(VFIO_PCI_CONFIG_REGION_INDEX, data, u64::from(offset));
        let end = usize::from(offset) + data.len();
        if usize::from(offset) < usize::from(COMMAND) + 2 && end > usize::from(COMMAND) {
            let cmd = self.device_dword(COMMAND) as u16;
            let moves =
                lock(&self.bars).set_decoding(cmd & COMMAND_MEMORY != 0, cmd & COMMAND_IO != 0);
            for m in &moves {
                (self.on_move)(m);
            }
            self.follow_decoding(cmd & COMMAND_MEMORY != 0);
        }
    }
}
