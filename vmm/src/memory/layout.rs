//! Where each zone goes in guest-physical space.
//!
//! A zone starts at a GPA aligned to the largest page its backing can give (so GPA and
//! HVA, aligned the same way, are congruent) and is split around holes such as the x86
//! MMIO hole. The hole boundaries are 1 GiB aligned, so a split keeps congruence.

use thiserror::Error;

use super::zone::ZoneConfig;

/// Every zone's HVA and GPA are aligned to at least this (2 MiB): cheap, and it keeps
/// THP and 2M stage-2 leaves possible for any backing a zone is later switched to.
pub const ZONE_ALIGN_MIN: u64 = 2 << 20;

/// One piece of a zone at one guest-physical range: one memslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub zone: usize,
    pub gpa: u64,
    pub size: u64,
    /// Offset of this piece inside the zone's host mapping.
    pub offset: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("memory zone {zone} at {gpa:#x}..{end:#x} overlaps the MMIO hole {hole_start:#x}..{hole_end:#x}; place it outside or omit gpa=")]
    InHole {
        zone: usize,
        gpa: u64,
        end: u64,
        hole_start: u64,
        hole_end: u64,
    },
    #[error("memory zones {a} and {b} overlap in guest-physical space at {at:#x}")]
    Overlap { a: usize, b: usize, at: u64 },
    #[error("memory zone {zone} does not fit below the top of the guest-physical address space")]
    TooHigh { zone: usize },
    #[error("the zones and BARs together ({what} at {at:#x}) do not fit in a 64-bit host address space; plan less memory")]
    HostSpace { what: String, at: u64 },
}

/// The alignment of a zone's GPA and HVA.
pub fn zone_align(z: &ZoneConfig) -> u64 {
    z.backing.largest_page().max(ZONE_ALIGN_MIN)
}

/// Places `zones` in order from `base`; `holes` are (start, end) ranges RAM must avoid.
pub fn place(
    zones: &[ZoneConfig],
    base: u64,
    holes: &[(u64, u64)],
) -> Result<Vec<Placement>, LayoutError> {
    let mut out = Vec::new();
    let mut cursor = base;
    for (i, z) in zones.iter().enumerate() {
        let align = zone_align(z);
        let explicit = z.gpa.is_some();
        let mut pos = match z.gpa {
            Some(g) => g,
            None => cursor
                .checked_next_multiple_of(align)
                .ok_or(LayoutError::TooHigh { zone: i })?,
        };
        let end = pos
            .checked_add(z.size)
            .ok_or(LayoutError::TooHigh { zone: i })?;
        if explicit {
            if let Some(&(hs, he)) = holes.iter().find(|&&(hs, he)| pos < he && end > hs) {
                return Err(LayoutError::InHole {
                    zone: i,
                    gpa: pos,
                    end,
                    hole_start: hs,
                    hole_end: he,
                });
            }
        }
        let mut offset = 0;
        while offset < z.size {
            if let Some(&(_, he)) = holes.iter().find(|&&(hs, he)| pos >= hs && pos < he) {
                pos = he;
            }
            let next_hole = holes.iter().map(|&(hs, _)| hs).filter(|&hs| hs > pos).min();
            let room = next_hole.map_or(u64::MAX, |hs| hs - pos);
            let size = (z.size - offset).min(room);
            pos.checked_add(size)
                .ok_or(LayoutError::TooHigh { zone: i })?;
            out.push(Placement {
                zone: i,
                gpa: pos,
                size,
                offset,
            });
            offset += size;
            pos += size;
        }
        cursor = cursor.max(pos);
    }
    let mut sorted = out.clone();
    sorted.sort_by_key(|p| p.gpa);
    for w in sorted.windows(2) {
        if w[0].gpa + w[0].size > w[1].gpa {
            return Err(LayoutError::Overlap {
                a: w[0].zone.min(w[1].zone),
                b: w[0].zone.max(w[1].zone),
                at: w[1].gpa,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::backing::Backing;

    const G: u64 = 1 << 30;
    const HOLE: (u64, u64) = (3 * G, 4 * G);

    fn zone(size: u64, backing: Backing, gpa: Option<u64>) -> ZoneConfig {
        ZoneConfig {
            gpa,
            ..ZoneConfig::new(size, backing)
        }
    }

    #[test]
    fn a_large_zone_is_split_around_the_hole_keeping_offsets() {
        let p = place(&[zone(8 * G, Backing::Hugetlb1g, None)], 0, &[HOLE]).unwrap();
        assert_eq!(
            p,
            vec![
                Placement {
                    zone: 0,
                    gpa: 0,
                    size: 3 * G,
                    offset: 0
                },
                Placement {
                    zone: 0,
                    gpa: 4 * G,
                    size: 5 * G,
                    offset: 3 * G
                },
            ]
        );
    }

    #[test]
    fn zones_follow_each_other_aligned_to_their_pages() {
        let zs = [
            zone(G + (2 << 20), Backing::Thp, None),
            zone(G, Backing::Hugetlb1g, None),
        ];
        let p = place(&zs, 0, &[HOLE]).unwrap();
        assert_eq!(p[1].gpa, 2 * G, "the 1G zone starts on a 1 GiB boundary");
        // A zone that would start inside the hole moves above it.
        let zs = [
            zone(3 * G, Backing::Anon4k, None),
            zone(G, Backing::Anon4k, None),
        ];
        assert_eq!(place(&zs, 0, &[HOLE]).unwrap()[1].gpa, 4 * G);
    }

    #[test]
    fn explicit_placements_are_checked() {
        let zs = [zone(G, Backing::Anon4k, Some(3 * G))];
        assert!(matches!(
            place(&zs, 0, &[HOLE]),
            Err(LayoutError::InHole { .. })
        ));
        let zs = [
            zone(2 * G, Backing::Anon4k, None),
            zone(G, Backing::Anon4k, Some(G)),
        ];
        assert_eq!(
            place(&zs, 0, &[HOLE]),
            Err(LayoutError::Overlap { a: 0, b: 1, at: G })
        );
        let zs = [zone(G, Backing::Anon4k, Some(u64::MAX - 4096))];
        assert_eq!(
            place(&zs, 0, &[HOLE]),
            Err(LayoutError::TooHigh { zone: 0 })
        );
    }
}
