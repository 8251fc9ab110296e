//! Which interrupts a passed-through function gets: INTx on the I/O APIC input its
//! slot's pin is routed to, MSI and MSI-X emulation where the device has the capability
//! (a GSI per vector from the VM's allocator); all only where the VM routes GSIs (an
//! in-kernel irqchip).

use std::sync::Arc;

use granule_arch::x86_64::boot::acpi_pci::intx_gsi;
use vfio_bindings::bindings::vfio::VFIO_PCI_INTX_IRQ_INDEX;
use vfio_ioctls::VfioDevice;

use super::caps::{find as find_cap, CAP_MSI, CAP_MSIX};
use super::function::{config_u32 as dword, config_u8 as byte};
use super::intx::Intx;
use super::msi::{Msi, MsiLayout};
use super::msix::{Msix, MsixCap};
use super::VfioError;
use crate::vm::Vm;

const INTERRUPT_PIN: u16 = 0x3d;

/// `n` GSIs from the VM's allocator.
fn gsis(vm: &Vm, n: usize, bdf: &str, what: &str) -> Result<Vec<u32>, VfioError> {
    let mut r = vm.devices().resources();
    (0..n)
        .map(|_| r.gsis.allocate())
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|e| VfioError::Function {
            bdf: bdf.to_string(),
            why: format!("{n} {what} vectors: {e}"),
        })
}

/// A function's interrupts as the guest gets them.
#[derive(Default)]
pub struct Irqs {
    pub msi: Option<Arc<Msi>>,
    pub msix: Option<Arc<Msix>>,
    pub intx: Option<Arc<Intx>>,
}

/// INTx for `device` in guest slot `slot`, when it has a pin and VFIO offers it.
fn intx(device: &Arc<VfioDevice>, vm: &Vm, slot: u8) -> std::io::Result<Option<Arc<Intx>>> {
    let pin = byte(device, INTERRUPT_PIN);
    let offered = device
        .get_irq_info(VFIO_PCI_INTX_IRQ_INDEX)
        .is_some_and(|i| i.count == 1);
    if !(1..=4).contains(&pin) || !offered {
        return Ok(None);
    }
    let gsi = intx_gsi(slot, pin - 1);
    Intx::new(device.clone(), vm.devices().vm(), pin, gsi).map(|i| Some(Arc::new(i)))
}

/// The interrupts of `device` in guest slot `slot`: INTx, MSI and MSI-X where the
/// device has them and the VM routes GSIs (an in-kernel irqchip).
pub fn emulation(
    bdf: &str,
    device: &Arc<VfioDevice>,
    vm: &Vm,
    slot: u8,
) -> Result<Irqs, VfioError> {
    let Some(routes) = vm.devices().irq_routes() else {
        return Ok(Irqs::default());
    };
    let kvm = || (vm.devices().vm().clone(), routes.clone());
    let fail = |what: &str, e: std::io::Error| VfioError::Function {
        bdf: bdf.to_string(),
        why: format!("{what}: {e}"),
    };
    let intx = intx(device, vm, slot).map_err(|e| fail("INTx", e))?;
    let dev = || (device.clone(), intx.clone());
    let msi = match find_cap(|o| byte(device, o), CAP_MSI) {
        Some(at) => {
            let control = (dword(device, at) >> 16) as u16;
            let layout = MsiLayout { at, control };
            let g = gsis(vm, layout.vectors(), bdf, "MSI")?;
            let m = Msi::new(layout, dev(), kvm(), g).map_err(|e| fail("MSI eventfds", e))?;
            Some(Arc::new(m))
        }
        None => None,
    };
    let msix = match find_cap(|o| byte(device, o), CAP_MSIX) {
        Some(at) => {
            let cap = MsixCap::parse(at, [0, 4, 8].map(|o| dword(device, at + o)));
            let g = gsis(vm, usize::from(cap.vectors), bdf, "MSI-X")?;
            let m = Msix::new(cap, dev(), kvm(), g).map_err(|e| fail("MSI-X eventfds", e))?;
            Some(Arc::new(m))
        }
        None => None,
    };
    Ok(Irqs { msi, msix, intx })
}
