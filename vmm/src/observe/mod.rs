//! Observing what actually happened: KVM's leaf counts, and the host mapping behind
//! each zone (PAGEMAP_SCAN huge ranges, smaps per VMA).

pub mod pagemap;
pub mod smaps;
pub mod stats;
