//! Which message-signalled interrupts a passed-through function gets: MSI and MSI-X
//! emulation where the device has the capability and the VM routes GSIs (an in-kernel
//! irqchip), with a GSI per vector from the VM's allocator.

use std::sync::Arc;

use vfio_ioctls::VfioDevice;

use super::caps::{find as find_cap, CAP_MSI, CAP_MSIX};
use super::function::config_bytes;
use super::msi::{Msi, MsiLayout};
use super::msix::{Msix, MsixCap};
use super::VfioError;
use crate::vm::Vm;

fn byte(device: &VfioDevice, at: u16) -> u8 {
    let mut b = [0u8];
    config_bytes(device, at, &mut b);
    b[0]
}

fn dword(device: &VfioDevice, at: u16) -> u32 {
    let mut b = [0u8; 4];
    config_bytes(device, at, &mut b);
    u32::from_le_bytes(b)
}

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

/// The MSI and MSI-X emulation for `device` (None where it lacks the capability or the
/// VM cannot route GSIs).
#[allow(clippy::type_complexity)]
pub fn emulation(
    bdf: &str,
    device: &Arc<VfioDevice>,
    vm: &Vm,
) -> Result<(Option<Arc<Msi>>, Option<Arc<Msix>>), VfioError> {
    let Some(routes) = vm.devices().irq_routes() else {
        return Ok((None, None));
    };
    let kvm = || (vm.devices().vm().clone(), routes.clone());
    let fail = |what: &str, e: std::io::Error| VfioError::Function {
        bdf: bdf.to_string(),
        why: format!("{what} eventfds: {e}"),
    };
    let msi = match find_cap(|o| byte(device, o), CAP_MSI) {
        Some(at) => {
            let control = (dword(device, at) >> 16) as u16;
            let layout = MsiLayout { at, control };
            let g = gsis(vm, layout.vectors(), bdf, "MSI")?;
            let m = Msi::new(layout, device.clone(), kvm(), g).map_err(|e| fail("MSI", e))?;
            Some(Arc::new(m))
        }
        None => None,
    };
    let msix = match find_cap(|o| byte(device, o), CAP_MSIX) {
        Some(at) => {
            let cap = MsixCap::parse(at, [0, 4, 8].map(|o| dword(device, at + o)));
            let g = gsis(vm, usize::from(cap.vectors), bdf, "MSI-X")?;
            let m = Msix::new(cap, device.clone(), kvm(), g).map_err(|e| fail("MSI-X", e))?;
            Some(Arc::new(m))
        }
        None => None,
    };
    Ok((msi, msix))
}
