//! PCI: configuration space, the host bridge, the root bus and its two access methods
//! (the PC's 0xCF8/0xCFC port pair and ECAM, memory-mapped).
//!
//! Guest accesses arrive as byte ranges; every device answers whole dwords and takes
//! writes of 1, 2 or 4 bytes inside one dword, so each access path only has to split
//! and mask bytes once.

pub mod bar;
pub mod config;
mod ecam;
mod function;
mod host_bridge;
mod io;
mod root;

pub use bar::{Bar, BarError, BarKind, BarMove, Bars};
pub use config::{ConfigSpace, Header};
pub use ecam::{PciConfigMmio, ECAM_BUS_SIZE};
pub use function::{MoveHandler, PciFunction};
pub use host_bridge::HostBridge;
pub use io::{PciConfigIo, PCI_CONFIG_IO_BASE, PCI_CONFIG_IO_LEN};
pub use root::{PciAddress, PciRoot, PciRootError};

/// A function on the PCI bus, as its configuration space sees it.
pub trait PciDevice: Send + Sync {
    /// The dword at `offset` (a multiple of 4, below 4096).
    fn config_read(&self, offset: u16) -> u32;
    /// A write of `data` (1, 2 or 4 bytes, within one dword) at `offset`.
    fn config_write(&self, offset: u16, data: &[u8]);
}

/// Bytes `at..at + len` of a little-endian dword, for a read of `len` bytes.
fn dword_bytes(dword: u32, at: usize, data: &mut [u8]) {
    let bytes = dword.to_le_bytes();
    let end = (at + data.len()).min(4);
    let n = end.saturating_sub(at);
    data[..n].copy_from_slice(&bytes[at.min(4)..end]);
    data[n..].fill(0xff);
}

#[cfg(test)]
mod tests;
