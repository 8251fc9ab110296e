//! INTx of a passed-through function: its pin goes to the I/O APIC input the DSDT's
//! `_PRT` gives its slot. The interrupt is level-triggered, so KVM gets it through a
//! resampling irqfd: VFIO signals the trigger eventfd and masks the line; when the guest
//! acknowledges it (EOI), KVM signals the resample eventfd and VFIO unmasks the line,
//! which fires again if the device still asserts it. None of it passes through granule.
//! VFIO cannot have INTx and MSI/MSI-X at once: the vector sets suspend INTx while the
//! guest has message-signalled interrupts on.

use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;

use crate::warn_once::WarnOnce;
use vfio_bindings::bindings::vfio::VFIO_PCI_INTX_IRQ_INDEX;
use vfio_ioctls::VfioDevice;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub struct Intx {
    device: Arc<VfioDevice>,
    /// 1 = INTA .. 4 = INTD, as the interrupt pin register says.
    pin: u8,
    gsi: u32,
    trigger: EventFd,
    resample: EventFd,
    /// VFIO has the eventfds.
    armed: Mutex<bool>,
    warned: WarnOnce,
}

impl Intx {
    /// INTx `pin` of `device` on `gsi`: the resampling irqfd, then VFIO armed.
    pub fn new(device: Arc<VfioDevice>, vm: &VmFd, pin: u8, gsi: u32) -> std::io::Result<Self> {
        let trigger = EventFd::new(EFD_NONBLOCK)?;
        let resample = EventFd::new(EFD_NONBLOCK)?;
        vm.register_irqfd_with_resample(&trigger, &resample, gsi)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        let intx = Self {
            device,
            pin,
            gsi,
            trigger,
            resample,
            armed: Mutex::new(false),
            warned: WarnOnce::default(),
        };
        intx.resume();
        Ok(intx)
    }

    pub fn pin(&self) -> u8 {
        self.pin
    }

    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Takes the eventfds from VFIO (before MSI or MSI-X is enabled on the device).
    pub fn suspend(&self) {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        if *armed {
            if let Err(e) = self.device.disable_irq(VFIO_PCI_INTX_IRQ_INDEX) {
                self.warned.warn(format!("cannot disable INTx: {e}"));
            }
            *armed = false;
        }
    }

    /// Gives VFIO the eventfds again (after MSI or MSI-X is off).
    pub fn resume(&self) {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        if *armed {
            return;
        }
        let r = self
            .device
            .enable_irq(VFIO_PCI_INTX_IRQ_INDEX, vec![&self.trigger])
            .and_then(|()| {
                self.device
                    .set_irq_resample_fd(VFIO_PCI_INTX_IRQ_INDEX, vec![&self.resample])
            });
        match r {
            Ok(()) => *armed = true,
            Err(e) => self.warned.warn(format!("cannot enable INTx: {e}")),
        }
    }
}
