//! MSI of a passed-through function: the capability's registers are emulated here (the
//! guest's writes never reach the device), and the vectors' host side is a
//! [`VectorSet`]. Multiple-message MSI gives vector `i` the programmed data with its
//! low bits replaced by `i`, as the PCI specification has the device do.

use std::sync::{Arc, Mutex, MutexGuard};

use kvm_ioctls::VmFd;
use vfio_bindings::bindings::vfio::VFIO_PCI_MSI_IRQ_INDEX;
use vfio_ioctls::VfioDevice;

use super::intx::Intx;
use super::vectors::{Message, VectorSet};
use crate::devices::irq_routes::GsiRoutes;

const CONTROL_ENABLE: u16 = 1;
const CONTROL_64BIT: u16 = 1 << 7;
const CONTROL_MASKING: u16 = 1 << 8;
/// The largest capability: 64-bit addresses and per-vector masking.
const MAX_LEN: usize = 24;

/// Where the registers of an MSI capability are, from its message control word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiLayout {
    /// Offset of the capability in configuration space.
    pub at: u16,
    /// The device's message control (capable vectors, 64-bit, masking).
    pub control: u16,
}

impl MsiLayout {
    pub fn wide(&self) -> bool {
        self.control & CONTROL_64BIT != 0
    }

    pub fn masking(&self) -> bool {
        self.control & CONTROL_MASKING != 0
    }

    /// Vectors the device can signal: 2^(multiple message capable), at most 32.
    pub fn vectors(&self) -> usize {
        1 << ((self.control >> 1) & 7).min(5)
    }

    /// Bytes of the capability.
    pub fn byte_len(&self) -> usize {
        10 + if self.wide() { 4 } else { 0 } + if self.masking() { 10 } else { 0 }
    }

    fn data_at(&self) -> usize {
        if self.wide() {
            12
        } else {
            8
        }
    }

    fn mask_at(&self) -> Option<usize> {
        self.masking().then(|| self.data_at() + 4)
    }

    /// Which bits of each byte the guest may write.
    fn writable(&self) -> [u8; MAX_LEN] {
        let mut w = [0u8; MAX_LEN];
        w[2] = 0x71; // enable, multiple message enable
        w[4..8].copy_from_slice(&[0xfc, 0xff, 0xff, 0xff]);
        if self.wide() {
            w[8..12].fill(0xff);
        }
        let d = self.data_at();
        w[d..d + 2].fill(0xff);
        if let Some(m) = self.mask_at() {
            w[m..m + 4].fill(0xff);
        }
        w
    }
}

struct State {
    regs: [u8; MAX_LEN],
    set: VectorSet,
}

pub struct Msi {
    layout: MsiLayout,
    writable: [u8; MAX_LEN],
    state: Mutex<State>,
}

fn dword(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    for (i, x) in v.iter_mut().enumerate() {
        *x = b.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(v)
}

/// The messages the registers `r` program, for `layout`.
fn messages(layout: &MsiLayout, r: &[u8; MAX_LEN]) -> (usize, Vec<Message>) {
    let control = u16::from_le_bytes([r[2], r[3]]);
    let enabled = control & CONTROL_ENABLE != 0;
    let count = (1usize << ((control >> 4) & 7).min(5)).min(layout.vectors());
    let mut address = u64::from(dword(r, 4));
    if layout.wide() {
        address |= u64::from(dword(r, 8)) << 32;
    }
    let data = u32::from(u16::from_le_bytes([
        r[layout.data_at()],
        r[layout.data_at() + 1],
    ]));
    let mask = layout.mask_at().map_or(0, |m| dword(r, m));
    let msgs = (0..count)
        .map(|i| Message {
            address,
            data: (data & !(count as u32 - 1)) | i as u32,
            active: enabled && mask & (1 << i) == 0,
        })
        .collect();
    (if enabled { count } else { 0 }, msgs)
}

impl Msi {
    /// MSI for the capability `layout` with one GSI per capable vector from `gsis`.
    pub fn new(
        layout: MsiLayout,
        device: (Arc<VfioDevice>, Option<Arc<Intx>>),
        kvm: (Arc<VmFd>, Arc<GsiRoutes>),
        gsis: Vec<u32>,
    ) -> std::io::Result<Self> {
        let mut regs = [0u8; MAX_LEN];
        // Enable and multiple message enable start cleared.
        regs[2..4].copy_from_slice(&(layout.control & !0x71).to_le_bytes());
        let set = VectorSet::new((VFIO_PCI_MSI_IRQ_INDEX, "MSI"), device, kvm, gsis)?;
        Ok(Self {
            layout,
            writable: layout.writable(),
            state: Mutex::new(State { regs, set }),
        })
    }

    pub fn layout(&self) -> &MsiLayout {
        &self.layout
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The dword at `offset` inside the capability (a multiple of 4); bytes 0-1 (ID
    /// and next pointer) are the caller's.
    pub fn read(&self, offset: usize) -> u32 {
        dword(&self.lock().regs, offset)
    }

    /// A guest write of `data` at `offset` inside the capability.
    pub fn write(&self, offset: usize, data: &[u8]) {
        let mut s = self.lock();
        for (i, b) in data.iter().enumerate() {
            let at = offset + i;
            if at < self.layout.byte_len() && at < MAX_LEN {
                let w = self.writable[at];
                s.regs[at] = (s.regs[at] & !w) | (b & w);
            }
        }
        let (count, msgs) = messages(&self.layout, &s.regs);
        s.set.sync(count, &msgs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_follows_the_control_word() {
        // 64-bit, masking, 4 vectors capable.
        let l = MsiLayout {
            at: 0x50,
            control: CONTROL_64BIT | CONTROL_MASKING | (2 << 1),
        };
        assert_eq!(
            (l.byte_len(), l.vectors(), l.data_at(), l.mask_at()),
            (24, 4, 12, Some(16))
        );
        let l = MsiLayout {
            at: 0x50,
            control: 0,
        };
        assert_eq!(
            (l.byte_len(), l.vectors(), l.data_at(), l.mask_at()),
            (10, 1, 8, None)
        );
    }

    #[test]
    fn programmed_registers_give_one_message_per_enabled_vector() {
        let l = MsiLayout {
            at: 0x50,
            control: CONTROL_64BIT | CONTROL_MASKING | (2 << 1),
        };
        let w = l.writable();
        let put = |r: &mut [u8; MAX_LEN], at: usize, bytes: &[u8]| {
            for (i, b) in bytes.iter().enumerate() {
                r[at + i] = (r[at + i] & !w[at + i]) | (b & w[at + i]);
            }
        };
        let mut r = [0u8; MAX_LEN];
        put(&mut r, 4, &0xfee0_1003u32.to_le_bytes()); // low bits are not writable
        put(&mut r, 8, &1u32.to_le_bytes());
        put(&mut r, 12, &0x4041u16.to_le_bytes());
        put(&mut r, 16, &0b10u32.to_le_bytes()); // vector 1 masked
        put(&mut r, 2, &[0x21]); // enable, 4 vectors
        let (count, m) = messages(&l, &r);
        assert_eq!(count, 4);
        assert_eq!(m[0].address, 0x1_fee0_1000);
        assert_eq!((m[0].data, m[3].data), (0x4040, 0x4043));
        assert_eq!((m[0].active, m[1].active), (true, false));
        // Disabled: nothing armed, nothing active.
        put(&mut r, 2, &[0x20]);
        let (count, m) = messages(&l, &r);
        assert_eq!(count, 0);
        assert!(m.iter().all(|m| !m.active));
    }
}
