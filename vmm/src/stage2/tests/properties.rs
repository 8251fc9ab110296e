//! Property tests: the planner's sweep equals a brute-force page-by-page evaluation of
//! its own rules, and its leaves equal an independent per-page oracle written from the
//! spec.

use super::*;
use proptest::prelude::*;

/// Reference: evaluate the rules page by page, then merge.
fn brute_force(i: &PlanInput) -> Vec<PlanRange> {
    let page = i.target.base_page();
    let mut slots: Vec<&SlotSpec> = i.slots.iter().collect();
    slots.sort_by_key(|s| s.gpa);
    coalesce(slots.into_iter().flat_map(|s| {
        (s.gpa..s.gpa_end()).step_by(page as usize).map(move |gpa| {
            let d = leaf_at(i, s, gpa);
            PlanRange {
                slot: s.slot,
                gpa,
                size: page,
                leaf: d.leaf,
                best: d.best,
                reason: d.reason,
            }
        })
    }))
}

fn arb_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(TDP1G),
        Just(TDP2M),
        Just(SHADOW),
        Just(ARM4K),
        Just(Target::Arm64 {
            granule: Granule::G16k
        }),
    ]
}

fn arb_kind() -> impl Strategy<Value = (HostKind, u64)> {
    prop_oneof![
        Just((HostKind::Base, K4)),
        Just((HostKind::Thp, K4)),
        Just((HostKind::Hugetlb, M2)),
        Just((HostKind::Hugetlb, G1)),
        // Device memory behind a host that can map it with up to 4K, 2M or 1G leaves.
        (0u64..4, prop_oneof![Just(K4), Just(M2), Just(G1)]).prop_map(|(k, max)| (
            HostKind::PfnMap {
                pa: 0x40_0000_0000 + k * M2
            },
            max
        )),
    ]
}

/// Small worlds (up to ~3 GiB) with offsets in base pages, 2M and 1G units, so every
/// rule's boundary cases come up.
fn arb_input() -> impl Strategy<Value = PlanInput> {
    (
        arb_target(),
        prop::collection::vec((0u64..4, 0u64..1024, 1u64..1536, 0u64..4, 0u64..1024), 1..3),
        arb_kind(),
        any::<bool>(),
        0u64..512,
    )
        .prop_map(|(target, raw, (kind, page_size), dirty, tracked)| {
            let page = target.base_page();
            let unit = |u: u64| match u {
                0 => page,
                1 => M2,
                2 => 64 * M2,
                _ => G1,
            };
            let mut slots = Vec::new();
            let mut next_gpa = 0;
            for (n, &(gu, goff, pages, hu, hoff)) in raw.iter().enumerate() {
                let gpa = next_gpa + unit(gu) * (goff % 3) + page * (goff % 5);
                let size = pages * page * if page == K4 { 512 } else { 32 } / 8;
                let hva = HVA + unit(hu) * (hoff % 3) + page * (hoff % 7);
                next_gpa = (gpa + size).div_ceil(G1) * G1;
                slots.push(SlotSpec {
                    slot: n as u32,
                    gpa,
                    size,
                    hva,
                    dirty_log: dirty && n == 0,
                });
            }
            let (lo, hi) = slots.iter().fold((u64::MAX, 0), |(lo, hi), s| {
                (lo.min(s.hva), hi.max(s.hva + s.size))
            });
            // One VMA covering all slots, trimmed by a few pages at either end sometimes
            // (cutting a huge block at the VMA's edge, not the slot's).
            let trim = (tracked % 3) * page;
            let trim_end = ((tracked / 3) % 3) * page;
            let mappings = vec![HostMapping {
                hva: lo + trim,
                size: (hi - lo - trim).saturating_sub(trim_end).max(page),
                kind,
                page_size,
            }];
            let write_tracked = vec![(tracked * page, tracked * page + page)];
            // Sometimes code the guest runs under the NX-huge-page mitigation (x86).
            let x86 = !matches!(target, Target::Arm64 { .. });
            let nx_split = if x86 && tracked % 2 == 1 {
                let at = (tracked % 8) * M2 + page;
                vec![(at, at + 3 * page)]
            } else {
                vec![]
            };
            PlanInput {
                target,
                slots,
                mappings,
                write_tracked,
                nx_split,
            }
        })
}

/// An independent oracle: the leaf of one page, written from the spec's text
/// (shared/spec/stage2.md) without the planner's rules module. Leaves only; the reasons
/// are the planner's own explanation.
fn oracle_leaf(i: &PlanInput, s: &SlotSpec, gpa: u64) -> u64 {
    let hva = s.hva + (gpa - s.gpa);
    let block_of = |x: u64, size: u64| x / size * size;
    let vma = i
        .mappings
        .iter()
        .find(|m| m.hva <= hva && hva < m.hva + m.size);
    let in_vma = |m: &HostMapping, size: u64| {
        let b = block_of(hva, size);
        b >= m.hva && b + size <= m.hva + m.size
    };
    // A PFN map: the host's fault path installs at most m.page_size.
    let pfn_ok = |m: &HostMapping, pa: u64, size: u64| {
        size <= m.page_size && in_vma(m, size) && (pa + (hva - m.hva)) % size == hva % size
    };
    let page = i.target.base_page();
    let Some(m) = vma else { return page };
    if s.dirty_log {
        return page;
    }
    let congruent = |size: u64| s.gpa % size == s.hva % size;
    match i.target {
        Target::X86Tdp { max_leaf } | Target::X86Shadow { max_leaf, .. } => {
            let guest_cap = match i.target {
                Target::X86Shadow { guest_page, .. } => guest_page,
                _ => u64::MAX,
            };
            // The host page-table leaf that maps the HVA.
            let host = match m.kind {
                HostKind::Base => K4,
                HostKind::Thp if in_vma(m, M2) => M2,
                HostKind::Thp => K4,
                HostKind::Hugetlb => m.page_size,
                HostKind::PfnMap { pa } => [G1, M2]
                    .into_iter()
                    .find(|&l| pfn_ok(m, pa, l))
                    .unwrap_or(K4),
            };
            [G1, M2]
                .into_iter()
                .find(|&l| {
                    let b = block_of(gpa, l);
                    let overlaps =
                        |r: &[(u64, u64)]| r.iter().any(|&(ts, te)| ts < b + l && te > b);
                    // Write-tracked frames matter under shadow paging; executed ones
                    // whenever the NX-huge-page mitigation lists them.
                    let tracked = (guest_cap != u64::MAX && overlaps(&i.write_tracked))
                        || overlaps(&i.nx_split);
                    l <= max_leaf
                        && l <= guest_cap
                        && congruent(l)
                        && b >= s.gpa
                        && b + l <= s.gpa + s.size
                        && !tracked
                        && host >= l
                })
                .unwrap_or(K4)
        }
        Target::Arm64 { granule } => {
            let (pmd, pud) = (granule.pmd(), granule.pud());
            let fits = |size: u64| {
                let b = block_of(hva, size);
                size == page || (congruent(size) && b >= s.hva && b + size <= s.hva + s.size)
            };
            let mut size = match m.kind {
                HostKind::Hugetlb => [pud, Some(pmd)]
                    .into_iter()
                    .flatten()
                    .find(|&l| m.page_size >= l)
                    .unwrap_or(page),
                HostKind::Base | HostKind::Thp => page,
                HostKind::PfnMap { pa } => [pud, Some(pmd)]
                    .into_iter()
                    .flatten()
                    .find(|&l| pfn_ok(m, pa, l))
                    .unwrap_or(page),
            };
            while size > page && !fits(size) {
                size = if Some(size) == pud { pmd } else { page };
            }
            if size == page && m.kind == HostKind::Thp && fits(pmd) && in_vma(m, pmd) {
                size = pmd;
            }
            size
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn planner_equals_brute_force(i in arb_input()) {
        prop_assert_eq!(plan(&i).unwrap(), brute_force(&i));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// The planner's leaves against the independent oracle, page by page.
    #[test]
    fn planner_leaves_equal_the_spec_oracle(i in arb_input()) {
        let planned = plan(&i).unwrap();
        let page = i.target.base_page();
        for s in &i.slots {
            for gpa in (s.gpa..s.gpa_end()).step_by(page as usize) {
                let r = planned
                    .iter()
                    .find(|r| r.slot == s.slot && r.gpa <= gpa && gpa < r.gpa + r.size)
                    .expect("every page is planned");
                prop_assert_eq!(r.leaf, oracle_leaf(&i, s, gpa), "slot {} gpa {:#x}", s.slot, gpa);
            }
        }
    }
}
