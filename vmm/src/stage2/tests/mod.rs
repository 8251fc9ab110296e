//! Table tests: one or more per rule in ../shared/spec/stage2.md. Property tests in
//! `properties.rs`.

use super::*;

const TDP1G: Target = Target::X86Tdp { max_leaf: G1 };
const TDP2M: Target = Target::X86Tdp { max_leaf: M2 };
const SHADOW: Target = Target::X86Shadow {
    max_leaf: G1,
    guest_page: M2,
};
const ARM4K: Target = Target::Arm64 {
    granule: Granule::G4k,
};

fn slot(gpa: u64, size: u64, hva: u64) -> SlotSpec {
    SlotSpec {
        slot: 0,
        gpa,
        size,
        hva,
        dirty_log: false,
    }
}

fn map(hva: u64, size: u64, kind: HostKind, page_size: u64) -> HostMapping {
    HostMapping {
        hva,
        size,
        kind,
        page_size,
    }
}

fn input(target: Target, slots: Vec<SlotSpec>, mappings: Vec<HostMapping>) -> PlanInput {
    PlanInput {
        target,
        slots,
        mappings,
        write_tracked: vec![],
        nx_split: vec![],
    }
}

/// (gpa, size, leaf, reason) of each planned range.
fn summary(i: &PlanInput) -> Vec<(u64, u64, u64, Option<Reason>)> {
    plan(i)
        .unwrap()
        .into_iter()
        .map(|r| (r.gpa, r.size, r.leaf, r.reason))
        .collect()
}

const HVA: u64 = 0x7f00_0000_0000; // 1 GiB aligned

#[test]
fn x86_hugetlb_1g_aligned_gets_1g_and_unaligned_edges_say_why() {
    // 3 GiB at GPA 4 GiB, 1G hugetlb: all 1G, nothing to explain.
    let i = input(
        TDP1G,
        vec![slot(4 * G1, 3 * G1, HVA)],
        vec![map(HVA, 3 * G1, HostKind::Hugetlb, G1)],
    );
    assert_eq!(summary(&i), vec![(4 * G1, 3 * G1, G1, None)]);
    // The same slot starting 2 MiB into the mapping: GPA/HVA no longer congruent mod 1G.
    let i = input(
        TDP1G,
        vec![slot(4 * G1, 2 * G1, HVA + M2)],
        vec![map(HVA, 3 * G1, HostKind::Hugetlb, G1)],
    );
    assert_eq!(
        summary(&i),
        vec![(4 * G1, 2 * G1, M2, Some(Reason::NotCongruent { align: G1 }))]
    );
    // A slot that starts and ends 2 MiB off a 1 GiB boundary: 2M at head and tail.
    let i = input(
        TDP1G,
        vec![slot(G1 - M2, G1 + 2 * M2, HVA + G1 - M2)],
        vec![map(HVA, 3 * G1, HostKind::Hugetlb, G1)],
    );
    let edge = Some(Reason::SlotEdge { size: G1 });
    assert_eq!(
        summary(&i),
        vec![
            (G1 - M2, M2, M2, edge),
            (G1, G1, G1, None),
            (2 * G1, M2, M2, edge)
        ]
    );
}

#[test]
fn x86_backing_and_hardware_caps() {
    let s = vec![slot(0, G1, HVA)];
    let anon = input(TDP1G, s.clone(), vec![map(HVA, G1, HostKind::Base, K4)]);
    assert_eq!(
        summary(&anon),
        vec![(0, G1, K4, Some(Reason::Backing { host_page: K4 }))]
    );
    let thp = input(TDP1G, s.clone(), vec![map(HVA, G1, HostKind::Thp, K4)]);
    assert_eq!(
        summary(&thp),
        vec![(0, G1, M2, Some(Reason::Backing { host_page: M2 }))]
    );
    let h2m = input(TDP2M, s.clone(), vec![map(HVA, G1, HostKind::Hugetlb, M2)]);
    assert_eq!(
        summary(&h2m),
        vec![(0, G1, M2, None)],
        "2M is the best a 2M-only MMU does"
    );
    let h1g_on_2m = input(TDP2M, s, vec![map(HVA, G1, HostKind::Hugetlb, G1)]);
    assert_eq!(summary(&h1g_on_2m), vec![(0, G1, M2, None)]);
}

#[test]
fn x86_thp_needs_the_2m_block_inside_the_vma() {
    // The VMA starts 4 KiB into a 2 MiB block: that block is 4K, the rest 2M.
    let i = input(
        TDP2M,
        vec![slot(0, 4 * M2, HVA)],
        vec![
            map(HVA + K4, 4 * M2 - K4, HostKind::Thp, K4),
            map(HVA, K4, HostKind::Base, K4),
        ],
    );
    let s = summary(&i);
    assert_eq!(s[0], (0, K4, K4, Some(Reason::Backing { host_page: K4 })));
    assert_eq!(s[1], (K4, M2 - K4, K4, Some(Reason::VmaEdge { size: M2 })));
    assert_eq!(s[2], (M2, 3 * M2, M2, None));
}

#[test]
fn x86_dirty_logging_forces_4k() {
    let mut s = slot(0, G1, HVA);
    s.dirty_log = true;
    let i = input(TDP1G, vec![s], vec![map(HVA, G1, HostKind::Hugetlb, G1)]);
    assert_eq!(summary(&i), vec![(0, G1, K4, Some(Reason::DirtyLogging))]);
}

#[test]
fn x86_shadow_caps_at_the_guest_page_and_honours_write_tracking() {
    let mut i = input(
        SHADOW,
        vec![slot(0, G1, HVA)],
        vec![map(HVA, G1, HostKind::Hugetlb, G1)],
    );
    i.write_tracked = vec![(0x7000, 0x9000)];
    let s = summary(&i);
    assert_eq!(s[0], (0, M2, K4, Some(Reason::WriteTracked)));
    assert_eq!(
        s[1],
        (
            M2,
            G1 - M2,
            M2,
            Some(Reason::GuestPageCap { guest_page: M2 })
        )
    );
    // Write tracking only matters under shadow paging.
    i.target = TDP1G;
    assert_eq!(summary(&i), vec![(0, G1, G1, None)]);
}

/// Code the guest executes gets 4K leaves while the host's NX-huge-page mitigation is
/// on, and only the blocks that hold it.
#[test]
fn x86_executed_code_is_split_under_the_nx_huge_page_mitigation() {
    let mut i = input(
        TDP2M,
        vec![slot(0, 4 * M2, HVA)],
        vec![map(HVA, 4 * M2, HostKind::Hugetlb, M2)],
    );
    i.nx_split = vec![(M2 + K4, M2 + 3 * K4)];
    assert_eq!(
        summary(&i),
        vec![
            (0, M2, M2, None),
            (M2, M2, K4, Some(Reason::NxHugePages)),
            (2 * M2, 2 * M2, M2, None),
        ]
    );
}

/// Huge device mappings are the host kernel's capability: without huge PFN maps (before
/// Linux 6.12) a perfectly placed BAR still gets 4K leaves, with PMD-only support 2M.
#[test]
fn pfnmap_leaves_stop_at_what_the_host_kernel_can_map() {
    let bar = |max| map(HVA, G1, HostKind::PfnMap { pa: 0xc_0000_0000 }, max);
    let at = 0x80_0000_0000;
    for (target, max, leaf) in [
        (TDP1G, K4, K4),
        (TDP1G, M2, M2),
        (ARM4K, M2, M2),
        (ARM4K, K4, K4),
    ] {
        let i = input(target, vec![slot(at, G1, HVA)], vec![bar(max)]);
        assert_eq!(
            summary(&i),
            vec![(at, G1, leaf, Some(Reason::PfnMapLimit { host_max: max }))],
            "{target:?} with {max:#x} PFN maps"
        );
    }
}

#[test]
fn x86_pfnmap_bar_follows_vma_geometry_and_pfn_alignment() {
    let bar = |pa| map(HVA, G1, HostKind::PfnMap { pa }, G1);
    let i = input(
        TDP1G,
        vec![slot(0x80_0000_0000, G1, HVA)],
        vec![bar(0xc_0000_0000)],
    );
    assert_eq!(summary(&i), vec![(0x80_0000_0000, G1, G1, None)]);
    // The BAR's physical address is only 2M aligned: 2M leaves.
    let i = input(
        TDP1G,
        vec![slot(0x80_0000_0000, G1, HVA)],
        vec![bar(0xc_0020_0000)],
    );
    assert_eq!(
        summary(&i),
        vec![(
            0x80_0000_0000,
            G1,
            M2,
            Some(Reason::PfnNotAligned { align: G1 })
        )]
    );
}

#[test]
fn arm64_hugetlb_and_thp() {
    let s = vec![slot(0x4000_0000, 2 * G1, HVA)];
    let h1g = input(
        ARM4K,
        s.clone(),
        vec![map(HVA, 2 * G1, HostKind::Hugetlb, G1)],
    );
    assert_eq!(summary(&h1g), vec![(0x4000_0000, 2 * G1, G1, None)]);
    let h2m = input(
        ARM4K,
        s.clone(),
        vec![map(HVA, 2 * G1, HostKind::Hugetlb, M2)],
    );
    assert_eq!(
        summary(&h2m),
        vec![(
            0x4000_0000,
            2 * G1,
            M2,
            Some(Reason::Backing { host_page: M2 })
        )]
    );
    let thp = input(ARM4K, s.clone(), vec![map(HVA, 2 * G1, HostKind::Thp, K4)]);
    assert_eq!(
        summary(&thp),
        vec![(
            0x4000_0000,
            2 * G1,
            M2,
            Some(Reason::Backing { host_page: M2 })
        )]
    );
    let anon = input(ARM4K, s, vec![map(HVA, 2 * G1, HostKind::Base, K4)]);
    assert_eq!(
        summary(&anon),
        vec![(
            0x4000_0000,
            2 * G1,
            K4,
            Some(Reason::Backing { host_page: K4 })
        )]
    );
    // A 1G hugetlb page whose slot is not 1G-congruent steps down to 2M blocks.
    let off = input(
        ARM4K,
        vec![slot(0x4000_0000 + M2, G1, HVA)],
        vec![map(HVA, 2 * G1, HostKind::Hugetlb, G1)],
    );
    assert_eq!(
        summary(&off),
        vec![(
            0x4000_0000 + M2,
            G1,
            M2,
            Some(Reason::NotCongruent { align: G1 })
        )]
    );
}

#[test]
fn arm64_pfnmap_bar_geometry() {
    // A 1 GiB BAR at a 1 GiB-aligned GPA with an aligned HVA and PA: 1G blocks.
    let bar = |hva, pa| map(hva, G1, HostKind::PfnMap { pa }, G1);
    let i = input(
        ARM4K,
        vec![slot(0x80_0000_0000, G1, HVA)],
        vec![bar(HVA, 0x10_0000_0000)],
    );
    assert_eq!(summary(&i), vec![(0x80_0000_0000, G1, G1, None)]);
    // HVA only 2 MiB aligned (no aligned mmap): the PUD block leaves the VMA -> 2M.
    let i = input(
        ARM4K,
        vec![slot(0x80_0000_0000 + M2, G1, HVA + M2)],
        vec![bar(HVA + M2, 0x10_0020_0000)],
    );
    assert_eq!(
        summary(&i),
        vec![(
            0x80_0000_0000 + M2,
            G1,
            M2,
            Some(Reason::VmaEdge { size: G1 })
        )]
    );
    // HVA and PA 4 KiB off (still congruent mod 2M): the partial 2M blocks at both
    // ends are pages (their 2M block leaves the VMA), the whole ones in between 2M
    // blocks (their 1G block leaves the VMA).
    let i = input(
        ARM4K,
        vec![slot(0x80_0000_1000, G1, HVA + K4)],
        vec![bar(HVA + K4, 0x10_0000_1000)],
    );
    let (why1g, why2m) = (
        Some(Reason::VmaEdge { size: G1 }),
        Some(Reason::VmaEdge { size: M2 }),
    );
    assert_eq!(
        summary(&i),
        vec![
            (0x80_0000_1000, M2 - K4, K4, why2m),
            (0x80_0020_0000, G1 - M2, M2, why1g),
            (0x80_4000_0000, K4, K4, why2m),
        ]
    );
    // And with the PA not congruent mod 2M either: pages throughout.
    let i = input(
        ARM4K,
        vec![slot(0x80_0000_1000, G1, HVA + K4)],
        vec![bar(HVA + K4, 0x10_0000_3000)],
    );
    let pfn = Some(Reason::PfnNotAligned { align: M2 });
    assert_eq!(
        summary(&i),
        vec![
            (0x80_0000_1000, M2 - K4, K4, why2m),
            (0x80_0020_0000, G1 - M2, K4, pfn),
            (0x80_4000_0000, K4, K4, why2m),
        ]
    );
}

#[test]
fn arm64_granules_scale_the_block_sizes() {
    let g16 = Target::Arm64 {
        granule: Granule::G16k,
    };
    let i = input(
        g16,
        vec![slot(0, G1, HVA)],
        vec![map(HVA, G1, HostKind::Thp, K16)],
    );
    assert_eq!(
        summary(&i),
        vec![(0, G1, M32, Some(Reason::Backing { host_page: M32 }))]
    );
    let g64 = Target::Arm64 {
        granule: Granule::G64k,
    };
    let i = input(
        g64,
        vec![slot(0, G1, HVA)],
        vec![map(HVA, G1, HostKind::Hugetlb, M512)],
    );
    assert_eq!(
        summary(&i),
        vec![(0, G1, M512, None)],
        "PMD is the largest 64K block"
    );
    let i = input(
        g64,
        vec![slot(0, G1, HVA)],
        vec![map(HVA, G1, HostKind::Base, K64)],
    );
    assert_eq!(
        summary(&i),
        vec![(0, G1, K64, Some(Reason::Backing { host_page: K64 }))]
    );
}

#[test]
fn arm64_dirty_logging_forces_pages() {
    let mut s = slot(0, G1, HVA);
    s.dirty_log = true;
    let i = input(ARM4K, vec![s], vec![map(HVA, G1, HostKind::Hugetlb, G1)]);
    assert_eq!(summary(&i), vec![(0, G1, K4, Some(Reason::DirtyLogging))]);
}

#[test]
fn unmapped_slots_and_bad_inputs() {
    let i = input(TDP1G, vec![slot(0, M2, HVA)], vec![]);
    assert_eq!(summary(&i), vec![(0, M2, K4, Some(Reason::Unmapped))]);
    let bad = input(TDP1G, vec![slot(0x800, M2, HVA)], vec![]);
    assert!(matches!(plan(&bad), Err(PlanError::Unaligned { .. })));
    let overlap = input(
        TDP1G,
        vec![
            slot(0, G1, HVA),
            SlotSpec {
                slot: 1,
                ..slot(M2, M2, HVA)
            },
        ],
        vec![],
    );
    assert_eq!(plan(&overlap), Err(PlanError::Overlap { a: 0, b: 1 }));
    let empty = input(TDP1G, vec![slot(0, 0, HVA)], vec![]);
    assert_eq!(plan(&empty), Err(PlanError::Empty { slot: 0 }));
}

#[test]
fn expected_leaves_count_blocks_touched() {
    let plan = vec![
        PlanRange {
            slot: 0,
            gpa: 0,
            size: M2,
            leaf: K4,
            best: M2,
            reason: None,
        },
        PlanRange {
            slot: 0,
            gpa: M2,
            size: 4 * M2,
            leaf: M2,
            best: M2,
            reason: None,
        },
    ];
    // Touch 3 pages of the first block and 2.5 of the huge blocks.
    let counts = expected_leaves(&plan, &[(0x1000, 0x4000), (M2, 3 * M2 + 0x1000)]);
    assert_eq!(counts.get(&K4), Some(&3));
    assert_eq!(counts.get(&M2), Some(&3));
}

mod properties;
