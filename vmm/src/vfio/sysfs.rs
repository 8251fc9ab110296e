//! What sysfs says about the PCI devices bound to vfio-pci: their IOMMU group (and who
//! else is in it), the VFIO character device, and each BAR with its size and the
//! largest stage-2 leaf KVM can use for it on this kernel.

use std::fs;
use std::path::Path;

use serde::Serialize;

/// `resource` file flags (include/linux/ioport.h).
const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;
const IORESOURCE_PREFETCH: u64 = 0x2000;
const IORESOURCE_MEM_64: u64 = 0x0010_0000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BarFacts {
    pub index: usize,
    /// "mem32", "mem64" or "io".
    pub kind: &'static str,
    pub prefetchable: bool,
    pub size: u64,
    /// The BAR's host-physical address.
    pub host_addr: u64,
    /// The largest stage-2 leaf for this BAR (4K, 2M or 1G): the host's PFN-map limit,
    /// the BAR's size and its host address alignment all allow it. I/O BARs: 0.
    pub max_leaf: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VfioDevice {
    pub bdf: String,
    pub vendor: String,
    pub device: String,
    pub iommu_group: Option<u32>,
    /// The other devices in the IOMMU group, with their drivers ("none" if unbound).
    pub group_peers: Vec<(String, String)>,
    /// The iommufd character device (`/dev/vfio/devices/vfioN`), where the kernel has one.
    pub cdev: Option<String>,
    pub bars: Vec<BarFacts>,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// The largest leaf in {1G, 2M, 4K} within `limit` that `size` and `addr` allow.
fn max_leaf(size: u64, addr: u64, limit: u64) -> u64 {
    [1u64 << 30, 2 << 20, 4096]
        .into_iter()
        .find(|&l| l <= limit && size >= l && addr.is_multiple_of(l))
        .unwrap_or(4096)
}

/// BARs 0-5 from a `resource` file: one "start end flags" line per resource.
pub fn parse_resources(text: &str, pfnmap_limit: u64) -> Vec<BarFacts> {
    text.lines()
        .take(6)
        .enumerate()
        .filter_map(|(index, line)| {
            let mut f = line
                .split_whitespace()
                .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
            let (start, end, flags) = (f.next()??, f.next()??, f.next()??);
            if end == 0 || end < start {
                return None;
            }
            let size = end - start + 1;
            let io = flags & IORESOURCE_IO != 0;
            if !io && flags & IORESOURCE_MEM == 0 {
                return None;
            }
            let kind = match (io, flags & IORESOURCE_MEM_64 != 0) {
                (true, _) => "io",
                (false, true) => "mem64",
                (false, false) => "mem32",
            };
            Some(BarFacts {
                index,
                kind,
                prefetchable: flags & IORESOURCE_PREFETCH != 0,
                size,
                host_addr: start,
                max_leaf: if io {
                    0
                } else {
                    max_leaf(size, start, pfnmap_limit)
                },
            })
        })
        .collect()
}

/// The devices bound to vfio-pci under sysfs root `sys` (normally "/sys").
pub fn bound_devices(sys: &Path, pfnmap_limit: u64) -> Vec<VfioDevice> {
    let Ok(entries) = fs::read_dir(sys.join("bus/pci/drivers/vfio-pci")) else {
        return Vec::new();
    };
    let mut bdfs: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(':') && n.contains('.'))
        .collect();
    bdfs.sort();
    bdfs.into_iter()
        .map(|bdf| device(sys, &bdf, pfnmap_limit))
        .collect()
}

fn device(sys: &Path, bdf: &str, pfnmap_limit: u64) -> VfioDevice {
    let dir = sys.join("bus/pci/devices").join(bdf);
    let iommu_group = link_name(&dir.join("iommu_group")).and_then(|g| g.parse().ok());
    let group_peers = iommu_group
        .and_then(|g| fs::read_dir(sys.join(format!("kernel/iommu_groups/{g}/devices"))).ok())
        .map(|d| {
            let mut peers: Vec<(String, String)> = d
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|p| p != bdf)
                .map(|p| {
                    let driver = link_name(&sys.join("bus/pci/devices").join(&p).join("driver"))
                        .unwrap_or_else(|| "none".into());
                    (p, driver)
                })
                .collect();
            peers.sort();
            peers
        })
        .unwrap_or_default();
    let cdev = fs::read_dir(dir.join("vfio-dev")).ok().and_then(|d| {
        d.filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("vfio"))
            .map(|n| format!("/dev/vfio/devices/{n}"))
    });
    VfioDevice {
        bdf: bdf.to_string(),
        vendor: read_trim(&dir.join("vendor")).unwrap_or_default(),
        device: read_trim(&dir.join("device")).unwrap_or_default(),
        iommu_group,
        group_peers,
        cdev,
        bars: read_trim(&dir.join("resource"))
            .map(|t| parse_resources(&t, pfnmap_limit))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    /// ivshmem as QEMU gives it: BAR 0 registers (256 B), BAR 1 MSI-X (4 KiB), BAR 2 a
    /// 1 GiB 64-bit prefetchable memory window.
    const IVSHMEM: &str = "0x00000000fea11000 0x00000000fea110ff 0x0000000000040200
0x00000000fea10000 0x00000000fea10fff 0x0000000000040200
0x0000000380000000 0x00000003bfffffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000";

    #[test]
    fn bars_come_with_sizes_kinds_and_the_leaf_they_allow() {
        let bars = parse_resources(IVSHMEM, G);
        assert_eq!(bars.len(), 3);
        assert_eq!(
            (bars[0].kind, bars[0].size, bars[0].max_leaf),
            ("mem32", 256, 4096)
        );
        assert_eq!((bars[1].size, bars[1].max_leaf), (4096, 4096));
        let b = &bars[2];
        assert_eq!((b.index, b.kind, b.prefetchable), (2, "mem64", true));
        assert_eq!(
            (b.size, b.host_addr, b.max_leaf),
            (G, 0x3_8000_0000, 0x4000_0000)
        );
        // A kernel without PUD PFN maps gives 2M at most; one without any, 4K.
        assert_eq!(parse_resources(IVSHMEM, 2 << 20)[2].max_leaf, 2 << 20);
        assert_eq!(parse_resources(IVSHMEM, 4096)[2].max_leaf, 4096);
    }

    #[test]
    fn misaligned_host_addresses_and_io_bars() {
        // 1 GiB BAR at a 2 MiB-aligned host address: 2M leaves only.
        let t = "0x0000000380200000 0x00000003c01fffff 0x0000000000140204\n0x000000000000c000 0x000000000000c03f 0x0000000000040101";
        let bars = parse_resources(t, G);
        assert_eq!(bars[0].max_leaf, 2 << 20);
        assert_eq!(
            (bars[1].kind, bars[1].size, bars[1].max_leaf),
            ("io", 64, 0)
        );
    }

    #[test]
    fn bound_devices_are_read_from_a_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("granule-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dev = root.join("bus/pci/devices/0000:00:03.0");
        let peer = root.join("bus/pci/devices/0000:00:03.1");
        for d in [
            &dev,
            &peer,
            &root.join("bus/pci/drivers/vfio-pci"),
            &root.join("bus/pci/drivers/snd_hda_intel"),
            &root.join("kernel/iommu_groups/7/devices"),
            &dev.join("vfio-dev/vfio0"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(dev.join("vendor"), "0x1af4\n").unwrap();
        fs::write(dev.join("device"), "0x1110\n").unwrap();
        fs::write(dev.join("resource"), IVSHMEM).unwrap();
        let link = |target: &Path, at: &Path| std::os::unix::fs::symlink(target, at).unwrap();
        link(
            &root.join("kernel/iommu_groups/7"),
            &dev.join("iommu_group"),
        );
        link(
            &root.join("bus/pci/drivers/snd_hda_intel"),
            &peer.join("driver"),
        );
        link(&dev, &root.join("bus/pci/drivers/vfio-pci/0000:00:03.0"));
        for p in ["0000:00:03.0", "0000:00:03.1"] {
            link(
                &root.join("bus/pci/devices").join(p),
                &root.join("kernel/iommu_groups/7/devices").join(p),
            );
        }
        let found = bound_devices(&root, G);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert_eq!(
            (d.bdf.as_str(), d.vendor.as_str()),
            ("0000:00:03.0", "0x1af4")
        );
        assert_eq!(d.iommu_group, Some(7));
        assert_eq!(
            d.group_peers,
            vec![("0000:00:03.1".to_string(), "snd_hda_intel".to_string())]
        );
        assert_eq!(d.cdev.as_deref(), Some("/dev/vfio/devices/vfio0"));
        assert_eq!(d.bars.len(), 3);
        assert!(bound_devices(Path::new("/nonexistent"), G).is_empty());
    }
}
