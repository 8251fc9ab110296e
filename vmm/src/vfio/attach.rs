//! Putting the `--device vfio,...` functions into a VM, before its vCPUs exist: every
//! device is checked first (nothing is opened while any check fails), then each is
//! opened into its DMA address space, guest RAM is mapped for DMA, its BARs are placed
//! and it joins the guest's PCI bus.

use std::sync::Arc;

use serde::Serialize;

use super::bars::{place_bars, PlacedBar};
use super::function::PassthroughFunction;
use super::interrupts;
use super::iommu::DmaSpace;
use super::preflight::{check_memlock, Checked, Host};
use super::spec::{DeviceSpec, IommuApi};
use super::VfioError;
use crate::vm::Vm;

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
    /// MSI vectors the guest may enable (0: no MSI).
    pub msi_vectors: usize,
    /// The I/O APIC input of the function's INTx pin, where it has one.
    pub intx_gsi: Option<u32>,
    pub bars: Vec<PlacedBar>,
}

/// What the VM must keep while it runs: the DMA address spaces.
#[derive(Default)]
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

/// Opens `spec`'s device into `space`, places its BARs, sets up its interrupts and puts
/// it on the guest's PCI bus.
fn attach_one(
    vm: &Vm,
    space: &mut DmaSpace,
    spec: &DeviceSpec,
    c: Checked,
) -> Result<Passthrough, VfioError> {
    let device = Arc::new(space.open(&spec.bdf, &spec.sysfs)?);
    space.map_ram(vm.ram())?;
    device.reset();
    let dm = vm.devices();
    let fail = |e: String| VfioError::Function {
        bdf: spec.bdf.clone(),
        why: e,
    };
    let host_pa = host_bar_addresses(&spec.bdf);
    let slot = dm
        .pci()
        .free_slot()
        .ok_or_else(|| fail("the guest's PCI bus 0 is full".into()))?;
    let irqs = interrupts::emulation(&spec.bdf, &device, vm, slot)?;
    let placed = place_bars(
        &spec.bdf,
        &device,
        dm,
        &host_pa,
        spec.misalign,
        irqs.msix.as_ref(),
    )?;
    let msix_vectors = irqs.msix.as_ref().map_or(0, |m| m.cap().vectors);
    let msi_vectors = irqs.msi.as_ref().map_or(0, |m| m.layout().vectors());
    let intx_gsi = irqs.intx.as_ref().map(|i| i.gsi());
    let handlers = (dm.bar_mover(), dm.window_switch());
    let function = PassthroughFunction::new(device, &placed.bars, irqs, handlers)
        .map_err(|e| fail(e.to_string()))?;
    dm.pci()
        .insert(slot, Arc::new(function))
        .map_err(|e| fail(e.to_string()))?;
    let guest_slot = slot;
    tracing::info!(
        "passing {} through on {} (guest 00:{guest_slot:02x}.0)",
        spec.bdf,
        c.api.name()
    );
    Ok(Passthrough {
        bdf: spec.bdf.clone(),
        iommu: c.api,
        iommu_reason: c.api_reason,
        group: c.group,
        guest_slot,
        msix_vectors,
        msi_vectors,
        intx_gsi,
        bars: placed.report,
    })
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
        let device = attach_one(vm, &mut attached.spaces[at], spec, c)?;
        attached.devices.push(device);
    }
    Ok(attached)
}
