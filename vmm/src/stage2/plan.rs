//! The planner: predicted leaf sizes over every slot, as few ranges as possible.
//!
//! Every input of [`leaf_at`] is constant between "breakpoints": slot and VMA edges,
//! write-tracked range edges, and the guest-physical and host-virtual boundaries of each
//! block size next to them. The planner evaluates the rules once per interval between
//! breakpoints instead of once per page, then merges equal neighbours.

use std::collections::BTreeSet;

use thiserror::Error;

use super::model::{PlanInput, PlanRange, SlotSpec, Target, G1, M2};
use super::rules::leaf_at;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("slot {slot}: GPA {gpa:#x}, HVA {hva:#x} and size {size:#x} must be multiples of the {page:#x}-byte base page")]
    Unaligned {
        slot: u32,
        gpa: u64,
        hva: u64,
        size: u64,
        page: u64,
    },
    #[error("slot {slot} has zero size")]
    Empty { slot: u32 },
    #[error("slots {a} and {b} overlap in guest-physical space")]
    Overlap { a: u32, b: u32 },
}

/// Block sizes whose boundaries matter for `target`.
fn block_sizes(target: &Target) -> Vec<u64> {
    match target {
        Target::X86Tdp { .. } | Target::X86Shadow { .. } => vec![M2, G1],
        Target::Arm64 { granule } => granule.pud().into_iter().chain([granule.pmd()]).collect(),
    }
}

fn check(input: &PlanInput) -> Result<(), PlanError> {
    let page = input.target.base_page();
    for s in &input.slots {
        if s.size == 0 {
            return Err(PlanError::Empty { slot: s.slot });
        }
        if (s.gpa | s.hva | s.size) & (page - 1) != 0 {
            return Err(PlanError::Unaligned {
                slot: s.slot,
                gpa: s.gpa,
                hva: s.hva,
                size: s.size,
                page,
            });
        }
    }
    for (i, a) in input.slots.iter().enumerate() {
        for b in &input.slots[i + 1..] {
            if a.gpa < b.gpa_end() && b.gpa < a.gpa_end() {
                return Err(PlanError::Overlap {
                    a: a.slot,
                    b: b.slot,
                });
            }
        }
    }
    Ok(())
}

/// The grid points of `size` around `x`: one below and two above, so a run of whole
/// blocks begins and ends on both sides of every event.
fn grid_around(x: u64, size: u64) -> [Option<u64>; 4] {
    let down = x / size * size;
    [
        down.checked_sub(size),
        Some(down),
        down.checked_add(size),
        down.checked_add(2 * size),
    ]
}

fn breakpoints(input: &PlanInput, slot: &SlotSpec, sizes: &[u64]) -> Vec<u64> {
    let (start, end) = (slot.gpa, slot.gpa_end());
    let to_gpa = |hva: u64| {
        hva.checked_sub(slot.hva)
            .and_then(|off| slot.gpa.checked_add(off))
    };
    let to_hva = |gpa: u64| {
        gpa.checked_sub(slot.gpa)
            .and_then(|off| slot.hva.checked_add(off))
    };
    // Events: where an input of the rules changes.
    let mut events = vec![start, end];
    for m in &input.mappings {
        events.extend(
            [m.hva, m.hva.saturating_add(m.size)]
                .into_iter()
                .filter_map(to_gpa),
        );
    }
    for &(s, e) in input.write_tracked.iter().chain(&input.nx_split) {
        events.extend([s, e]);
    }
    // Between the grid points around events, every block of every size sees the same
    // slot, mapping, tracking and GPA/HVA congruence, so one decision holds for the
    // whole run. This keeps the work per slot proportional to its events, not its size
    // (a 1 PiB slot is a handful of ranges, not 2^29 of them).
    let mut points = BTreeSet::from([start, end]);
    for &e in events.iter().filter(|&&e| e >= start && e <= end) {
        points.insert(e);
        for &size in sizes {
            points.extend(grid_around(e, size).into_iter().flatten());
            if let Some(h) = to_hva(e) {
                let near = grid_around(h, size).into_iter().flatten();
                points.extend(near.filter_map(to_gpa));
            }
        }
    }
    points
        .into_iter()
        .filter(|&p| p >= start && p <= end)
        .collect()
}

/// Merges neighbours with the same slot, leaf, best and reason.
pub fn coalesce(ranges: impl IntoIterator<Item = PlanRange>) -> Vec<PlanRange> {
    let mut out: Vec<PlanRange> = Vec::new();
    for r in ranges {
        if let Some(last) = out.last_mut() {
            if last.slot == r.slot
                && last.gpa + last.size == r.gpa
                && (last.leaf, last.best, last.reason) == (r.leaf, r.best, r.reason)
            {
                last.size += r.size;
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// Predicts the stage-2 leaf size for all of every slot.
pub fn plan(input: &PlanInput) -> Result<Vec<PlanRange>, PlanError> {
    check(input)?;
    let sizes = block_sizes(&input.target);
    let mut slots: Vec<&SlotSpec> = input.slots.iter().collect();
    slots.sort_by_key(|s| s.gpa);
    let mut ranges = Vec::new();
    for slot in slots {
        let points = breakpoints(input, slot, &sizes);
        for w in points.windows(2) {
            let d = leaf_at(input, slot, w[0]);
            ranges.push(PlanRange {
                slot: slot.slot,
                gpa: w[0],
                size: w[1] - w[0],
                leaf: d.leaf,
                best: d.best,
                reason: d.reason,
            });
        }
    }
    Ok(coalesce(ranges))
}

/// How many leaves of each size mapping `accessed` guest-physical ranges creates under
/// `plan`: a leaf of size L covering any accessed byte counts once.
pub fn expected_leaves(
    plan: &[PlanRange],
    accessed: &[(u64, u64)],
) -> std::collections::BTreeMap<u64, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for r in plan {
        let mut blocks = BTreeSet::new();
        for &(s, e) in accessed {
            let (lo, hi) = (s.max(r.gpa), e.min(r.gpa + r.size));
            if lo >= hi {
                continue;
            }
            let mut b = lo / r.leaf * r.leaf;
            while b < hi {
                blocks.insert(b);
                b += r.leaf;
            }
        }
        *counts.entry(r.leaf).or_insert(0) += blocks.len() as u64;
    }
    counts.retain(|_, v| *v > 0);
    counts
}
