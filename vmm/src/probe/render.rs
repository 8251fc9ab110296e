//! The human-readable form of [`HostFacts`].

use std::fmt::Write;

use super::HostFacts;
use crate::units::format_size;

pub fn render_table(f: &HostFacts) -> String {
    let mut o = String::new();
    let mut row = |k: &str, v: String| {
        let _ = writeln!(o, "{k:<22} {v}");
    };
    row("arch", f.arch.into());
    row("kernel", f.kernel.clone());
    row("cpu", format!("{} ({} CPUs)", f.cpu_model, f.cpus));
    row("memory", format_size(f.memory_bytes));
    match (&f.kvm, &f.kvm_error) {
        (Some(k), _) => {
            row("kvm api", k.api_version.to_string());
            row("kvm backend", format!("{:?}", k.backend.kind));
            row(
                "  hardware stage-2",
                yes_no(k.backend.hardware_stage2).into(),
            );
            row("  detected by", k.backend.detected_by.clone());
            row(
                "vcpus",
                format!(
                    "recommended {} (NR_VCPUS), max {} (MAX_VCPUS)",
                    k.nr_vcpus, k.max_vcpus
                ),
            );
            row("memslots", k.nr_memslots.to_string());
            for (cap, on) in &k.capabilities {
                row(&format!("  cap {cap}"), yes_no(*on).into());
            }
        }
        (None, err) => row(
            "kvm",
            format!("unavailable: {}", err.as_deref().unwrap_or("unknown")),
        ),
    }
    for p in &f.hugepages {
        row(
            &format!("hugepages {}", format_size(p.page_size)),
            format!(
                "total {} free {} reserved {} surplus {}",
                p.total, p.free, p.reserved, p.surplus
            ),
        );
    }
    row(
        "thp",
        format!("enabled={} defrag={}", f.thp.enabled, f.thp.defrag),
    );
    row(
        "vfio",
        format!(
            "/dev/vfio/vfio {}, /dev/iommu {}, {} IOMMU groups, {} device(s) on vfio-pci",
            yes_no(f.vfio.dev_vfio),
            yes_no(f.vfio.dev_iommu),
            f.vfio.iommu_groups,
            f.vfio.devices.len()
        ),
    );
    for d in &f.vfio.devices {
        row(&format!("  {}", d.bdf), vfio_device_line(d));
    }
    row(
        "device memory",
        format!(
            "PFN maps (vfio-pci BARs) get leaves up to {}",
            format_size(f.pfnmap_max_leaf)
        ),
    );
    row(
        "nx huge pages",
        if f.nx_huge_pages {
            "on: executed guest pages get 4K stage-2 leaves until KVM recovers them"
        } else {
            "off"
        }
        .to_string(),
    );
    o
}

/// One passthrough candidate: ids, group, cdev, and each BAR's size and best leaf.
fn vfio_device_line(d: &crate::vfio::sysfs::VfioDevice) -> String {
    let group = d
        .iommu_group
        .map_or_else(|| "no IOMMU group".to_string(), |g| format!("group {g}"));
    let mut line = format!("{}:{} {group}", d.vendor, d.device);
    for (peer, driver) in &d.group_peers {
        let _ = write!(line, " (shares it with {peer}, driver {driver})");
    }
    if let Some(c) = &d.cdev {
        let _ = write!(line, ", {c}");
    }
    for b in &d.bars {
        let leaf = if b.max_leaf == 0 {
            String::new()
        } else {
            format!(", leaves up to {}", format_size(b.max_leaf))
        };
        let _ = write!(
            line,
            "; BAR{} {} {}{leaf}",
            b.index,
            b.kind,
            format_size(b.size)
        );
    }
    line
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
