//! x86_64 guest set-up: 64-bit long mode entered directly through KVM_SET_SREGS, a short
//! CPL0 prologue, then the workload at CPL3.
//!
//! Why CPL3: on KVM without hardware virtualization (the `kvm_pvm` backend of granule's
//! CI hosts) CPL0 guest code is emulated one instruction at a time while CPL3 code runs
//! natively. Doing the privileged work up front, in a few instructions, and the real
//! work at CPL3 is fast there and equally correct on hardware KVM: one code path.

pub mod asm;
pub mod boot;
pub mod gdt;
pub mod layout;
pub mod paging;
pub mod programs;
pub mod regs;
