//! What the stage-2 planner reasons about: memslots, the host mappings behind them, the
//! target MMU, and the predicted leaf size per guest-physical range with its reason.

use serde::Serialize;

pub const K4: u64 = 4 << 10;
pub const K16: u64 = 16 << 10;
pub const K64: u64 = 64 << 10;
pub const M2: u64 = 2 << 20;
pub const M32: u64 = 32 << 20;
pub const M512: u64 = 512 << 20;
pub const G1: u64 = 1 << 30;
pub const G64: u64 = 64 << 30;

/// One KVM memslot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotSpec {
    pub slot: u32,
    pub gpa: u64,
    pub size: u64,
    /// Host virtual address of the slot's first byte.
    pub hva: u64,
    pub dirty_log: bool,
}

impl SlotSpec {
    pub fn gpa_end(&self) -> u64 {
        self.gpa + self.size
    }
    pub fn hva_of(&self, gpa: u64) -> u64 {
        self.hva + (gpa - self.gpa)
    }
}

/// What kind of host memory backs an HVA range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostKind {
    /// Private or shared anonymous memory, or shmem, mapped with base pages.
    Base,
    /// Anonymous memory with MADV_HUGEPAGE: PMD-sized THP where the aligned block fits
    /// the VMA.
    Thp,
    /// hugetlbfs / hugetlb memfd pages of `page_size`.
    Hugetlb,
    /// A VM_PFNMAP mapping of device memory (a VFIO BAR) at host physical address `pa`.
    PfnMap { pa: u64 },
}

/// One host VMA (or the part of it granule knows about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HostMapping {
    pub hva: u64,
    pub size: u64,
    pub kind: HostKind,
    /// The VMA's page size: the huge page size for hugetlb, the base page otherwise; for
    /// a PFN map, the largest leaf the host kernel's fault path can install there (a
    /// probed capability: huge PFN maps of vfio-pci BARs need Linux 6.12+).
    pub page_size: u64,
}

impl HostMapping {
    pub fn contains(&self, start: u64, len: u64) -> bool {
        start >= self.hva && start.saturating_add(len) <= self.hva + self.size
    }
}

/// Base page granules of arm64 hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Granule {
    G4k,
    G16k,
    G64k,
}

impl Granule {
    pub fn page(self) -> u64 {
        match self {
            Self::G4k => K4,
            Self::G16k => K16,
            Self::G64k => K64,
        }
    }
    /// Block size one level up (PMD).
    pub fn pmd(self) -> u64 {
        match self {
            Self::G4k => M2,
            Self::G16k => M32,
            Self::G64k => M512,
        }
    }
    /// Block size two levels up (PUD); KVM maps none with 64K pages.
    pub fn pud(self) -> Option<u64> {
        match self {
            Self::G4k => Some(G1),
            Self::G16k => Some(G64),
            Self::G64k => None,
        }
    }
}

/// The MMU whose leaves are predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "mmu", rename_all = "snake_case")]
pub enum Target {
    /// x86_64 with EPT/NPT; `max_leaf` is 1G where the CPU has 1 GiB pages, else 2M.
    X86Tdp { max_leaf: u64 },
    /// x86_64 shadow paging (PVM, or ept/npt off): the guest's own page size caps the
    /// leaf, and frames the guest uses as page tables are write-tracked.
    X86Shadow { max_leaf: u64, guest_page: u64 },
    /// arm64 stage 2 with the host's base granule.
    Arm64 { granule: Granule },
}

impl Target {
    pub fn base_page(&self) -> u64 {
        match self {
            Self::X86Tdp { .. } | Self::X86Shadow { .. } => K4,
            Self::Arm64 { granule } => granule.page(),
        }
    }
}

/// Everything the planner needs.
#[derive(Debug, Clone, Serialize)]
pub struct PlanInput {
    pub target: Target,
    pub slots: Vec<SlotSpec>,
    pub mappings: Vec<HostMapping>,
    /// Guest-physical ranges KVM write-tracks (shadow paging: the guest's page tables).
    pub write_tracked: Vec<(u64, u64)>,
    /// x86: guest-physical ranges the guest executes from while the host's NX-huge-page
    /// mitigation (iTLB multihit, `kvm.nx_huge_pages`) is on; KVM maps them with 4K
    /// leaves until its recovery thread rebuilds them. Empty when the mitigation is off.
    #[serde(default)]
    pub nx_split: Vec<(u64, u64)>,
}

/// Why a range gets a smaller leaf than its backing allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// The slot logs dirty pages: KVM maps it with base pages.
    DirtyLogging,
    /// GPA and HVA differ modulo `align`: no leaf of that size can map the slot.
    NotCongruent { align: u64 },
    /// The aligned block of `size` would cross the slot's start or end.
    SlotEdge { size: u64 },
    /// The guest maps this memory with `guest_page` pages (shadow paging cap).
    GuestPageCap { guest_page: u64 },
    /// The host maps this HVA with `host_page` pages.
    Backing { host_page: u64 },
    /// The aligned block of `size` would leave the host VMA.
    VmaEdge { size: u64 },
    /// Device memory whose physical address is not aligned with its HVA modulo `align`.
    PfnNotAligned { align: u64 },
    /// The host kernel maps device memory (PFN maps) with at most `host_max` pages.
    PfnMapLimit { host_max: u64 },
    /// The guest executes from the block and the host's NX-huge-page mitigation is on.
    NxHugePages,
    /// A frame in the block is a guest page table KVM write-protects.
    WriteTracked,
    /// No host mapping is known for this slot.
    Unmapped,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::units::format_size as sz;
        match self {
            Self::DirtyLogging => write!(f, "dirty logging"),
            Self::NotCongruent { align } => {
                write!(f, "GPA and HVA not congruent mod {}", sz(*align))
            }
            Self::SlotEdge { size } => write!(f, "{} block crosses the slot edge", sz(*size)),
            Self::GuestPageCap { guest_page } => {
                write!(f, "shadow paging: guest pages are {}", sz(*guest_page))
            }
            Self::Backing { host_page } => write!(f, "host maps {} pages", sz(*host_page)),
            Self::VmaEdge { size } => write!(f, "{} block leaves the host VMA", sz(*size)),
            Self::PfnNotAligned { align } => {
                write!(f, "device PA not aligned with HVA mod {}", sz(*align))
            }
            Self::PfnMapLimit { host_max } => {
                write!(
                    f,
                    "host kernel maps device memory with {} pages",
                    sz(*host_max)
                )
            }
            Self::NxHugePages => write!(f, "executed code, NX huge pages mitigation"),
            Self::WriteTracked => write!(f, "guest page tables in the block"),
            Self::Unmapped => write!(f, "no host mapping"),
        }
    }
}

impl Reason {
    /// What a user can change to get the larger leaf.
    pub fn fix(&self) -> String {
        match self {
            Self::DirtyLogging => "disable dirty logging on this slot (e.g. after migration)".into(),
            Self::NotCongruent { align } => format!(
                "place the region at a GPA congruent with its HVA modulo {} (a naturally aligned GPA; granule aligns HVAs unless told to misalign)",
                crate::units::format_size(*align)
            ),
            Self::SlotEdge { size } => format!(
                "start and end the region on {} boundaries",
                crate::units::format_size(*size)
            ),
            Self::GuestPageCap { guest_page } => format!(
                "shadow paging caps leaves at the guest's {} pages: use hardware EPT/NPT",
                crate::units::format_size(*guest_page)
            ),
            Self::Backing { host_page } if *host_page >= M2 => format!(
                "the host maps {} pages here: use backing=hugetlb-1g for 1 GiB leaves",
                crate::units::format_size(*host_page)
            ),
            Self::Backing { host_page } => format!(
                "the host maps {} pages here: use backing=thp, hugetlb-2m or hugetlb-1g",
                crate::units::format_size(*host_page)
            ),
            Self::VmaEdge { size } => format!(
                "map the host memory {}-aligned and at least that large",
                crate::units::format_size(*size)
            ),
            Self::PfnNotAligned { align } => format!(
                "map the device at an HVA congruent with its physical address modulo {}",
                crate::units::format_size(*align)
            ),
            Self::PfnMapLimit { .. } => "huge device mappings need Linux 6.12 or newer on the host (vfio-pci huge faults: PUD and PMD on x86_64, PMD on arm64)".into(),
            Self::NxHugePages => "the host's kvm.nx_huge_pages mitigation splits executable huge pages: boot the host with kvm.nx_huge_pages=off where the CPU is not affected, or disable it per VM (KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, needs CAP_SYS_BOOT); KVM's recovery thread rebuilds them over time".into(),
            Self::WriteTracked => "keep guest page tables out of large data regions".into(),
            Self::Unmapped => "no host memory is known behind this slot".into(),
        }
    }
}

/// A guest-physical range with one predicted leaf size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlanRange {
    pub slot: u32,
    pub gpa: u64,
    pub size: u64,
    /// Predicted stage-2 leaf size.
    pub leaf: u64,
    /// The largest leaf the backing alone would allow.
    pub best: u64,
    /// Set when `leaf < best`.
    pub reason: Option<Reason>,
}
