//! `--memory` zone specifications, in Cloud Hypervisor's key=value style:
//! `size=8G,backing=hugetlb-1g,prefault=on[,gpa=ADDR][,misalign=4K]`, or just `8G`.

use serde::Serialize;

use super::backing::Backing;
use crate::units::{parse_addr, parse_size};

/// One guest RAM zone as the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneConfig {
    pub size: u64,
    pub backing: Backing,
    /// Populate all of it before the guest starts.
    pub prefault: bool,
    /// Where the zone starts in guest-physical space; after the previous zone if unset.
    pub gpa: Option<u64>,
    /// Debug: offset the host mapping by this many bytes from its natural alignment,
    /// which breaks GPA/HVA congruence (shows how granule explains a bad layout).
    pub misalign: u64,
    /// `backing=` was given; without it [`super::default_backing`] chooses.
    #[serde(skip)]
    pub backing_given: bool,
    /// Why granule chose `backing`, when the user did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_default: Option<String>,
}

impl ZoneConfig {
    pub fn new(size: u64, backing: Backing) -> Self {
        Self {
            size,
            backing,
            prefault: false,
            gpa: None,
            misalign: 0,
            backing_given: true,
            backing_default: None,
        }
    }
}

const FORM: &str = "expected SIZE or size=SIZE[,backing=4k|thp|hugetlb-2m|hugetlb-1g|memfd][,prefault=on|off][,gpa=ADDR][,misalign=SIZE]";

/// Parses one `--memory` value. Checks that need the page size (alignment) are made
/// here too, so a bad zone is rejected before anything is mapped.
pub fn parse_zone(spec: &str) -> Result<ZoneConfig, String> {
    let bad = |why: String| format!("invalid memory zone '{spec}': {why}; {FORM}");
    let mut size = None;
    let mut zone = ZoneConfig::new(0, Backing::Anon4k);
    let mut seen: Vec<&str> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let key = part.split_once('=').map_or("size", |(k, _)| k);
        if seen.contains(&key) {
            return Err(bad(format!("'{key}' is given twice")));
        }
        seen.push(key);
        match part.split_once('=') {
            None => size = Some(parse_size(part).map_err(|e| bad(format!("size: {}", e.why)))?),
            Some(("size", v)) => {
                size = Some(parse_size(v).map_err(|e| bad(format!("size '{v}': {}", e.why)))?)
            }
            Some(("backing", v)) => {
                zone.backing = Backing::parse(v).ok_or_else(|| {
                    bad(format!("unknown backing '{v}' (one of {})", Backing::NAMES))
                })?
            }
            Some(("prefault", v)) => {
                zone.prefault = match v {
                    "on" | "true" | "1" => true,
                    "off" | "false" | "0" => false,
                    _ => return Err(bad(format!("prefault '{v}' is not on or off"))),
                }
            }
            Some(("gpa", v)) => {
                zone.gpa =
                    Some(parse_addr(v).ok_or_else(|| bad(format!("gpa '{v}' is not an address")))?)
            }
            Some(("misalign", v)) => {
                zone.misalign =
                    parse_size(v).map_err(|e| bad(format!("misalign '{v}': {}", e.why)))?
            }
            _ => return Err(bad(format!("unexpected '{part}'"))),
        }
    }
    zone.size = size.ok_or_else(|| bad("no size given".into()))?;
    let page = zone.backing.page_size();
    if zone.size == 0 {
        return Err(bad("size must not be zero".into()));
    }
    if !zone.size.is_multiple_of(page) {
        return Err(bad(format!(
            "size is not a multiple of the {} page size of backing {}",
            crate::units::format_size(page),
            zone.backing.name()
        )));
    }
    if let Some(gpa) = zone.gpa {
        if gpa % page != 0 {
            return Err(bad(format!(
                "gpa {gpa:#x} is not a multiple of the {} page size",
                crate::units::format_size(page)
            )));
        }
    }
    if zone.misalign != 0 {
        if zone.backing.hugetlb_size().is_some() {
            return Err(bad(
                "misalign cannot apply to hugetlb backings (their mappings are always aligned)"
                    .into(),
            ));
        }
        if !zone.misalign.is_multiple_of(4096) || zone.misalign >= super::layout::ZONE_ALIGN_MIN {
            return Err(bad("misalign must be a multiple of 4K below 2M".into()));
        }
    }
    zone.backing_given = seen.contains(&"backing");
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_parse_in_both_forms() {
        assert_eq!(
            parse_zone("1G"),
            Ok(ZoneConfig {
                backing_given: false,
                ..ZoneConfig::new(1 << 30, Backing::Anon4k)
            })
        );
        let z = parse_zone("size=8G,backing=hugetlb-1g,prefault=on,gpa=0x100000000").unwrap();
        assert_eq!(
            (z.size, z.backing, z.prefault, z.gpa),
            (8 << 30, Backing::Hugetlb1g, true, Some(1 << 32))
        );
        assert_eq!(
            parse_zone("size=64M,backing=thp,misalign=4K")
                .unwrap()
                .misalign,
            4096
        );
    }

    #[test]
    fn bad_zones_say_what_is_wrong() {
        let cases = [
            ("", "no size"),
            ("size=1G,backing=huge", "unknown backing 'huge'"),
            (
                "size=3M,backing=hugetlb-2m",
                "not a multiple of the 2 MiB page size",
            ),
            (
                "size=1536M,backing=hugetlb-1g",
                "not a multiple of the 1 GiB page size",
            ),
            ("size=1G,prefault=maybe", "prefault 'maybe'"),
            ("size=1G,gpa=0x1000,backing=hugetlb-2m", "gpa 0x1000"),
            ("size=1G,colour=blue", "unexpected 'colour=blue'"),
            (
                "size=1G,backing=hugetlb-2m,misalign=4K",
                "misalign cannot apply",
            ),
            ("size=1G,misalign=3M", "below 2M"),
            ("size=0", "must not be zero"),
            ("size=1.5G", "size '1.5G'"),
            ("size=1G,size=2G", "'size' is given twice"),
            ("1G,2G", "'size' is given twice"),
            ("1G,size=1G", "'size' is given twice"),
            ("size=1G,backing=thp,backing=4k", "'backing' is given twice"),
        ];
        for (spec, needle) in cases {
            let e = parse_zone(spec).unwrap_err();
            assert!(e.contains(needle) && e.contains(FORM), "{spec}: {e}");
        }
    }
}
