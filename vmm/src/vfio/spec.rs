//! `--device vfio,path=/sys/bus/pci/devices/DDDD:BB:DD.F[,iommu=legacy|iommufd]` (or
//! the bare address `vfio,DDDD:BB:DD.F`): which host PCI function to pass through and,
//! optionally, which kernel interface owns its IOMMU mappings.

use std::path::PathBuf;

use serde::Serialize;

/// The kernel interface that owns a passed-through device's DMA mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IommuApi {
    /// `/dev/vfio/vfio` container and `/dev/vfio/N` group (type1 v2).
    Legacy,
    /// `/dev/iommu` with the device's own `/dev/vfio/devices/vfioN`.
    Iommufd,
}

impl IommuApi {
    pub fn name(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Iommufd => "iommufd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The PCI address, `DDDD:BB:DD.F` (domain included).
    pub bdf: String,
    /// Its sysfs directory.
    pub sysfs: PathBuf,
    /// None: iommufd where the kernel offers it for this device, else legacy.
    pub iommu: Option<IommuApi>,
    /// Debug: map each BAR this many bytes off its alignment (to measure what the
    /// alignment is worth). A multiple of 4K below 1G.
    pub misalign: u64,
}

const FORM: &str = "expected vfio,path=/sys/bus/pci/devices/DDDD:BB:DD.F[,iommu=legacy|iommufd][,misalign=SIZE] or vfio,DDDD:BB:DD.F[,...]";

/// True for `DDDD:BB:DD.F` with hex digits (device 0-0x1f, function 0-7).
fn is_bdf(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && u8::from_str_radix(&s[8..10], 16).is_ok_and(|d| d < 32)
        && (b'0'..=b'7').contains(&b[11])
}

/// The BDF a `path=` value names: its last component, which must be a PCI address.
fn bdf_of_path(path: &str) -> Option<String> {
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    let last = last.to_ascii_lowercase();
    is_bdf(&last).then_some(last)
}

/// The device a `path=` or `bdf=` value names: its address and sysfs directory.
fn target_of(key: &str, value: &str) -> Result<(String, PathBuf), String> {
    if key == "path" {
        let bdf = bdf_of_path(value)
            .ok_or_else(|| format!("path '{value}' does not end in a PCI address DDDD:BB:DD.F"))?;
        return Ok((bdf, PathBuf::from(value)));
    }
    let bdf = value.to_ascii_lowercase();
    if !is_bdf(&bdf) {
        return Err(format!("'{value}' is not a PCI address DDDD:BB:DD.F"));
    }
    let sysfs = PathBuf::from("/sys/bus/pci/devices").join(&bdf);
    Ok((bdf, sysfs))
}

pub fn parse_device(spec: &str) -> Result<DeviceSpec, String> {
    let bad = |why: String| format!("invalid device '{spec}': {why}; {FORM}");
    let mut parts = spec.split(',');
    match parts.next().map(str::trim) {
        Some("vfio") => {}
        Some(other) => {
            return Err(bad(format!(
                "unknown device type '{other}' (granule passes through PCI functions with 'vfio')"
            )))
        }
        None => return Err(bad("empty".into())),
    }
    let (mut target, mut iommu, mut misalign) = (None::<(String, PathBuf)>, None, None);
    for part in parts.map(str::trim) {
        if part.is_empty() {
            return Err(bad("an empty item between commas".into()));
        }
        let (key, value) = match part.split_once('=') {
            Some(kv) => kv,
            None if is_bdf(&part.to_ascii_lowercase()) => ("bdf", part),
            None => {
                return Err(bad(format!(
                    "'{part}' is neither key=value nor a PCI address"
                )))
            }
        };
        match key {
            "path" | "bdf" => {
                if target.is_some() {
                    return Err(bad("the device is named twice".into()));
                }
                target = Some(target_of(key, value).map_err(bad)?);
            }
            "iommu" => {
                if iommu.is_some() {
                    return Err(bad("'iommu' is given twice".into()));
                }
                iommu = Some(match value {
                    "legacy" => IommuApi::Legacy,
                    "iommufd" => IommuApi::Iommufd,
                    _ => return Err(bad(format!("iommu '{value}' is not legacy or iommufd"))),
                });
            }
            "misalign" => {
                if misalign.is_some() {
                    return Err(bad("'misalign' is given twice".into()));
                }
                misalign = Some(
                    crate::units::parse_size(value)
                        .ok()
                        .filter(|n| n % 4096 == 0 && *n < 1 << 30)
                        .ok_or_else(|| {
                            bad(format!(
                                "misalign '{value}' is not a multiple of 4K below 1G"
                            ))
                        })?,
                );
            }
            _ => return Err(bad(format!("unknown key '{key}'"))),
        }
    }
    let (bdf, sysfs) = target.ok_or_else(|| bad("no device is named".into()))?;
    Ok(DeviceSpec {
        bdf,
        sysfs,
        iommu,
        misalign: misalign.unwrap_or(0),
    })
}

/// The first device named twice in `specs` (by path or by address alike).
pub fn first_duplicate(specs: &[DeviceSpec]) -> Option<&str> {
    specs
        .iter()
        .enumerate()
        .find(|(i, s)| specs[..*i].iter().any(|o| o.bdf == s.bdf))
        .map(|(_, s)| s.bdf.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_or_a_bare_address_names_the_device() {
        let d = parse_device("vfio,path=/sys/bus/pci/devices/0000:00:03.0").unwrap();
        assert_eq!(d.bdf, "0000:00:03.0");
        assert_eq!(d.sysfs, PathBuf::from("/sys/bus/pci/devices/0000:00:03.0"));
        assert_eq!(d.iommu, None);
        let d = parse_device("vfio,0000:0A:1f.7,iommu=iommufd").unwrap();
        assert_eq!(d.bdf, "0000:0a:1f.7");
        assert_eq!(d.sysfs, PathBuf::from("/sys/bus/pci/devices/0000:0a:1f.7"));
        assert_eq!(d.iommu, Some(IommuApi::Iommufd));
        let d = parse_device("vfio,bdf=0000:00:04.0,iommu=legacy,misalign=4K").unwrap();
        assert_eq!((d.iommu, d.misalign), (Some(IommuApi::Legacy), 4096));
    }

    #[test]
    fn a_device_named_twice_is_found_whatever_the_form() {
        let a = parse_device("vfio,0000:00:03.0").unwrap();
        let b = parse_device("vfio,path=/sys/bus/pci/devices/0000:00:03.0/").unwrap();
        let c = parse_device("vfio,0000:00:04.0").unwrap();
        assert_eq!(first_duplicate(&[a.clone(), c.clone()]), None);
        assert_eq!(first_duplicate(&[a, c, b]), Some("0000:00:03.0"));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, says) in [
            ("virtio,0000:00:03.0", "unknown device type 'virtio'"),
            ("vfio", "no device is named"),
            ("vfio,0000:00:03.0,0000:00:04.0", "named twice"),
            ("vfio,0000:00:03.0,iommu=smmu", "iommu 'smmu'"),
            (
                "vfio,0000:00:03.0,iommu=legacy,iommu=legacy",
                "'iommu' is given twice",
            ),
            ("vfio,path=/tmp/dev", "does not end in a PCI address"),
            ("vfio,bdf=00:03.0", "not a PCI address"),
            ("vfio,0000:00:20.0", "neither key=value nor a PCI address"),
            ("vfio,0000:00:03.8", "neither key=value nor a PCI address"),
            ("vfio,,0000:00:03.0", "empty item"),
            ("vfio,0000:00:03.0,speed=1", "unknown key 'speed'"),
            ("vfio,0000:00:03.0,misalign=100", "misalign '100'"),
            ("vfio,0000:00:03.0,misalign=1G", "misalign '1G'"),
        ] {
            let e = parse_device(spec).unwrap_err();
            assert!(e.contains(says), "{spec}: {e}");
            assert!(e.contains("expected vfio,path="), "{spec}: {e}");
        }
    }
}
