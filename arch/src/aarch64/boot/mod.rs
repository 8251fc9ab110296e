//! Booting a Linux kernel through the arm64 boot protocol
//! (Documentation/arch/arm64/booting.rst): the VMM loads the Image at a 2 MiB-aligned
//! base plus its text offset, writes a device tree describing the machine, and enters
//! the kernel at EL1 with the MMU off and x0 holding the device tree's address. Pure
//! data, as for x86: the header is parsed from bytes, the device tree built as bytes.

pub mod fdt;
pub mod image;
pub mod layout;
pub mod placement;

pub use fdt::{DeviceTree, FdtError, GicLayout};
pub use image::{ImageError, ImageHeader};
pub use placement::{place, Placement, PlacementError};
