//! Host facts read from /proc and /sys.

use serde::Serialize;
use std::fs;

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

pub fn kernel_release() -> String {
    read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}

/// The largest leaf a kernel of `release` installs for a PFN map (a vfio-pci BAR mmap)
/// on `arch`: huge faults for vfio-pci came in Linux 6.12, with PUD and PMD leaves on
/// x86_64 and PMD only on arm64; older kernels map device memory with base pages.
pub fn huge_pfnmap_leaf(release: &str, arch: &str) -> u64 {
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    match (version >= (6, 12), arch) {
        (true, "x86_64") => 1 << 30,
        (true, "aarch64") => 2 << 20,
        _ => 4096,
    }
}

/// Whether KVM's NX-huge-page mitigation (iTLB multihit) is on: "Y" or "force" in
/// /sys/module/kvm/parameters/nx_huge_pages.
pub fn nx_huge_pages() -> bool {
    read("/sys/module/kvm/parameters/nx_huge_pages")
        .is_some_and(|v| matches!(v.as_str(), "Y" | "y" | "force"))
}

pub fn cpu_model() -> String {
    let info = read("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "CPU part" | "Processor")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Parses a `/proc/meminfo` line value in kB into bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

pub fn mem_total() -> u64 {
    read("/proc/meminfo")
        .and_then(|m| meminfo_bytes(&m, "MemTotal"))
        .unwrap_or(0)
}

/// One hugetlb pool size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HugepagePool {
    pub page_size: u64,
    pub total: u64,
    pub free: u64,
    pub reserved: u64,
    pub surplus: u64,
}

pub fn hugepage_pools() -> Vec<HugepagePool> {
    let Ok(dir) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut pools: Vec<HugepagePool> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let num = |f: &str| {
                read(&format!("/sys/kernel/mm/hugepages/{name}/{f}"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            Some(HugepagePool {
                page_size: kb * 1024,
                total: num("nr_hugepages"),
                free: num("free_hugepages"),
                reserved: num("resv_hugepages"),
                surplus: num("surplus_hugepages"),
            })
        })
        .collect();
    pools.sort_by_key(|p| p.page_size);
    pools
}

/// Transparent huge page settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thp {
    pub enabled: String,
    pub defrag: String,
}

/// The bracketed choice of a sysfs multiple-choice file (`always [madvise] never`).
pub fn selected(choice: &str) -> String {
    choice
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .unwrap_or("unknown")
        .to_string()
}

pub fn thp() -> Thp {
    let get = |f: &str| {
        read(&format!("/sys/kernel/mm/transparent_hugepage/{f}"))
            .map(|s| selected(&s))
            .unwrap_or_else(|| "unavailable".into())
    };
    Thp {
        enabled: get("enabled"),
        defrag: get("defrag"),
    }
}

/// Whether devices could be passed through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vfio {
    pub dev_vfio: bool,
    /// /dev/iommu exists: iommufd can be used instead of the legacy container.
    pub dev_iommu: bool,
    pub iommu_groups: usize,
    /// Devices bound to vfio-pci, with their groups and BARs.
    pub devices: Vec<crate::vfio::sysfs::VfioDevice>,
}

/// VFIO on this host; `pfnmap_limit` is the largest leaf PFN maps get here.
pub fn vfio(pfnmap_limit: u64) -> Vfio {
    Vfio {
        dev_vfio: std::path::Path::new("/dev/vfio/vfio").exists(),
        dev_iommu: std::path::Path::new("/dev/iommu").exists(),
        iommu_groups: fs::read_dir("/sys/kernel/iommu_groups").map_or(0, |d| d.count()),
        devices: crate::vfio::sysfs::bound_devices(std::path::Path::new("/sys"), pfnmap_limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pfn_maps_follow_the_kernel_version_and_arch() {
        assert_eq!(huge_pfnmap_leaf("6.12.117+deb12-amd64", "x86_64"), 1 << 30);
        assert_eq!(huge_pfnmap_leaf("6.12.117+deb12-arm64", "aarch64"), 2 << 20);
        assert_eq!(huge_pfnmap_leaf("7.3.0", "aarch64"), 2 << 20);
        assert_eq!(huge_pfnmap_leaf("6.1.0-28-amd64", "x86_64"), 4096);
        assert_eq!(huge_pfnmap_leaf("5.15.0", "x86_64"), 4096);
        assert_eq!(huge_pfnmap_leaf("unknown", "x86_64"), 4096);
    }

    #[test]
    fn sysfs_choices_and_meminfo_parse() {
        assert_eq!(selected("always [madvise] never"), "madvise");
        assert_eq!(selected("garbage"), "unknown");
        let m = "MemTotal:       24576000 kB\nMemFree:  100 kB\n";
        assert_eq!(meminfo_bytes(m, "MemTotal"), Some(24_576_000 * 1024));
        assert_eq!(meminfo_bytes(m, "Mem"), None);
    }
}
