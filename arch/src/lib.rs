//! Architecture-specific guest set-up, kept free of KVM ioctls so it can be unit tested
//! anywhere: memory layout constants, page tables, descriptor tables, initial register
//! state and the built-in guest programs encoded as machine code.
//!
//! Each architecture module exposes the same shape (`layout`, `programs::build`), so the
//! VMM can drive x86_64 today and aarch64 later through [`GuestImage`].

pub mod aarch64;
pub mod address_map;
pub mod image;
pub mod report;
pub mod x86_64;

pub use address_map::{AddressMap, FixedRegion};
pub use image::{touch_shares, GuestImage, ImageError, Program, RamRange, VcpuEntry};
