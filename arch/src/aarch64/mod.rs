//! aarch64 guest set-up: the guest runs at EL1 with the MMU on over identity-mapped
//! 1 GiB blocks. The VMM sets the translation registers through KVM_SET_ONE_REG before
//! the first run, so the guest has no privileged prologue at all.
//!
//! Why the MMU on (rather than the simpler MMU-off flat map): with the MMU off every
//! data access is Device memory, which changes what KVM does at stage 2 (cache
//! maintenance without FEAT_FWB), exactly the effect mmu_stress measures. Why 1 GiB
//! stage-1 blocks (upstream maps every page): stage-2 leaf sizes on arm64 do not depend
//! on the guest's stage-1 sizes, and blocks keep the tables tiny.

pub mod asm;
pub mod boot;
pub mod layout;
pub mod paging;
pub mod programs;
pub mod regs;
