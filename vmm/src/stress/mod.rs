//! `granule stress`: a port of the Linux KVM selftest mmu_stress_test (see
//! ../shared/spec/mmu-stress.md), with both fault modes, every backing, stage-2 stats
//! after each phase, and JSON results that `stress compare` puts side by side.

mod arch;
mod chunk;
pub mod compare;
pub mod config;
mod rendezvous;
pub mod result;
mod run;
mod worker;

pub use config::{ConfigError, OnFault, StressConfig};
pub use result::{StressReport, PHASE_NAMES};
pub use run::{run, StressError};
