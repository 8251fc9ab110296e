//! Stage-2 granularity: predict, for every guest-physical range, the leaf size KVM will
//! map it with, and why it is not larger. Pure code: no KVM, no host access.

pub mod model;
mod plan;
mod rules;
#[cfg(test)]
mod tests;

pub use model::*;
pub use plan::{coalesce, expected_leaves, plan, PlanError};
pub use rules::{leaf_at, Decision};
