//! The stage-2 report of a run: what the planner predicted per guest-physical range,
//! what the host mapped, what KVM reports, and whether they agree.

mod render;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::memory::{Backing, GuestRam};
use crate::observe::{pagemap, smaps, stats};
use crate::probe::BackendKind;
use crate::stage2::{self, HostKind, HostMapping, PlanInput, PlanRange, Target, G1, K4, M2};
pub use render::{describe_target, render, render_exit_counts, render_plan};

/// What the host had mapped behind one zone when the guest finished.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneObserved {
    pub zone: usize,
    pub backing: Backing,
    /// Why granule chose the backing, when the user did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_default: Option<String>,
    pub size: u64,
    pub hva: u64,
    pub map_s: f64,
    pub prefault_s: Option<f64>,
    /// Present bytes and huge bytes from PAGEMAP_SCAN (None without it).
    pub present: Option<u64>,
    pub huge: Option<u64>,
    pub smaps: Option<smaps::SmapsFacts>,
}

/// A range predicted smaller than the MMU could map, with the fix.
#[derive(Debug, Clone, Serialize)]
pub struct Shortfall {
    pub gpa: u64,
    pub size: u64,
    pub leaf: u64,
    pub best: u64,
    pub reason: stage2::Reason,
    pub fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// KVM's counts lie within the predicted bounds.
    Match,
    Mismatch,
    /// This backend reports no leaf counts (e.g. arm64): prediction only.
    PredictedOnly,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage2Report {
    pub backend: BackendKind,
    pub target: Target,
    /// Predicted before the run from the backings' nominal page sizes.
    pub plan: Vec<PlanRange>,
    pub shortfalls: Vec<Shortfall>,
    pub zones: Vec<ZoneObserved>,
    /// Leaf counts expected for what the guest accessed, given the host mapping
    /// observed after the run: lower and upper bound per leaf size.
    pub expected_min: BTreeMap<u64, u64>,
    pub expected_max: BTreeMap<u64, u64>,
    /// KVM's leaf counts (x86 pages_4k/2m/1g).
    pub observed: Option<BTreeMap<u64, u64>>,
    /// Whether KVM's counts also fit the prediction made before the run from the
    /// backings' nominal page sizes (false when the host delivered fewer huge pages
    /// than the backing promises, e.g. THP under fragmentation).
    pub matches_nominal: Option<bool>,
    pub verdict: Verdict,
    pub notes: Vec<String>,
}

/// The planner target for this host's KVM and the guest's page size.
pub fn host_target(backend: BackendKind, guest_page: u64) -> Target {
    if cfg!(target_arch = "aarch64") {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        let granule = match page {
            0x4000 => stage2::Granule::G16k,
            0x10000 => stage2::Granule::G64k,
            _ => stage2::Granule::G4k,
        };
        return Target::Arm64 { granule };
    }
    let max_leaf = if crate::probe::host_has_1g_pages() {
        G1
    } else {
        M2
    };
    match backend {
        BackendKind::VmxEpt | BackendKind::SvmNpt => Target::X86Tdp { max_leaf },
        _ => Target::X86Shadow {
            max_leaf,
            guest_page,
        },
    }
}

/// The host mapping as observed: THP zones split into huge and base-page ranges.
fn observed_mappings(input: &PlanInput, scans: &[Option<Vec<pagemap::Range>>]) -> Vec<HostMapping> {
    let mut out = Vec::new();
    for (m, scan) in input.mappings.iter().zip(scans) {
        match (m.kind, scan) {
            (HostKind::Thp, Some(ranges)) => {
                let mut pos = m.hva;
                for r in ranges.iter().filter(|r| r.huge) {
                    if r.start > pos {
                        out.push(HostMapping {
                            hva: pos,
                            size: r.start - pos,
                            kind: HostKind::Base,
                            page_size: K4,
                        });
                    }
                    out.push(HostMapping {
                        hva: r.start,
                        size: r.end - r.start,
                        kind: HostKind::Thp,
                        page_size: K4,
                    });
                    pos = r.end;
                }
                if pos < m.hva + m.size {
                    out.push(HostMapping {
                        hva: pos,
                        size: m.hva + m.size - pos,
                        kind: HostKind::Base,
                        page_size: K4,
                    });
                }
            }
            _ => out.push(*m),
        }
    }
    out
}

fn within(obs: &BTreeMap<u64, u64>, min: &BTreeMap<u64, u64>, max: &BTreeMap<u64, u64>) -> bool {
    let sizes: std::collections::BTreeSet<u64> = obs
        .keys()
        .chain(min.keys())
        .chain(max.keys())
        .copied()
        .collect();
    sizes.into_iter().all(|s| {
        let o = obs.get(&s).copied().unwrap_or(0);
        min.get(&s).copied().unwrap_or(0) <= o && o <= max.get(&s).copied().unwrap_or(0)
    })
}

/// Everything the report needs from the run.
pub struct RunFacts<'a> {
    pub ram: &'a GuestRam,
    pub backend: BackendKind,
    pub target: Target,
    pub write_tracked: Vec<(u64, u64)>,
    /// Ranges the guest executes from (split to 4K while the host's NX-huge-page
    /// mitigation is on).
    pub executed: Vec<(u64, u64)>,
    /// Ranges the guest certainly accessed, and ranges it may have accessed.
    pub accessed_min: Vec<(u64, u64)>,
    pub accessed_max: Vec<(u64, u64)>,
    pub vm_stats: Option<stats::Stats>,
}

/// What the host actually mapped behind each zone (PAGEMAP_SCAN and smaps), with the
/// page scans for the refined plan; notes a THP zone that got fewer huge pages.
fn observe_zones(
    ram: &crate::memory::GuestRam,
    notes: &mut Vec<String>,
) -> (Vec<ZoneObserved>, Vec<Option<Vec<pagemap::Range>>>) {
    let smaps_text = std::fs::read_to_string("/proc/self/smaps").ok();
    let mut scans = Vec::new();
    let zones: Vec<ZoneObserved> = ram
        .zones()
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let (start, end) = (z.map.as_ptr() as u64, z.map.as_ptr() as u64 + z.map.len() as u64);
            let scan = pagemap::scan(start, end).ok().flatten();
            let counts = scan.as_deref().map(pagemap::present_and_huge);
            scans.push(scan);
            if z.config.backing == Backing::Thp {
                if let Some((present, huge)) = counts {
                    if huge < present {
                        notes.push(format!(
                            "zone {i}: THP backed {} of {} present bytes with huge pages (the rest: partial 2 MiB blocks at the zone's edges, or no free 2 MiB pages)",
                            crate::units::format_size(huge),
                            crate::units::format_size(present)
                        ));
                    }
                }
            }
            ZoneObserved {
                zone: i,
                backing: z.config.backing,
                backing_default: z.config.backing_default.clone(),
                size: z.config.size,
                hva: start,
                map_s: z.map_s,
                prefault_s: z.prefault_s,
                present: counts.map(|c| c.0),
                huge: counts.map(|c| c.1),
                smaps: smaps_text.as_deref().map(|t| smaps::facts(t, start, end)),
            }
        })
        .collect();

    (zones, scans)
}

pub fn build(f: RunFacts<'_>) -> Stage2Report {
    let mut notes = Vec::new();
    let mut input = f.ram.plan_input(f.target, f.write_tracked.clone());
    if crate::probe::nx_huge_pages()
        && matches!(f.target, Target::X86Tdp { .. } | Target::X86Shadow { .. })
    {
        notes.push("the host's NX-huge-page mitigation is on: executed guest pages get 4K leaves until KVM recovers them".into());
        input.nx_split = f.executed.clone();
    }
    let plan = stage2::plan(&input).unwrap_or_else(|e| {
        notes.push(format!("planner rejected the layout: {e}"));
        Vec::new()
    });
    let shortfalls = plan
        .iter()
        .filter_map(|r| {
            r.reason.map(|reason| Shortfall {
                gpa: r.gpa,
                size: r.size,
                leaf: r.leaf,
                best: r.best,
                reason,
                fix: reason.fix(),
            })
        })
        .collect();

    let (zones, scans) = observe_zones(f.ram, &mut notes);

    let observed_input = PlanInput {
        mappings: observed_mappings(&input, &scans),
        ..input
    };
    let refined = stage2::plan(&observed_input).unwrap_or_default();
    let expected_min = stage2::expected_leaves(&refined, &f.accessed_min);
    let expected_max = stage2::expected_leaves(&refined, &f.accessed_max);
    let observed = f.vm_stats.as_ref().and_then(stats::leaf_counts);
    let matches_nominal = observed.as_ref().map(|o| {
        within(
            o,
            &stage2::expected_leaves(&plan, &f.accessed_min),
            &stage2::expected_leaves(&plan, &f.accessed_max),
        )
    });
    if matches_nominal == Some(false) {
        notes.push("KVM's leaves differ from the pre-run prediction because the host mapped fewer huge pages than the backing allows (see the zones above)".into());
    }
    let verdict = match &observed {
        None => Verdict::PredictedOnly,
        Some(o) if within(o, &expected_min, &expected_max) => Verdict::Match,
        Some(_) => Verdict::Mismatch,
    };
    Stage2Report {
        backend: f.backend,
        target: f.target,
        plan,
        shortfalls,
        zones,
        expected_min,
        expected_max,
        observed,
        matches_nominal,
        verdict,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_check_every_leaf_size() {
        let min = BTreeMap::from([(K4, 1), (M2, 511)]);
        let max = BTreeMap::from([(K4, 300), (M2, 511)]);
        assert!(within(
            &BTreeMap::from([(K4, 3), (M2, 511), (G1, 0)]),
            &min,
            &max
        ));
        assert!(!within(&BTreeMap::from([(K4, 3), (M2, 510)]), &min, &max));
        assert!(!within(
            &BTreeMap::from([(K4, 3), (M2, 511), (G1, 1)]),
            &min,
            &max
        ));
    }

    #[test]
    fn thp_zones_are_split_by_what_pagemap_saw() {
        let input = PlanInput {
            target: Target::X86Tdp { max_leaf: M2 },
            slots: vec![],
            mappings: vec![HostMapping {
                hva: 0,
                size: 8 * M2,
                kind: HostKind::Thp,
                page_size: K4,
            }],
            write_tracked: vec![],
            nx_split: vec![],
        };
        let scan = vec![pagemap::Range {
            start: 2 * M2,
            end: 4 * M2,
            huge: true,
        }];
        let m = observed_mappings(&input, &[Some(scan)]);
        assert_eq!(
            m.iter()
                .map(|m| (m.hva, m.size, m.kind))
                .collect::<Vec<_>>(),
            vec![
                (0, 2 * M2, HostKind::Base),
                (2 * M2, 2 * M2, HostKind::Thp),
                (4 * M2, 4 * M2, HostKind::Base),
            ]
        );
    }
}
