//! The stage-2 leaf-size rules for one guest-physical address, transcribed from
//! ../shared/spec/stage2.md (Linux: x86 kvm_mmu_max_mapping_level and
//! host_pfn_mapping_level; arm64 user_mem_abort, get_vma_page_shift,
//! fault_supports_stage2_huge_mapping, transparent_hugepage_adjust).

use super::model::{HostKind, HostMapping, PlanInput, Reason, SlotSpec, Target, G1, K4, M2};

/// The predicted leaf at one address. `reason` says why the leaf is not one size
/// larger: the check that failed for the next larger block, which is what a user can
/// change to move up a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub leaf: u64,
    pub best: u64,
    pub reason: Option<Reason>,
}

fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

fn congruent(a: u64, b: u64, size: u64) -> bool {
    (a ^ b) & (size - 1) == 0
}

/// The host VMA holding `hva`.
pub fn mapping_at(mappings: &[HostMapping], hva: u64) -> Option<&HostMapping> {
    mappings.iter().find(|m| m.contains(hva, 1))
}

/// Whether the host page tables can map `hva` with a leaf of at least `size` (x86:
/// host_pfn_mapping_level), and why not.
fn x86_host_allows(m: &HostMapping, hva: u64, size: u64) -> Result<(), Reason> {
    let block = align_down(hva, size);
    match m.kind {
        HostKind::Base => Err(Reason::Backing {
            host_page: m.page_size,
        }),
        HostKind::Thp if size > M2 => Err(Reason::Backing { host_page: M2 }),
        HostKind::Thp if !m.contains(block, size) => Err(Reason::VmaEdge { size }),
        HostKind::Thp => Ok(()),
        HostKind::Hugetlb if size > m.page_size => Err(Reason::Backing {
            host_page: m.page_size,
        }),
        HostKind::Hugetlb => Ok(()),
        HostKind::PfnMap { .. } if size > m.page_size => Err(Reason::PfnMapLimit {
            host_max: m.page_size,
        }),
        HostKind::PfnMap { pa } => {
            if !m.contains(block, size) {
                Err(Reason::VmaEdge { size })
            } else if !congruent(pa + (hva - m.hva), hva, size) {
                Err(Reason::PfnNotAligned { align: size })
            } else {
                Ok(())
            }
        }
    }
}

fn x86(
    input: &PlanInput,
    slot: &SlotSpec,
    gpa: u64,
    max_leaf: u64,
    guest_page: Option<u64>,
) -> Decision {
    let best = max_leaf;
    let hva = slot.hva_of(gpa);
    let Some(m) = mapping_at(&input.mappings, hva) else {
        return Decision {
            leaf: K4,
            best,
            reason: Some(Reason::Unmapped),
        };
    };
    if slot.dirty_log {
        return Decision {
            leaf: K4,
            best,
            reason: Some(Reason::DirtyLogging),
        };
    }
    let mut first = None;
    for size in [G1, M2].into_iter().filter(|&s| s <= max_leaf) {
        let block = align_down(gpa, size);
        let why = if let Some(g) = guest_page.filter(|&g| size > g) {
            Some(Reason::GuestPageCap { guest_page: g })
        } else if let Err(r) = x86_host_allows(m, hva, size) {
            Some(r)
        } else if !congruent(slot.gpa, slot.hva, size) {
            Some(Reason::NotCongruent { align: size })
        } else if block < slot.gpa || block + size > slot.gpa_end() {
            Some(Reason::SlotEdge { size })
        } else if guest_page.is_some()
            && input
                .write_tracked
                .iter()
                .any(|&(s, e)| s < block + size && e > block)
        {
            Some(Reason::WriteTracked)
        } else if input
            .nx_split
            .iter()
            .any(|&(s, e)| s < block + size && e > block)
        {
            Some(Reason::NxHugePages)
        } else {
            None
        };
        match why {
            None => {
                return Decision {
                    leaf: size,
                    best,
                    reason: first,
                }
            }
            Some(r) => first = Some(r),
        }
    }
    Decision {
        leaf: K4,
        best,
        reason: first,
    }
}

/// arm64: `fits` of fault_supports_stage2_huge_mapping: GPA/HVA congruent modulo
/// `size` and the aligned block around `hva` inside the slot's HVA range.
fn arm64_fits(slot: &SlotSpec, hva: u64, size: u64) -> Result<(), Reason> {
    if !congruent(slot.gpa, slot.hva, size) {
        return Err(Reason::NotCongruent { align: size });
    }
    let block = align_down(hva, size);
    if block < slot.hva || block + size > slot.hva + slot.size {
        return Err(Reason::SlotEdge { size });
    }
    Ok(())
}

fn arm64(input: &PlanInput, slot: &SlotSpec, gpa: u64, g: super::model::Granule) -> Decision {
    let (page, pmd, pud) = (g.page(), g.pmd(), g.pud());
    let best = pud.unwrap_or(pmd);
    let hva = slot.hva_of(gpa);
    let Some(m) = mapping_at(&input.mappings, hva) else {
        return Decision {
            leaf: page,
            best,
            reason: Some(Reason::Unmapped),
        };
    };
    if slot.dirty_log {
        return Decision {
            leaf: page,
            best,
            reason: Some(Reason::DirtyLogging),
        };
    }
    let mut first: Option<Reason> = None;
    // Checks run from the largest block down, so the last note is about the block
    // just above the final size.
    let note = |r: Reason, first: &mut Option<Reason>| *first = Some(r);
    // 2. The size the VMA offers.
    let mut size = match m.kind {
        HostKind::Hugetlb => {
            let s = if pud.is_some_and(|u| m.page_size >= u) {
                pud.unwrap_or(pmd)
            } else if m.page_size >= pmd {
                pmd
            } else {
                page
            };
            if s < best {
                note(
                    Reason::Backing {
                        host_page: m.page_size,
                    },
                    &mut first,
                );
            }
            s
        }
        HostKind::Base => {
            note(
                Reason::Backing {
                    host_page: m.page_size,
                },
                &mut first,
            );
            page
        }
        HostKind::Thp => page,
        HostKind::PfnMap { pa } => {
            let phys = pa + (hva - m.hva);
            let mut chosen = page;
            for s in pud.into_iter().chain([pmd]) {
                let block = align_down(hva, s);
                if s > m.page_size {
                    note(
                        Reason::PfnMapLimit {
                            host_max: m.page_size,
                        },
                        &mut first,
                    );
                } else if !m.contains(block, s) {
                    note(Reason::VmaEdge { size: s }, &mut first);
                } else if !congruent(phys, hva, s) {
                    note(Reason::PfnNotAligned { align: s }, &mut first);
                } else {
                    chosen = s;
                    break;
                }
            }
            chosen
        }
    };
    // 3. Step down while the block does not fit the slot.
    if Some(size) == pud {
        if let Err(r) = arm64_fits(slot, hva, size) {
            note(r, &mut first);
            size = pmd;
        }
    }
    if size == pmd {
        if let Err(r) = arm64_fits(slot, hva, size) {
            note(r, &mut first);
            size = page;
        }
    }
    // 4. THP may lift a page mapping of normal memory to a PMD block.
    if size == page && m.kind == HostKind::Thp {
        if pud.is_some() {
            note(Reason::Backing { host_page: pmd }, &mut first);
        }
        let block = align_down(hva, pmd);
        if !m.contains(block, pmd) {
            note(Reason::VmaEdge { size: pmd }, &mut first);
        } else if let Err(r) = arm64_fits(slot, hva, pmd) {
            note(r, &mut first);
        } else {
            size = pmd;
        }
    }
    Decision {
        leaf: size,
        best,
        reason: if size < best { first } else { None },
    }
}

/// The predicted stage-2 leaf for `gpa` inside `slot`.
pub fn leaf_at(input: &PlanInput, slot: &SlotSpec, gpa: u64) -> Decision {
    match input.target {
        Target::X86Tdp { max_leaf } => x86(input, slot, gpa, max_leaf, None),
        Target::X86Shadow {
            max_leaf,
            guest_page,
        } => x86(input, slot, gpa, max_leaf, Some(guest_page)),
        Target::Arm64 { granule } => arm64(input, slot, gpa, granule),
    }
}
