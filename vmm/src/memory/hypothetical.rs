//! The layout granule would make, without mapping anything: for `granule plan`.
//!
//! Zones get the same GPA placement and the same HVA alignment rule as a real run
//! ([`super::mmap::AlignedMmap`] aligns to [`super::layout::zone_align`]). Device BARs
//! are PFN maps placed as granule maps them: HVA aligned to min(BAR size, 1 GiB).

use serde::Serialize;

use super::layout::{self, LayoutError};
use super::zone::ZoneConfig;
use crate::stage2::{HostKind, HostMapping, PlanInput, SlotSpec, Target, G1, K4};
use crate::units::parse_addr;

/// Where hypothetical host mappings start (any 1 GiB-aligned user address will do).
const HVA_BASE: u64 = 0x7f00_0000_0000;

/// A PCI BAR passed through with VFIO, as a PFN map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BarConfig {
    pub gpa: u64,
    pub size: u64,
    /// Host physical address of the BAR.
    pub pa: u64,
    /// Debug: offset of the BAR mmap from its natural alignment.
    pub hva_offset: u64,
    /// The largest leaf the host kernel maps device memory with (`pfnmap=4K|2M|1G`);
    /// None: what the planning host's kernel can do.
    pub pfnmap: Option<u64>,
}

const BAR_FORM: &str = "expected gpa=ADDR,size=SIZE[,pa=ADDR][,hva_offset=SIZE][,pfnmap=4K|2M|1G] with SIZE a power of two of at least 4K";

pub fn parse_bar(spec: &str) -> Result<BarConfig, String> {
    let bad = |why: String| format!("invalid BAR '{spec}': {why}; {BAR_FORM}");
    let (mut gpa, mut size, mut pa, mut hva_offset) = (None, None, None, None);
    let mut pfnmap = None;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("'{part}' is not key=value")))?;
        if k == "pfnmap" {
            if pfnmap.is_some() {
                return Err(bad("'pfnmap' is given twice".into()));
            }
            pfnmap = Some(match crate::units::parse_size(v) {
                Ok(n) if [K4, 2 << 20, 1 << 30].contains(&n) => n,
                _ => return Err(bad(format!("pfnmap '{v}' is not 4K, 2M or 1G"))),
            });
            continue;
        }
        let slot = match k {
            "gpa" => &mut gpa,
            "size" => &mut size,
            "pa" => &mut pa,
            "hva_offset" => &mut hva_offset,
            _ => return Err(bad(format!("unknown key '{k}'"))),
        };
        if slot.is_some() {
            return Err(bad(format!("'{k}' is given twice")));
        }
        *slot = Some(parse_addr(v).ok_or_else(|| bad(format!("{k} '{v}' is not a number")))?);
    }
    let gpa = gpa.ok_or_else(|| bad("no gpa".into()))?;
    let size = size.ok_or_else(|| bad("no size".into()))?;
    let hva_offset = hva_offset.unwrap_or(0);
    if size < K4 || !size.is_power_of_two() {
        return Err(bad(format!(
            "size {size:#x} is not a power of two of at least 4K"
        )));
    }
    if gpa % K4 != 0 || hva_offset % K4 != 0 {
        return Err(bad("gpa and hva_offset must be multiples of 4K".into()));
    }
    for (k, v) in [
        ("gpa", Some(gpa)),
        ("pa", pa),
        ("hva_offset", Some(hva_offset)),
    ] {
        if v.is_some_and(|v| v.checked_add(size).is_none()) {
            return Err(bad(format!(
                "{k} + size passes the end of the 64-bit address space"
            )));
        }
    }
    // Default: a naturally aligned host physical address, as PCI assigns BARs.
    let pa = pa.unwrap_or(0x100_0000_0000);
    Ok(BarConfig {
        gpa,
        size,
        pa,
        hva_offset,
        pfnmap,
    })
}

/// The planner input for `zones` (placed from `base` around `holes`) and `bars`, whose
/// host maps device memory with leaves up to `pfnmap` unless a BAR says otherwise.
pub fn plan_input(
    zones: &[ZoneConfig],
    bars: &[BarConfig],
    target: Target,
    base: u64,
    holes: &[(u64, u64)],
    pfnmap: u64,
) -> Result<PlanInput, LayoutError> {
    let placements = layout::place(zones, base, holes)?;
    let mut next_hva = HVA_BASE;
    let mut mappings = Vec::new();
    let mut zone_hva = Vec::new();
    // The next free host address after `size` bytes at `hva` (a 1 GiB gap between
    // mappings), or the error naming `what` when the sizes run past 64 bits.
    let after = |hva: u64, size: u64, what: String| {
        hva.checked_add(size)
            .and_then(|end| end.checked_next_multiple_of(G1))
            .and_then(|end| end.checked_add(G1))
            .ok_or(LayoutError::HostSpace { what, at: hva })
    };
    let place_at = |next: u64, align: u64, offset: u64, what: String| {
        next.checked_next_multiple_of(align)
            .and_then(|a| a.checked_add(offset))
            .ok_or(LayoutError::HostSpace { what, at: next })
    };
    for (i, z) in zones.iter().enumerate() {
        let hva = place_at(
            next_hva,
            layout::zone_align(z),
            z.misalign,
            format!("zone {i}"),
        )?;
        zone_hva.push(hva);
        mappings.push(HostMapping {
            hva,
            size: z.size,
            kind: z.backing.host_kind(),
            page_size: z.backing.page_size(),
        });
        next_hva = after(hva, z.size, format!("zone {i}"))?;
    }
    let mut slots: Vec<SlotSpec> = placements
        .iter()
        .enumerate()
        .map(|(i, p)| SlotSpec {
            slot: i as u32,
            gpa: p.gpa,
            size: p.size,
            hva: zone_hva[p.zone] + p.offset,
            dirty_log: false,
        })
        .collect();
    for (i, b) in bars.iter().enumerate() {
        let hva = place_at(next_hva, b.size.min(G1), b.hva_offset, format!("BAR {i}"))?;
        mappings.push(HostMapping {
            hva,
            size: b.size,
            kind: HostKind::PfnMap { pa: b.pa },
            page_size: b.pfnmap.unwrap_or(pfnmap),
        });
        slots.push(SlotSpec {
            slot: slots.len() as u32,
            gpa: b.gpa,
            size: b.size,
            hva,
            dirty_log: false,
        });
        next_hva = after(hva, b.size, format!("BAR {i}"))?;
    }
    Ok(PlanInput {
        target,
        slots,
        mappings,
        write_tracked: vec![],
        nx_split: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Backing;
    use crate::stage2::{plan, Granule};

    #[test]
    fn bars_parse_and_reject_bad_geometry() {
        let b = parse_bar("gpa=0x8000000000,size=1G").unwrap();
        assert_eq!(
            (b.gpa, b.size, b.pa, b.hva_offset),
            (0x80_0000_0000, 1 << 30, 0x100_0000_0000, 0)
        );
        for (spec, needle) in [
            ("gpa=0x8000000000,size=3M", "not a power of two"),
            ("size=1G", "no gpa"),
            ("gpa=0x1000,size=1G,colour=red", "unknown key 'colour'"),
            ("gpa=0x1800,size=1G", "multiples of 4K"),
            ("gpa=zz,size=1G", "gpa 'zz'"),
        ] {
            let e = parse_bar(spec).unwrap_err();
            assert!(e.contains(needle) && e.contains(BAR_FORM), "{spec}: {e}");
        }
    }

    #[test]
    fn hypothetical_zones_are_congruent_and_bars_aligned() {
        let zones = [
            ZoneConfig::new(4 << 30, Backing::Hugetlb1g),
            ZoneConfig::new(64 << 20, Backing::Thp),
        ];
        let bars = [parse_bar("gpa=0x8000000000,size=1G").unwrap()];
        let t = Target::Arm64 {
            granule: Granule::G4k,
        };
        let input = plan_input(&zones, &bars, t, 0x4000_0000, &[], G1).unwrap();
        for s in &input.slots {
            assert_eq!((s.gpa ^ s.hva) % (2 << 20), 0, "{s:?}");
        }
        let p = plan(&input).unwrap();
        let bar = p.iter().find(|r| r.gpa == 0x80_0000_0000).unwrap();
        assert_eq!(bar.leaf, G1);
        // A host whose kernel maps device memory with 2M at most (arm64 on 6.12), by
        // default or by the BAR's own pfnmap= key.
        let input = plan_input(&zones, &bars, t, 0x4000_0000, &[], 2 << 20).unwrap();
        let bar = plan(&input)
            .unwrap()
            .into_iter()
            .find(|r| r.gpa == 0x80_0000_0000);
        assert_eq!(bar.map(|r| r.leaf), Some(2 << 20));
        let b4k = [parse_bar("gpa=0x8000000000,size=1G,pfnmap=4K").unwrap()];
        let input = plan_input(&zones, &b4k, t, 0x4000_0000, &[], G1).unwrap();
        let bar = plan(&input)
            .unwrap()
            .into_iter()
            .find(|r| r.gpa == 0x80_0000_0000);
        assert_eq!(bar.map(|r| r.leaf), Some(K4));
        assert!(parse_bar("gpa=0x8000000000,size=1G,pfnmap=8K").is_err());
    }
}
