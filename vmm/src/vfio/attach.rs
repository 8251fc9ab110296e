//! Putting the `--device vfio,...` functions into a VM, before its vCPUs exist: every
//! device is checked first (nothing is opened while any check fails), then each is
//! opened into its DMA address space, guest RAM is mapped for DMA, its BARs are placed
//! and it joins the guest's PCI bus.

use std::sync::Arc;

use serde::Serialize;

use super::bars::{place_bars, PlacedBar};
use super::caps::{find as find_cap, CAP_MSIX};
use super::function::{config_bytes, PassthroughFunction};
use super::iommu::DmaSpace;
use super::msix::{Msix, MsixCap};
use super::preflight::{check_memlock, Host};
use super::spec::{DeviceSpec, IommuApi};
use super::VfioError;
use crate::vm::Vm;
use vfio_ioctls::VfioDevice;

/// A device as passed through, for the summary and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Passthrough {
    pub bdf: String,
    pub iommu: IommuApi,
    /// Why that interface (asked for, or why not iommufd).
    pub iommu_reason: String,
    pub group: u32,
    /// The guest's PCI slot (bus 0).
    pub guest_slot: u8,
    /// MSI-X vectors offered to the guest (0: none).
    pub msix_vectors: u16,
    pub bars: Vec<PlacedBar>,
}

/// What the VM must keep while it runs: the DMA address spaces.
pub struct Attached {
    pub devices: Vec<Passthrough>,
    pub spaces: Vec<DmaSpace>,
}

/// Each BAR's host-physical address, from sysfs.
fn host_bar_addresses(bdf: &str) -> Vec<(usize, u64)> {
    let sys = std::path::Path::new("/sys/bus/pci/devices").join(bdf);
    std::fs::read_to_string(sys.join("resource"))
        .map(|t| {
            super::sysfs::parse_resources(&t, 1 << 30)
                .iter()
                .map(|b| (b.index, b.host_addr))
                .collect()
        })
        .unwrap_or_default()
}

/// MSI-X emulation for `device`, when it has the capability and the VM routes GSIs:
/// a GSI per vector from the VM's allocator.
fn msix_for(bdf: &str, device: &Arc<VfioDevice>, vm: &Vm) -> Result<Option<Arc<Msix>>, VfioError> {
    let byte = |o: u16| {
        let mut b = [0u8];
        config_bytes(device, o, &mut b);
        b[0]
    };
    let Some(at) = find_cap(byte, CAP_MSIX) else {
        return Ok(None);
    };
    let Some(routes) = vm.devices().irq_routes() else {
        return Ok(None);
    };
    let mut dw = [0u32; 3];
    for (i, d) in dw.iter_mut().enumerate() {
        let mut b = [0u8; 4];
        config_bytes(device, at + 4 * i as u16, &mut b);
        *d = u32::from_le_bytes(b);
    }
    let cap = MsixCap::parse(at, dw);
    let fail = |why: String| VfioError::Function {
        bdf: bdf.to_string(),
        why,
    };
    let gsis = {
        let mut r = vm.devices().resources();
        (0..cap.vectors)
            .map(|_| r.gsis.allocate())
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|e| fail(format!("{} MSI-X vectors: {e}", cap.vectors)))?
    };
    let m = Msix::new(
        cap,
        device.clone(),
        vm.devices().vm().clone(),
        routes,
        &gsis,
    )
    .map_err(|e| fail(format!("MSI-X eventfds: {e}")))?;
    Ok(Some(Arc::new(m)))
}

pub fn attach_all(vm: &Vm, specs: &[DeviceSpec]) -> Result<Attached, VfioError> {
    let mut attached = Attached {
        devices: Vec::new(),
        spaces: Vec::new(),
    };
    if specs.is_empty() {
        return Ok(attached);
    }
    if let Some(bdf) = super::spec::first_duplicate(specs) {
        return Err(VfioError::Duplicate {
            bdf: bdf.to_string(),
        });
    }
    let host = Host::real();
    let checked = specs
        .iter()
        .map(|s| host.check(s))
        .collect::<Result<Vec<_>, _>>()?;
    let ram_bytes: u64 = vm.ram().slots().iter().map(|s| s.size).sum();
    check_memlock(ram_bytes)?;
    for (spec, c) in specs.iter().zip(checked) {
        let at = match attached.spaces.iter().position(|s| s.api() == c.api) {
            Some(at) => at,
            None => {
                attached.spaces.push(DmaSpace::new(vm.fd(), c.api)?);
                attached.spaces.len() - 1
            }
        };
        let space = &mut attached.spaces[at];
        let device = Arc::new(space.open(&spec.bdf, &spec.sysfs)?);
        space.map_ram(vm.ram())?;
        device.reset();
        let dm = vm.devices();
        let host_pa = host_bar_addresses(&spec.bdf);
        let msix = msix_for(&spec.bdf, &device, vm)?;
        let placed = place_bars(
            &spec.bdf,
            &device,
            dm,
            &host_pa,
            spec.misalign,
            msix.as_ref(),
        )?;
        let vectors = msix.as_ref().map_or(0, |m| m.cap().vectors);
        let handlers = (dm.bar_mover(), dm.window_switch());
        let function =
            PassthroughFunction::new(device, &placed.bars, msix, handlers).map_err(|e| {
                VfioError::Function {
                    bdf: spec.bdf.clone(),
                    why: e.to_string(),
                }
            })?;
        let guest_slot = dm
            .pci()
            .add(Arc::new(function))
            .map_err(|e| VfioError::Function {
                bdf: spec.bdf.clone(),
                why: e.to_string(),
            })?;
        tracing::info!(
            "passing {} through on {} (guest 00:{guest_slot:02x}.0)",
            spec.bdf,
            c.api.name()
        );
        attached.devices.push(Passthrough {
            bdf: spec.bdf.clone(),
            iommu: c.api,
            iommu_reason: c.api_reason,
            group: c.group,
            guest_slot,
            msix_vectors: vectors,
            bars: placed.report,
        });
    }
    Ok(attached)
}
