//! The kinds of host memory a guest RAM zone can be backed by.

use serde::Serialize;

use crate::stage2::{HostKind, G1, K4, M2};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backing {
    /// Private anonymous memory with MADV_NOHUGEPAGE: 4 KiB pages, always.
    #[serde(rename = "4k")]
    Anon4k,
    /// Private anonymous memory with MADV_HUGEPAGE: 2 MiB transparent huge pages where
    /// the kernel can find them.
    Thp,
    /// A hugetlb memfd of 2 MiB pages, reserved from the pool when mapped.
    Hugetlb2m,
    /// A hugetlb memfd of 1 GiB pages, reserved from the pool when mapped.
    Hugetlb1g,
    /// A shared memfd of 4 KiB pages (for sharing guest RAM with another process).
    Memfd,
}

impl Backing {
    pub const NAMES: &'static str = "4k, thp, hugetlb-2m, hugetlb-1g, memfd";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "4k" | "anon" => Self::Anon4k,
            "thp" => Self::Thp,
            "hugetlb-2m" => Self::Hugetlb2m,
            "hugetlb-1g" => Self::Hugetlb1g,
            "memfd" => Self::Memfd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Anon4k => "4k",
            Self::Thp => "thp",
            Self::Hugetlb2m => "hugetlb-2m",
            Self::Hugetlb1g => "hugetlb-1g",
            Self::Memfd => "memfd",
        }
    }

    /// The page size a zone's size and placement must be a multiple of.
    pub fn page_size(self) -> u64 {
        match self {
            Self::Anon4k | Self::Thp | Self::Memfd => K4,
            Self::Hugetlb2m => M2,
            Self::Hugetlb1g => G1,
        }
    }

    /// The hugetlb page size, for hugetlb backings.
    pub fn hugetlb_size(self) -> Option<u64> {
        match self {
            Self::Hugetlb2m => Some(M2),
            Self::Hugetlb1g => Some(G1),
            _ => None,
        }
    }

    /// The largest host page this backing can give: what layout aligns for.
    pub fn largest_page(self) -> u64 {
        match self {
            Self::Anon4k | Self::Memfd => K4,
            Self::Thp | Self::Hugetlb2m => M2,
            Self::Hugetlb1g => G1,
        }
    }

    /// The planner's view of this backing.
    pub fn host_kind(self) -> HostKind {
        match self {
            Self::Anon4k | Self::Memfd => HostKind::Base,
            Self::Thp => HostKind::Thp,
            Self::Hugetlb2m | Self::Hugetlb1g => HostKind::Hugetlb,
        }
    }
}
