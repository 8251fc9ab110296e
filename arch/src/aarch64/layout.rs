//! aarch64 guest-physical layout for granule's built-in programs.

/// The exception vector table (VBAR_EL1, 2 KiB-aligned), below the program.
pub const VECTORS: u64 = 0x800;
/// Where the program image starts (low RAM starts at 0).
pub const IMAGE_BASE: u64 = 0x1000;
/// The report "port": a 32-bit store here exits to the VMM as MMIO (nothing backs it).
/// It lies in the [3 GiB, 4 GiB) hole that RAM avoids on both architectures.
pub const REPORT_MMIO: u64 = 0xc000_0000;
/// The programs' console: a 16550 whose transmit register `hello` stores to.
pub const UART_MMIO: u64 = 0xc000_1000;
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
