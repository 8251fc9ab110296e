//! The built-in guest programs for x86_64, and the image builder that lays them out in
//! guest memory together with the GDT, TSS, stacks and identity page tables.
//!
//! Every program starts with the same CPL0 prologue that drops to CPL3 with IOPL=3 via
//! `iretq`; the workloads themselves run at CPL3 and talk to the VMM through the report
//! port (kind in `eax`, argument in `rbx`).

mod image;
mod workloads;

pub use image::{build, GDT_LIMIT, MAX_TEXT, TSS_BASE};
pub use workloads::STRESS_STORE_LEN;
