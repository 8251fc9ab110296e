//! Base address registers: what a guest reads and writes, sizing included, and when a
//! BAR has moved.
//!
//! A guest sizes a BAR by writing all-ones and reading back the mask, with decoding
//! off in the command register, then writes the address it chose. So the place a BAR
//! is *mapped* (where its device memory and trapped registers live) follows the
//! register only while decoding is on: a write with decoding on, or turning decoding
//! on after writes, is a move; writes with decoding off are not.

use thiserror::Error;

/// Offset of BAR 0 in the header.
pub const BAR0: u16 = 0x10;
const IO_FLAG: u32 = 0x1;
const MEM64_FLAGS: u32 = 0x4;
const PREFETCH_FLAG: u32 = 0x8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64 { prefetchable: bool },
}

impl BarKind {
    fn is_io(self) -> bool {
        self == Self::Io
    }

    fn flags(self) -> u32 {
        match self {
            Self::Io => IO_FLAG,
            Self::Mem32 => 0,
            Self::Mem64 { prefetchable } => {
                MEM64_FLAGS | if prefetchable { PREFETCH_FLAG } else { 0 }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub kind: BarKind,
    /// A power of two: at least 16 for memory, 4 for I/O.
    pub size: u64,
    /// Where the VMM placed it (naturally aligned).
    pub addr: u64,
}

/// A BAR whose mapping must follow the guest: from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarMove {
    pub index: usize,
    pub kind: BarKind,
    pub size: u64,
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BarError {
    #[error("BAR {index}: size {size:#x} is not a power of two of at least {min}")]
    Size { index: usize, size: u64, min: u64 },
    #[error("BAR {index}: a 64-bit BAR takes two registers; index {index} has no second")]
    NoUpperHalf { index: usize },
    #[error("BAR {index}: already taken")]
    Taken { index: usize },
    #[error("BAR {index}: address {addr:#x} is not aligned to its size {size:#x}, or does not fit its kind")]
    Address { index: usize, addr: u64, size: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    bar: Bar,
    /// The guest's current value (address bits only).
    addr: u64,
    /// Where the mapping is now.
    mapped: u64,
}

/// The six BAR registers of a type-0 header.
#[derive(Debug, Default)]
pub struct Bars {
    slots: [Option<Slot>; 6],
    /// Register `i` is the upper half of the 64-bit BAR at `i - 1`.
    upper: [bool; 6],
    mem_enabled: bool,
    io_enabled: bool,
}

impl Bars {
    pub fn add(&mut self, index: usize, bar: Bar) -> Result<(), BarError> {
        let min = if bar.kind.is_io() { 4 } else { 16 };
        if !bar.size.is_power_of_two() || bar.size < min {
            return Err(BarError::Size {
                index,
                size: bar.size,
                min,
            });
        }
        let wide = matches!(bar.kind, BarKind::Mem64 { .. });
        let last = if wide { index + 1 } else { index };
        if last >= 6 {
            return Err(BarError::NoUpperHalf { index });
        }
        if (index..=last).any(|i| self.slots[i].is_some() || self.upper[i]) {
            return Err(BarError::Taken { index });
        }
        let fits = wide || bar.addr.checked_add(bar.size).is_some_and(|e| e <= 1 << 32);
        if !bar.addr.is_multiple_of(bar.size) || !fits {
            return Err(BarError::Address {
                index,
                addr: bar.addr,
                size: bar.size,
            });
        }
        self.slots[index] = Some(Slot {
            bar,
            addr: bar.addr,
            mapped: bar.addr,
        });
        self.upper[last] = wide;
        Ok(())
    }

    /// The BAR at `index` and where it is mapped now.
    pub fn get(&self, index: usize) -> Option<(Bar, u64)> {
        self.slots
            .get(index)
            .copied()
            .flatten()
            .map(|s| (s.bar, s.mapped))
    }

    /// Register `reg` (0..6) as the guest reads it.
    pub fn read(&self, reg: usize) -> u32 {
        if reg >= 6 {
            return 0;
        }
        if self.upper[reg] {
            return self.slots[reg - 1].map_or(0, |s| (s.addr >> 32) as u32);
        }
        match self.slots[reg] {
            Some(s) => (s.addr as u32) | s.bar.kind.flags(),
            None => 0,
        }
    }

    fn enabled(&self, kind: BarKind) -> bool {
        if kind.is_io() {
            self.io_enabled
        } else {
            self.mem_enabled
        }
    }

    /// A whole-dword guest write to register `reg`; returns the move it makes.
    pub fn write(&mut self, reg: usize, value: u32) -> Option<BarMove> {
        if reg >= 6 {
            return None;
        }
        let (index, high) = if self.upper[reg] {
            (reg - 1, true)
        } else {
            (reg, false)
        };
        let enabled = self.slots[index].is_some_and(|s| self.enabled(s.bar.kind));
        let s = self.slots[index].as_mut()?;
        let mask = !(s.bar.size - 1);
        s.addr = if high {
            ((u64::from(value) << 32) | (s.addr & 0xffff_ffff)) & mask
        } else {
            let low_flags = if s.bar.kind.is_io() { 0x3 } else { 0xf };
            let low = u64::from(value & !low_flags);
            ((s.addr & !0xffff_ffff) | low) & mask
        };
        if !matches!(s.bar.kind, BarKind::Mem64 { .. }) {
            s.addr &= 0xffff_ffff;
        }
        if enabled {
            Self::follow(index, s)
        } else {
            None
        }
    }

    fn follow(index: usize, s: &mut Slot) -> Option<BarMove> {
        (s.addr != s.mapped).then(|| {
            let m = BarMove {
                index,
                kind: s.bar.kind,
                size: s.bar.size,
                from: s.mapped,
                to: s.addr,
            };
            s.mapped = s.addr;
            m
        })
    }

    /// The command register's decode enables changed to `memory` and `io`; returns the
    /// moves of BARs written while their decoding was off.
    pub fn set_decoding(&mut self, memory: bool, io: bool) -> Vec<BarMove> {
        let turned_on = |was: bool, now: bool| !was && now;
        let (mem_on, io_on) = (
            turned_on(self.mem_enabled, memory),
            turned_on(self.io_enabled, io),
        );
        self.mem_enabled = memory;
        self.io_enabled = io;
        let mut moves = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Some(s) = slot {
                let on = if s.bar.kind.is_io() { io_on } else { mem_on };
                if on {
                    moves.extend(Self::follow(index, s));
                }
            }
        }
        moves
    }

    /// A guest write of 1, 2 or 4 bytes at header offset `offset`, inside one BAR
    /// register: narrow writes merge into the register's current value. Returns the
    /// move it makes (None also when `offset` is not a BAR register).
    pub fn write_bytes(&mut self, offset: u16, data: &[u8]) -> Option<BarMove> {
        let (reg, byte) = Self::register_at(offset)?;
        let mut v = self.read(reg).to_le_bytes();
        let end = (byte + data.len()).min(4);
        v[byte..end].copy_from_slice(&data[..end - byte]);
        self.write(reg, u32::from_le_bytes(v))
    }

    /// Whether byte `offset` of the header is a BAR register: (register, byte in it).
    pub fn register_at(offset: u16) -> Option<(usize, usize)> {
        let rel = offset.checked_sub(BAR0)?;
        (rel < 24).then(|| (usize::from(rel / 4), usize::from(rel % 4)))
    }
}
