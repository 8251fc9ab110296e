//! Resource allocators a VM owns: guest-physical windows (device BARs), I/O ports,
//! KVM memslot ids and GSIs. Pure bookkeeping; the VM applies what they hand out.

mod address;
mod ids;

pub use address::{AddressAllocator, AllocError};
pub use ids::{IdAllocator, IdError};
