//! The IOMMU side of passthrough: one DMA address space per VM (a legacy container or an
//! iommufd IOAS) with guest RAM mapped at IOVA = GPA, the KVM VFIO pseudo-device that
//! tells KVM about the devices (for coherent DMA and interrupt bypass), and opening a
//! device into it.

use std::error::Error as StdError;
use std::sync::Arc;

use iommufd_ioctls::IommuFd;
use kvm_bindings::{kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO};
use kvm_ioctls::VmFd;
use vfio_ioctls::{VfioContainer, VfioDevice, VfioDeviceFd, VfioIommufd, VfioOps};

use super::spec::IommuApi;
use super::VfioError;
use crate::memory::GuestRam;

/// The DMA address space the VM's passed-through devices share.
pub struct DmaSpace {
    api: IommuApi,
    ops: Arc<dyn VfioOps>,
    /// Guest RAM is mapped once, when the first device is in (a legacy container has
    /// no IOMMU before its first group).
    ram_mapped: bool,
}

/// The errno somewhere in `e`'s chain of causes.
fn errno_in(e: &(dyn StdError + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        if let Some(sys) = err.downcast_ref::<vmm_sys_util::errno::Error>() {
            return Some(sys.errno());
        }
        cur = err.source();
    }
    None
}

impl DmaSpace {
    /// A new address space on `api`, with KVM's VFIO device on `vm`.
    pub fn new(vm: &VmFd, api: IommuApi) -> Result<Self, VfioError> {
        let mut create = kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
            fd: 0,
            flags: 0,
        };
        let kvm_dev = vm
            .create_device(&mut create)
            .map_err(|e| VfioError::KvmDevice(e.to_string()))?;
        let handle = Some(Arc::new(VfioDeviceFd::new_from_kvm(kvm_dev)));
        let ops: Arc<dyn VfioOps> = match api {
            IommuApi::Legacy => {
                Arc::new(VfioContainer::new(handle).map_err(|e| VfioError::Open {
                    what: "/dev/vfio/vfio (the VFIO container)".into(),
                    error: e.to_string(),
                })?)
            }
            IommuApi::Iommufd => {
                let fd = IommuFd::new().map_err(|e| VfioError::Open {
                    what: "/dev/iommu".into(),
                    error: e.to_string(),
                })?;
                Arc::new(VfioIommufd::new(Arc::new(fd), None, handle).map_err(|e| {
                    VfioError::Open {
                        what: "an iommufd IO address space".into(),
                        error: e.to_string(),
                    }
                })?)
            }
        };
        Ok(Self {
            api,
            ops,
            ram_mapped: false,
        })
    }

    pub fn api(&self) -> IommuApi {
        self.api
    }

    /// Opens the device at `sysfs` into this address space.
    pub fn open(&self, bdf: &str, sysfs: &std::path::Path) -> Result<VfioDevice, VfioError> {
        VfioDevice::new(sysfs, self.ops.clone(), true).map_err(|e| {
            if errno_in(&e) == Some(libc::EBUSY) {
                VfioError::InUse {
                    bdf: bdf.to_string(),
                }
            } else {
                VfioError::Open {
                    what: format!("PCI device {bdf}"),
                    error: format!("{e}{}", source_text(&e)),
                }
            }
        })
    }

    /// Maps every RAM range at IOVA = GPA (once; later calls do nothing). With a
    /// hugetlb backing the kernel pins whole huge pages, which is what makes this fast.
    pub fn map_ram(&mut self, ram: &GuestRam) -> Result<(), VfioError> {
        if self.ram_mapped {
            return Ok(());
        }
        for s in ram.slots() {
            let size = usize::try_from(s.size).map_err(|_| VfioError::DmaMap {
                gpa: s.gpa,
                size: s.size,
                error: "larger than the address space".into(),
            })?;
            // SAFETY: `s.hva..+size` is guest RAM, mapped for the life of the VM and
            // only ever accessed through volatile or raw-pointer copies (vm-memory),
            // never through Rust references, so concurrent DMA breaks no aliasing rule.
            // The mapping ends when the address space is closed, after the VM.
            unsafe { self.ops.vfio_dma_map(s.gpa, size, s.hva as *mut u8) }.map_err(|e| {
                VfioError::DmaMap {
                    gpa: s.gpa,
                    size: s.size,
                    error: format!("{e}{}", source_text(&e)),
                }
            })?;
        }
        self.ram_mapped = true;
        Ok(())
    }
}

/// ": cause" for an error whose message leaves its cause out.
fn source_text(e: &(dyn StdError + 'static)) -> String {
    match e.source() {
        Some(s) if !e.to_string().contains(&s.to_string()) => format!(": {s}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errno_is_found_anywhere_in_the_chain() {
        let e =
            vfio_ioctls::VfioError::OpenGroup(std::io::Error::from_raw_os_error(16), "5".into());
        assert_eq!(errno_in(&e), Some(libc::EBUSY));
        let e = vfio_ioctls::VfioError::GroupGetDeviceFD(vmm_sys_util::errno::Error::new(2));
        assert_eq!(errno_in(&e), Some(2));
        assert_eq!(errno_in(&vfio_ioctls::VfioError::GroupViable), None);
    }
}
