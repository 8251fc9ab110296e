//! A passed-through function's BARs: sized from the device, placed at naturally
//! aligned guest addresses from the VM's allocators (64-bit BARs in the high window),
//! each mmap-able area in a memslot of its own over an aligned mapping, and the whole
//! BAR trapped on the bus underneath (what no memslot covers, such as an MSI-X table,
//! reaches the device through the VFIO fd).

use std::sync::Arc;

use granule_devices::pci::{Bar, BarKind};
use granule_devices::BusDevice;
use serde::Serialize;
use vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP;
use vfio_ioctls::{VfioDevice, VfioRegionInfoCap};

use super::function::config_u32;
use super::msix::Msix;
use super::region_map::BarMapping;
use super::VfioError;
use crate::devices::DeviceManager;

const PAGE: u64 = 4096;

/// One memslot of a BAR: what the stage-2 planner needs and the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct BarArea {
    pub slot: u32,
    pub gpa: u64,
    pub size: u64,
    pub hva: u64,
    /// The host-physical address behind it (from sysfs), for the PFN alignment rule.
    pub host_pa: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacedBar {
    pub index: usize,
    /// "mem32", "mem64" or "io".
    pub kind: &'static str,
    pub prefetchable: bool,
    pub size: u64,
    pub gpa: u64,
    /// Areas the guest reaches without exits; empty: every access is trapped.
    pub areas: Vec<BarArea>,
    /// The stage-2 leaves predicted over the areas (filled in once the target is known).
    pub predicted: Vec<super::leaves::AreaPrediction>,
}

/// Trapped accesses to a BAR: the MSI-X table (when it is in this BAR) is emulated,
/// the rest forwarded to the device's region.
struct RegionIo {
    device: Arc<VfioDevice>,
    index: u32,
    /// The MSI-X emulation and the table's offset, when the table is in this BAR.
    msix: Option<(Arc<Msix>, u64)>,
}

impl RegionIo {
    fn table_offset(&self, offset: u64, len: usize) -> Option<(&Msix, u64)> {
        let (m, at) = self.msix.as_ref()?;
        let rel = offset.checked_sub(*at)?;
        (rel + len as u64 <= m.cap().table_len()).then_some((m.as_ref(), rel))
    }
}

impl BusDevice for RegionIo {
    fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match self.table_offset(offset, data.len()) {
            Some((m, rel)) => m.table_read(rel, data),
            None => self.device.region_read(self.index, data, offset),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        match self.table_offset(offset, data.len()) {
            Some((m, rel)) => m.table_write(rel, data),
            None => self.device.region_write(self.index, data, offset),
        }
    }
}

/// `areas` without the pages of `holes` (offset, length): the MSI-X table and PBA are
/// never mmapped, even where the kernel would allow it.
fn punch(areas: Vec<(u64, u64)>, holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = areas;
    for &(at, len) in holes.iter().filter(|h| h.1 > 0) {
        let (hs, he) = (at / PAGE * PAGE, (at + len).div_ceil(PAGE) * PAGE);
        out = out
            .into_iter()
            .flat_map(|(s, n)| {
                let e = s + n;
                if he <= s || hs >= e {
                    return vec![(s, n)];
                }
                [(s, hs.max(s)), (he.min(e), e)]
                    .into_iter()
                    .filter(|(a, b)| b > a)
                    .map(|(a, b)| (a, b - a))
                    .collect()
            })
            .collect();
    }
    out
}

/// The kind of BAR `index` from its register's low bits.
fn bar_kind(reg: u32) -> BarKind {
    if reg & 1 != 0 {
        BarKind::Io
    } else if reg & 0x6 == 0x4 {
        BarKind::Mem64 {
            prefetchable: reg & 0x8 != 0,
        }
    } else {
        BarKind::Mem32
    }
}

fn kind_name(k: BarKind) -> (&'static str, bool) {
    match k {
        BarKind::Io => ("io", false),
        BarKind::Mem32 => ("mem32", false),
        BarKind::Mem64 { prefetchable } => ("mem64", prefetchable),
    }
}

/// The areas of region `index` that may be mmapped: the sparse-mmap list when the
/// kernel gives one, else the whole region if it is mmap-able and whole pages.
fn mmap_areas(device: &VfioDevice, index: u32, size: u64) -> Vec<(u64, u64)> {
    if device.get_region_flags(index) & VFIO_REGION_INFO_FLAG_MMAP == 0
        || !size.is_multiple_of(PAGE)
    {
        return Vec::new();
    }
    for cap in device.get_region_caps(index) {
        if let VfioRegionInfoCap::SparseMmap(s) = cap {
            return s
                .areas
                .iter()
                .filter(|a| a.size > 0 && a.offset % PAGE == 0 && a.size % PAGE == 0)
                .map(|a| (a.offset, a.size))
                .collect();
        }
    }
    vec![(0, size)]
}

/// The BAR registers the guest sees, and the placement report.
pub struct Placement {
    pub bars: Vec<(usize, Bar)>,
    pub report: Vec<PlacedBar>,
}

/// Places and maps every BAR of `device`; `host_pa` gives each BAR's host-physical
/// address by index.
pub fn place_bars(
    bdf: &str,
    device: &Arc<VfioDevice>,
    dm: &DeviceManager,
    host_pa: &[(usize, u64)],
    misalign: u64,
    msix: Option<&Arc<Msix>>,
) -> Result<Placement, VfioError> {
    let mut out = Placement {
        bars: Vec::new(),
        report: Vec::new(),
    };
    let mut index = 0;
    while index < 6 {
        let kind = bar_kind(config_u32(device, 0x10 + 4 * index as u16));
        let this = index;
        index += if matches!(kind, BarKind::Mem64 { .. }) {
            2
        } else {
            1
        };
        let size = device.get_region_size(this as u32);
        if size == 0 {
            continue;
        }
        let pa = host_pa
            .iter()
            .find(|(i, _)| *i == this)
            .map_or(0, |(_, pa)| *pa);
        let placed =
            place_one(device, dm, (this, kind, size), (pa, misalign), msix).map_err(|why| {
                VfioError::Bar {
                    bdf: bdf.to_string(),
                    index: this,
                    why,
                }
            })?;
        out.bars.push((
            this,
            Bar {
                kind,
                size,
                addr: placed.gpa,
            },
        ));
        out.report.push(placed);
    }
    Ok(out)
}

/// Places BAR `index` (host-physical address `pa`): a guest address, the trapping bus
/// range, and a memslot per mmap-able area.
fn place_one(
    device: &Arc<VfioDevice>,
    dm: &DeviceManager,
    (index, kind, size): (usize, BarKind, u64),
    (pa, misalign): (u64, u64),
    msix: Option<&Arc<Msix>>,
) -> Result<PlacedBar, String> {
    if !size.is_power_of_two() {
        return Err(format!("size {size:#x} is not a power of two"));
    }
    let region = index as u32;
    // Sub-page memory BARs get a page of their own, so no memslot ever shares one.
    let room = if kind == BarKind::Io {
        size
    } else {
        size.max(PAGE)
    };
    let gpa = {
        let mut r = dm.resources();
        let alloc = match kind {
            BarKind::Io => &mut r.ports,
            BarKind::Mem32 => &mut r.mmio32,
            BarKind::Mem64 { .. } => &mut r.mmio64,
        };
        alloc
            .allocate_natural(room)
            .map_err(|e| format!("no room for it: {e}"))?
    };
    let io = Arc::new(RegionIo {
        device: device.clone(),
        index: region,
        msix: msix
            .filter(|m| m.cap().table_bar == index)
            .map(|m| (m.clone(), m.cap().table_offset)),
    });
    // The MSI-X structures in this BAR stay trapped.
    let holes: Vec<(u64, u64)> = msix
        .map(|m| *m.cap())
        .into_iter()
        .flat_map(|c| {
            [
                (c.table_bar, c.table_offset, c.table_len()),
                (c.pba_bar, c.pba_offset, c.pba_len()),
            ]
        })
        .filter(|(bar, _, _)| *bar == index)
        .map(|(_, at, len)| (at, len))
        .collect();
    let bus = if kind == BarKind::Io {
        dm.pio()
    } else {
        dm.mmio()
    };
    bus.insert(gpa, size, io).map_err(|e| e.to_string())?;
    let regions = if kind == BarKind::Io {
        Vec::new()
    } else {
        punch(mmap_areas(device, region, size), &holes)
    };
    let areas = if regions.is_empty() {
        Vec::new()
    } else {
        map_areas(device, dm, (region, size, gpa), &regions, (pa, misalign))?
    };
    let (kind, prefetchable) = kind_name(kind);
    Ok(PlacedBar {
        index,
        kind,
        prefetchable,
        size,
        gpa,
        areas,
        predicted: Vec::new(),
    })
}

/// Maps `regions` (offset, size) of BAR `region` (`size` bytes at `gpa`, host-physical
/// `pa`) from the device, each in a memslot of its own.
fn map_areas(
    device: &Arc<VfioDevice>,
    dm: &DeviceManager,
    (region, size, gpa): (u32, u64, u64),
    regions: &[(u64, u64)],
    (pa, misalign): (u64, u64),
) -> Result<Vec<BarArea>, String> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(device.as_ref());
    // Only BARs that could get a huge leaf are worth misaligning.
    let off = if size > PAGE { misalign % size } else { 0 };
    let map = BarMapping::new(fd, device.get_region_offset(region), size, regions, off)
        .map_err(|e| format!("mmap failed: {e}"))?;
    let map = Arc::new(map);
    let mut areas = Vec::new();
    for &(off, n) in regions {
        let hva = map.hva() + off;
        let slot = dm
            .map_memory(gpa + off, n, hva, map.clone())
            .map_err(|e| e.to_string())?;
        areas.push(BarArea {
            slot,
            gpa: gpa + off,
            size: n,
            hva,
            host_pa: pa.saturating_add(off),
        });
    }
    Ok(areas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msix_pages_are_cut_out_of_the_mapped_areas() {
        // QEMU's NVMe BAR 0: 16 KiB, table at 0x2000 (65 vectors), PBA at 0x3000.
        let a = punch(vec![(0, 0x4000)], &[(0x2000, 65 * 16), (0x3000, 16)]);
        assert_eq!(a, vec![(0, 0x2000)]);
        // A table in the middle of a big BAR splits it; a hole elsewhere changes nothing.
        let a = punch(vec![(0, 1 << 20)], &[(0x8010, 32)]);
        assert_eq!(a, vec![(0, 0x8000), (0x9000, (1 << 20) - 0x9000)]);
        assert_eq!(punch(vec![(0, 0x1000)], &[(0x5000, 16)]), vec![(0, 0x1000)]);
    }

    #[test]
    fn bar_registers_say_their_kind() {
        assert_eq!(bar_kind(0xc001), BarKind::Io);
        assert_eq!(bar_kind(0xfea1_1000), BarKind::Mem32);
        assert_eq!(bar_kind(0x0000_000c), BarKind::Mem64 { prefetchable: true });
        assert_eq!(
            bar_kind(0x0000_0004),
            BarKind::Mem64 {
                prefetchable: false
            }
        );
    }
}
