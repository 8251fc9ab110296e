//! Everything that can be checked about a device before opening it, each failure with
//! what to do about it: the device exists, the host has an IOMMU, vfio-pci owns it,
//! its group is viable, the chosen IOMMU interface is there, and the memory-lock limit
//! covers the guest RAM that will be pinned for DMA.
//!
//! The kernel's own answer to a failed open is one errno; these checks read sysfs
//! first so the error can say which device, which driver and which command.

use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::spec::{DeviceSpec, IommuApi};

/// The capability that lifts RLIMIT_MEMLOCK (linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

/// Drivers that leave an IOMMU group viable for VFIO (bridges keep their driver).
const VIABLE_DRIVERS: &[&str] = &["vfio-pci", "pci-stub", "pcieport", "none"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "no PCI device {bdf}: {path} does not exist (`lspci -D` lists the host's PCI functions)"
    )]
    NoSuchDevice { bdf: String, path: PathBuf },
    #[error("PCI device {bdf} is {bound}; granule needs it bound to vfio-pci. As root:\n  modprobe vfio-pci\n  echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override\n{unbind}  echo {bdf} > /sys/bus/pci/drivers_probe")]
    NotBound {
        bdf: String,
        /// "bound to DRIVER" or "not bound to any driver".
        bound: String,
        /// The unbind line (empty when no driver holds it).
        unbind: String,
    },
    #[error("PCI device {bdf} has no IOMMU group: the host kernel runs without an IOMMU. Enable VT-d (Intel) or AMD-Vi (AMD) in the firmware and boot the host with intel_iommu=on (Intel) or amd_iommu=on (AMD), optionally iommu=pt")]
    NoIommu { bdf: String },
    #[error("IOMMU group {group} of {bdf} is not viable: every device in it must be bound to vfio-pci (or have no driver), but {}. Bind those to vfio-pci too (or unbind them from their drivers): the devices of a group are only ever passed through together", list_peers(.peers))]
    GroupNotViable {
        bdf: String,
        group: u32,
        peers: Vec<(String, String)>,
    },
    #[error("iommu=iommufd for {bdf}, but {why}; use iommu=legacy")]
    NoIommufd { bdf: String, why: String },
    #[error("/dev/vfio/{group} (the VFIO group of {bdf}) does not exist; is the vfio module loaded (`modprobe vfio-pci`)?")]
    NoGroupNode { bdf: String, group: u32 },
    #[error("RLIMIT_MEMLOCK is {have} bytes, but passing a device through pins all {need} bytes of guest RAM for DMA. Raise it (`ulimit -l {need_kib}` in KiB, or LimitMEMLOCK= in a systemd unit) or run granule with CAP_IPC_LOCK")]
    Memlock { have: u64, need: u64, need_kib: u64 },
}

fn list_peers(peers: &[(String, String)]) -> String {
    peers
        .iter()
        .map(|(bdf, driver)| format!("{bdf} is bound to {driver}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// What the checks found out: where to open the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub group: u32,
    pub api: IommuApi,
    /// The device's iommufd character device name (`vfioN`), if the kernel has one.
    pub cdev: Option<String>,
    /// Why iommufd was not chosen when it was not asked for (for the report).
    pub api_reason: String,
}

/// The host facts the checks read: a sysfs root and a /dev root (normally "/sys" and
/// "/dev"), so tests can build a tree.
pub struct Host<'a> {
    pub sys: &'a Path,
    pub dev: &'a Path,
}

impl Host<'static> {
    pub fn real() -> Self {
        Host {
            sys: Path::new("/sys"),
            dev: Path::new("/dev"),
        }
    }
}

impl Host<'_> {
    /// Checks `spec`'s device, and chooses its IOMMU interface.
    pub fn check(&self, spec: &DeviceSpec) -> Result<Checked, PreflightError> {
        let bdf = spec.bdf.clone();
        // The user's path, re-rooted for tests (the real root is "/sys").
        let dir = match spec.sysfs.strip_prefix("/sys") {
            Ok(rest) => self.sys.join(rest),
            Err(_) => spec.sysfs.clone(),
        };
        if !dir.join("config").exists() {
            return Err(PreflightError::NoSuchDevice {
                bdf,
                path: spec.sysfs.clone(),
            });
        }
        // Without an IOMMU vfio-pci cannot bind at all, so this comes first.
        let group = link_name(&dir.join("iommu_group"))
            .and_then(|g| g.parse::<u32>().ok())
            .ok_or_else(|| PreflightError::NoIommu { bdf: bdf.clone() })?;
        match link_name(&dir.join("driver")).as_deref() {
            Some("vfio-pci") => {}
            other => {
                let (bound, unbind) = match other {
                    Some(d) => (
                        format!("bound to {d}"),
                        format!("  echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind\n"),
                    ),
                    None => ("not bound to any driver".into(), String::new()),
                };
                return Err(PreflightError::NotBound { bdf, bound, unbind });
            }
        }
        let peers = self.unviable_peers(&bdf, group);
        if !peers.is_empty() {
            return Err(PreflightError::GroupNotViable { bdf, group, peers });
        }
        let cdev = fs::read_dir(dir.join("vfio-dev")).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with("vfio"))
        });
        let iommufd_missing = if !self.dev.join("iommu").exists() {
            Some("the host has no /dev/iommu (a kernel without CONFIG_IOMMUFD, or the iommufd module not loaded)".to_string())
        } else if cdev.is_none() {
            Some(format!(
                "{bdf} has no VFIO character device (a kernel without CONFIG_VFIO_DEVICE_CDEV)"
            ))
        } else {
            None
        };
        let (api, api_reason) = match (spec.iommu, iommufd_missing) {
            (Some(IommuApi::Iommufd), Some(why)) => {
                return Err(PreflightError::NoIommufd { bdf, why })
            }
            (Some(api), _) => (api, "chosen with iommu=".to_string()),
            (None, None) => (IommuApi::Iommufd, "the kernel offers iommufd".to_string()),
            (None, Some(why)) => (IommuApi::Legacy, why),
        };
        if api == IommuApi::Legacy && !self.dev.join(format!("vfio/{group}")).exists() {
            return Err(PreflightError::NoGroupNode { bdf, group });
        }
        Ok(Checked {
            group,
            api,
            cdev,
            api_reason,
        })
    }

    /// The other devices of `group` bound to a driver that makes it unusable.
    fn unviable_peers(&self, bdf: &str, group: u32) -> Vec<(String, String)> {
        let devices = self
            .sys
            .join(format!("kernel/iommu_groups/{group}/devices"));
        let Ok(entries) = fs::read_dir(devices) else {
            return Vec::new();
        };
        let mut peers: Vec<(String, String)> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|p| p != bdf)
            .map(|p| {
                let driver = link_name(&self.sys.join("bus/pci/devices").join(&p).join("driver"))
                    .unwrap_or_else(|| "none".into());
                (p, driver)
            })
            .filter(|(_, d)| !VIABLE_DRIVERS.contains(&d.as_str()))
            .collect();
        peers.sort();
        peers
    }
}

/// Whether this process may pin `need` bytes: CAP_IPC_LOCK, or RLIMIT_MEMLOCK at least
/// `need`.
pub fn check_memlock(need: u64) -> Result<(), PreflightError> {
    if has_cap_ipc_lock() {
        return Ok(());
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`, a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Ok(());
    }
    memlock_covers(lim.rlim_cur, need)
}

fn memlock_covers(have: u64, need: u64) -> Result<(), PreflightError> {
    if have == libc::RLIM_INFINITY || have >= need {
        return Ok(());
    }
    Err(PreflightError::Memlock {
        have,
        need,
        need_kib: need.div_ceil(1024),
    })
}

/// CAP_IPC_LOCK (bit 14) in this process's effective set.
fn has_cap_ipc_lock() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::spec::parse_device;
    use std::os::unix::fs::symlink;

    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Self {
            let root = std::env::temp_dir()
                .join(format!("granule-preflight-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            for d in ["sys/bus/pci/devices", "sys/bus/pci/drivers", "dev/vfio"] {
                fs::create_dir_all(root.join(d)).unwrap();
            }
            Self(root)
        }
        fn sys(&self) -> PathBuf {
            self.0.join("sys")
        }
        fn device(&self, bdf: &str, driver: Option<&str>, group: Option<u32>) {
            let dev = self.sys().join("bus/pci/devices").join(bdf);
            fs::create_dir_all(&dev).unwrap();
            fs::write(dev.join("config"), [0u8; 64]).unwrap();
            if let Some(d) = driver {
                let dd = self.sys().join("bus/pci/drivers").join(d);
                fs::create_dir_all(&dd).unwrap();
                symlink(&dd, dev.join("driver")).unwrap();
            }
            if let Some(g) = group {
                let gd = self.sys().join(format!("kernel/iommu_groups/{g}"));
                fs::create_dir_all(gd.join("devices")).unwrap();
                symlink(&gd, dev.join("iommu_group")).unwrap();
                symlink(&dev, gd.join("devices").join(bdf)).unwrap();
            }
        }
        fn check(&self, spec: &str) -> Result<Checked, PreflightError> {
            let dev = self.0.join("dev");
            Host {
                sys: &self.sys(),
                dev: &dev,
            }
            .check(&parse_device(spec).unwrap())
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_bound_device_in_a_clean_group_opens_with_the_legacy_api() {
        let t = Tree::new("ok");
        t.device("0000:00:03.0", Some("vfio-pci"), Some(5));
        t.device("0000:00:03.1", None, Some(5));
        fs::create_dir_all(t.0.join("dev/vfio/5")).unwrap();
        let c = t.check("vfio,0000:00:03.0").unwrap();
        assert_eq!((c.group, c.api), (5, IommuApi::Legacy));
        assert!(c.api_reason.contains("no /dev/iommu"), "{}", c.api_reason);
        // iommufd asked for where there is none: an error, not a silent fallback.
        let e = t.check("vfio,0000:00:03.0,iommu=iommufd").unwrap_err();
        assert!(e.to_string().contains("use iommu=legacy"), "{e}");
    }

    #[test]
    fn iommufd_is_the_default_where_the_kernel_has_it() {
        let t = Tree::new("iommufd");
        t.device("0000:00:03.0", Some("vfio-pci"), Some(5));
        fs::create_dir_all(t.sys().join("bus/pci/devices/0000:00:03.0/vfio-dev/vfio0")).unwrap();
        fs::write(t.0.join("dev/iommu"), "").unwrap();
        let c = t.check("vfio,0000:00:03.0").unwrap();
        assert_eq!(
            (c.api, c.cdev.as_deref()),
            (IommuApi::Iommufd, Some("vfio0"))
        );
        // Legacy still on request, and then the group node must exist.
        let e = t.check("vfio,0000:00:03.0,iommu=legacy").unwrap_err();
        assert_eq!(
            e,
            PreflightError::NoGroupNode {
                bdf: "0000:00:03.0".into(),
                group: 5
            }
        );
    }

    #[test]
    fn each_failure_names_the_fix() {
        let t = Tree::new("fail");
        t.device("0000:00:04.0", Some("e1000e"), Some(6));
        t.device("0000:00:05.0", None, Some(7));
        t.device("0000:00:06.0", Some("vfio-pci"), None);
        t.device("0000:00:07.0", Some("vfio-pci"), Some(8));
        t.device("0000:00:07.1", Some("snd_hda_intel"), Some(8));
        t.device("0000:00:07.2", Some("pcieport"), Some(8));
        let e = t.check("vfio,0000:00:09.0").unwrap_err().to_string();
        assert!(
            e.contains("no PCI device 0000:00:09.0") && e.contains("lspci"),
            "{e}"
        );
        let e = t.check("vfio,0000:00:04.0").unwrap_err().to_string();
        assert!(e.contains("bound to e1000e"), "{e}");
        assert!(
            e.contains("echo 0000:00:04.0 > /sys/bus/pci/devices/0000:00:04.0/driver/unbind"),
            "{e}"
        );
        assert!(e.contains("echo vfio-pci > /sys/bus/pci/devices/0000:00:04.0/driver_override"));
        let e = t.check("vfio,0000:00:05.0").unwrap_err().to_string();
        assert!(
            e.contains("not bound to any driver") && !e.contains("unbind"),
            "{e}"
        );
        let e = t.check("vfio,0000:00:06.0").unwrap_err().to_string();
        assert!(
            e.contains("intel_iommu=on") && e.contains("amd_iommu=on"),
            "{e}"
        );
        let e = t.check("vfio,0000:00:07.0").unwrap_err().to_string();
        assert!(
            e.contains("group 8") && e.contains("0000:00:07.1 is bound to snd_hda_intel"),
            "{e}"
        );
        assert!(!e.contains("07.2"), "a bridge keeps the group viable: {e}");
    }

    #[test]
    fn memlock_must_cover_guest_ram() {
        assert!(memlock_covers(libc::RLIM_INFINITY, 1 << 30).is_ok());
        assert!(memlock_covers(1 << 30, 1 << 30).is_ok());
        let e = memlock_covers(8 << 20, 1 << 30).unwrap_err().to_string();
        assert!(
            e.contains("8388608 bytes") && e.contains("ulimit -l 1048576"),
            "{e}"
        );
    }
}
