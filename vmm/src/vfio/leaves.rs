//! The stage-2 leaf each mapped BAR area will get, predicted by the same rules as RAM:
//! a PFN map whose largest leaf is what this host kernel's vfio-pci faults in, and
//! whose physical address must be congruent with the host address.

use serde::Serialize;

use super::bars::BarArea;
use crate::stage2::{plan, HostKind, HostMapping, PlanInput, PlanRange, SlotSpec, Target, K4};

#[derive(Debug, Clone, Serialize)]
pub struct AreaPrediction {
    pub gpa: u64,
    pub size: u64,
    pub leaf: u64,
    pub best: u64,
    /// Why the leaf is smaller than the best, and what to change.
    pub reason: Option<String>,
    pub fix: Option<String>,
}

/// Predictions for `areas` on `target`, where the host maps PFN maps with leaves up
/// to `pfnmap_limit`.
pub fn predict(areas: &[BarArea], target: Target, pfnmap_limit: u64) -> Vec<AreaPrediction> {
    let input = PlanInput {
        target,
        slots: areas
            .iter()
            .map(|a| SlotSpec {
                slot: a.slot,
                gpa: a.gpa,
                size: a.size,
                hva: a.hva,
                dirty_log: false,
            })
            .collect(),
        mappings: areas
            .iter()
            .map(|a| HostMapping {
                hva: a.hva,
                size: a.size,
                kind: HostKind::PfnMap { pa: a.host_pa },
                page_size: pfnmap_limit.max(K4),
            })
            .collect(),
        write_tracked: vec![],
        nx_split: vec![],
    };
    let ranges: Vec<PlanRange> = match plan(&input) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("no stage-2 prediction for the BARs: {e}");
            return Vec::new();
        }
    };
    ranges
        .into_iter()
        .map(|r| AreaPrediction {
            gpa: r.gpa,
            size: r.size,
            leaf: r.leaf,
            best: r.best,
            reason: r.reason.map(|x| x.to_string()),
            fix: r.reason.map(|x| x.fix()),
        })
        .collect()
}

/// This host kernel's largest PFN-map leaf.
pub fn host_pfnmap_limit() -> u64 {
    let arch = if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    };
    crate::probe::huge_pfnmap_leaf(&crate::probe::kernel_release(), arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    fn area(hva: u64, pa: u64) -> BarArea {
        BarArea {
            slot: 3,
            gpa: 8 * G,
            size: G,
            hva,
            host_pa: pa,
        }
    }

    #[test]
    fn an_aligned_1g_bar_gets_1g_leaves_and_a_misaligned_one_says_why_not() {
        let t = Target::X86Tdp { max_leaf: G };
        let p = predict(&[area(0x7f00_0000_0000, 0x38_0000_0000)], t, G);
        assert_eq!((p.len(), p[0].leaf, p[0].size), (1, G, G));
        assert!(p[0].reason.is_none());
        // A kernel without PUD PFN maps: 2M, and it says so.
        let p = predict(&[area(0x7f00_0000_0000, 0x38_0000_0000)], t, 2 << 20);
        assert_eq!(p[0].leaf, 2 << 20);
        assert!(p[0].reason.as_deref().unwrap().contains("device memory"));
        // HVA off the GPA's alignment by 4K: 4K leaves, not congruent.
        let p = predict(&[area(0x7f00_0000_1000, 0x38_0000_0000)], t, G);
        assert!(p.iter().all(|r| r.leaf == K4), "{p:?}");
    }
}
