//! The host side of a passed-through function's message-signalled vectors (MSI or
//! MSI-X), shared by both: per vector a GSI of its own, an eventfd that VFIO signals
//! when the device fires it, an MSI route to where the guest pointed it, and an irqfd
//! so KVM injects it without granule. An inactive (masked) vector loses its irqfd: the
//! eventfd keeps counting, and KVM delivers what is pending when the irqfd is back.

use std::sync::Arc;

use kvm_ioctls::VmFd;
use vfio_ioctls::VfioDevice;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::intx::Intx;
use crate::devices::irq_routes::GsiRoutes;
use crate::warn_once::WarnOnce;

/// One vector as the guest programmed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Message {
    pub address: u64,
    pub data: u32,
    /// Enabled and not masked.
    pub active: bool,
}

pub struct VectorSet {
    /// The VFIO interrupt index (MSI or MSI-X).
    index: u32,
    what: &'static str,
    device: Arc<VfioDevice>,
    vm: Arc<VmFd>,
    routes: Arc<GsiRoutes>,
    gsis: Vec<u32>,
    events: Vec<EventFd>,
    live: Vec<bool>,
    /// How many vectors VFIO has now (0: the interrupt type is off on the device).
    armed: usize,
    /// The function's INTx, which VFIO must not have while these vectors are on.
    intx: Option<Arc<Intx>>,
    warned: WarnOnce,
}

impl VectorSet {
    /// Vectors on `gsis` for VFIO interrupt `index` (`what` names it in warnings).
    pub fn new(
        (index, what): (u32, &'static str),
        (device, intx): (Arc<VfioDevice>, Option<Arc<Intx>>),
        (vm, routes): (Arc<VmFd>, Arc<GsiRoutes>),
        gsis: Vec<u32>,
    ) -> std::io::Result<Self> {
        let events = gsis
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            index,
            what,
            device,
            vm,
            routes,
            live: vec![false; gsis.len()],
            gsis,
            events,
            armed: 0,
            intx,
            warned: WarnOnce::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.gsis.len()
    }

    /// Makes the device signal `count` vectors (0: none) and each vector's route and
    /// irqfd follow `messages`.
    pub fn sync(&mut self, count: usize, messages: &[Message]) {
        let count = count.min(self.len());
        if count != self.armed {
            if self.armed > 0 {
                if let Err(e) = self.device.disable_irq(self.index) {
                    self.warn(format!("cannot disable {} on the device: {e}", self.what));
                }
                self.armed = 0;
                if let Some(i) = &self.intx {
                    i.resume();
                }
            }
            if count > 0 {
                if let Some(i) = &self.intx {
                    i.suspend();
                }
                let fds: Vec<&EventFd> = self.events[..count].iter().collect();
                match self.device.enable_irq(self.index, fds) {
                    Ok(()) => self.armed = count,
                    Err(e) => self.warn(format!("cannot enable {} on the device: {e}", self.what)),
                }
            }
        }
        for i in 0..self.len() {
            let m = messages.get(i).copied().unwrap_or_default();
            let want = m.active && i < self.armed;
            if want {
                // The route follows the guest's message even while the vector is live.
                if let Err(e) = self.routes.set_msi(self.gsis[i], Some((m.address, m.data))) {
                    self.warn(e.to_string());
                    continue;
                }
                if !self.live[i] {
                    match self.vm.register_irqfd(&self.events[i], self.gsis[i]) {
                        Ok(()) => self.live[i] = true,
                        Err(e) => self.warn(format!("KVM_IRQFD for GSI {}: {e}", self.gsis[i])),
                    }
                }
            } else if self.live[i] {
                match self.vm.unregister_irqfd(&self.events[i], self.gsis[i]) {
                    Ok(()) => self.live[i] = false,
                    Err(e) => self.warn(format!("removing the irqfd of GSI {}: {e}", self.gsis[i])),
                }
            }
        }
    }

    /// The guest drives these changes: once at warn level, then at debug level.
    fn warn(&self, msg: String) {
        self.warned.warn(format_args!("{}: {msg}", self.what));
    }
}
