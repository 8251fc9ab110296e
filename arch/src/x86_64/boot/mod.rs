//! Booting a Linux kernel through the x86 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst): the VMM loads the kernel, fills the zero page,
//! builds an identity map and a boot GDT, and enters the kernel's 64-bit entry in long
//! mode, as Firecracker and QEMU's `-kernel` do. Everything here is pure data: images
//! are parsed from bytes and tables are built as bytes for the VMM to copy.

pub mod acpi;
pub mod acpi_pci;
pub mod bzimage;
pub mod e820;
pub mod elf;
pub mod layout;
#[cfg(target_arch = "x86_64")]
pub mod regs;
pub mod tables;

use thiserror::Error;

/// Why a file is not a kernel granule can boot. Every message names what was found.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("the kernel file is empty")]
    Empty,
    #[error("not a Linux kernel: no ELF magic and no bzImage \"HdrS\" header at offset 0x202 ({len} bytes)")]
    Unknown { len: usize },
    #[error("the bzImage is truncated: its header says {expected} bytes, the file has {actual}")]
    Truncated { expected: u64, actual: u64 },
    #[error("the bzImage uses boot protocol {major}.{minor:02}; granule needs 2.12 or later (64-bit entry)")]
    OldProtocol { major: u8, minor: u8 },
    #[error("the bzImage has no 64-bit entry point (XLF_KERNEL_64 is not set in xloadflags)")]
    No64BitEntry,
    #[error("the ELF kernel is invalid: {0}")]
    Elf(String),
}
