//! A function's configuration space: the registers and which bits the guest may write.

/// Standard header offsets.
pub mod reg {
    pub const VENDOR_ID: u16 = 0x00;
    pub const DEVICE_ID: u16 = 0x02;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const REVISION: u16 = 0x08;
    pub const CLASS: u16 = 0x09;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
    pub const SUBSYSTEM_ID: u16 = 0x2e;
}

/// A type-0 header's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub vendor: u16,
    pub device: u16,
    /// Class, subclass, programming interface.
    pub class: (u8, u8, u8),
    pub revision: u8,
}

/// 4 KiB of registers (PCIe extended space included) and a write mask per byte: a
/// guest write changes only the bits the mask allows, as hardware's read-only bits do.
pub struct ConfigSpace {
    regs: Box<[u8; 4096]>,
    writable: Box<[u8; 4096]>,
}

impl ConfigSpace {
    /// A type-0 header with `h`'s identity, everything else zero and read-only except
    /// the command register's I/O, memory and bus-master enables.
    pub fn type0(h: Header) -> Self {
        let mut c = Self {
            regs: Box::new([0; 4096]),
            writable: Box::new([0; 4096]),
        };
        c.set_u16(reg::VENDOR_ID, h.vendor);
        c.set_u16(reg::DEVICE_ID, h.device);
        c.set_u8(reg::REVISION, h.revision);
        let (class, sub, prog_if) = h.class;
        c.set_u8(reg::CLASS, prog_if);
        c.set_u8(reg::CLASS + 1, sub);
        c.set_u8(reg::CLASS + 2, class);
        c.set_u8(reg::HEADER_TYPE, 0);
        c.set_u16(reg::SUBSYSTEM_VENDOR_ID, h.vendor);
        c.set_u16(reg::SUBSYSTEM_ID, h.device);
        c.writable[usize::from(reg::COMMAND)] = 0x07;
        c
    }

    pub fn set_u8(&mut self, offset: u16, v: u8) {
        if let Some(b) = self.regs.get_mut(usize::from(offset)) {
            *b = v;
        }
    }

    pub fn set_u16(&mut self, offset: u16, v: u16) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set_u8(offset.saturating_add(i as u16), b);
        }
    }

    /// Lets the guest write the bits of `mask` in the byte at `offset`.
    pub fn set_writable(&mut self, offset: u16, mask: u8) {
        if let Some(b) = self.writable.get_mut(usize::from(offset)) {
            *b = mask;
        }
    }

    /// The dword holding `offset`; all-ones past the end.
    pub fn read_dword(&self, offset: u16) -> u32 {
        let at = usize::from(offset & !3);
        match self.regs.get(at..at + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => u32::MAX,
        }
    }

    /// A guest write: each byte changes only in its writable bits. Bytes past the end
    /// are dropped.
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        for (i, v) in data.iter().enumerate() {
            let at = usize::from(offset) + i;
            let (Some(r), Some(m)) = (self.regs.get(at).copied(), self.writable.get(at)) else {
                return;
            };
            self.regs[at] = (r & !m) | (v & m);
        }
    }
}
