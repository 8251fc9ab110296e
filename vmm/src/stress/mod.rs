//! `granule stress`: a port of the Linux KVM selftest mmu_stress_test (see
//! ../shared/spec/mmu-stress.md), with both fault modes, every backing, stage-2 stats
//! after each phase, and JSON results that `stress compare` puts side by side.

pub mod compare;
pub mod config;
#[cfg(target_arch = "x86_64")]
mod rendezvous;
pub mod result;
#[cfg(target_arch = "x86_64")]
mod run;
#[cfg(target_arch = "x86_64")]
mod worker;

pub use config::{ConfigError, OnFault, StressConfig};
pub use result::{StressReport, PHASE_NAMES};
#[cfg(target_arch = "x86_64")]
pub use run::{run, StressError};
