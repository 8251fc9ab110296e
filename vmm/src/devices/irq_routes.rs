//! The VM's GSI routing table: where each GSI KVM knows is delivered. KVM replaces the
//! whole table on every KVM_SET_GSI_ROUTING, so the table lives here, whole: the
//! in-kernel irqchip's default pins (x86: PIC and I/O APIC, as KVM sets them up) plus
//! one MSI route per passed-through vector, changed as the guest programs them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    kvm_irq_routing_msi, KvmIrqRouting, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RouteError {
    #[error("KVM_SET_GSI_ROUTING with {count} routes failed: {source}")]
    Kvm {
        count: usize,
        source: kvm_ioctls::Error,
    },
    #[error("cannot build a routing table of {0} entries")]
    Table(usize),
}

/// Where a GSI goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A pin of an in-kernel interrupt controller (x86: 0 PIC master, 1 PIC slave,
    /// 2 I/O APIC).
    Irqchip { chip: u32, pin: u32 },
    /// A message-signalled interrupt as the guest programmed it.
    Msi { address: u64, data: u32 },
}

/// x86's default routes, as KVM creates them with the in-kernel irqchip: GSIs 0-15 to
/// the PICs and the I/O APIC, 16-23 to the I/O APIC.
pub fn x86_default_routes() -> Vec<(u32, Route)> {
    let mut r = Vec::new();
    for gsi in 0..24 {
        if gsi < 16 {
            let (chip, pin) = if gsi < 8 { (0, gsi) } else { (1, gsi - 8) };
            r.push((gsi, Route::Irqchip { chip, pin }));
        }
        r.push((gsi, Route::Irqchip { chip: 2, pin: gsi }));
    }
    r
}

fn entry(gsi: u32, route: Route) -> kvm_irq_routing_entry {
    let (type_, u) = match route {
        Route::Irqchip { chip, pin } => (
            KVM_IRQ_ROUTING_IRQCHIP,
            kvm_irq_routing_entry__bindgen_ty_1 {
                irqchip: kvm_irq_routing_irqchip { irqchip: chip, pin },
            },
        ),
        Route::Msi { address, data } => (
            KVM_IRQ_ROUTING_MSI,
            kvm_irq_routing_entry__bindgen_ty_1 {
                msi: kvm_irq_routing_msi {
                    address_lo: address as u32,
                    address_hi: (address >> 32) as u32,
                    data,
                    ..Default::default()
                },
            },
        ),
    };
    kvm_irq_routing_entry {
        gsi,
        type_,
        flags: 0,
        pad: 0,
        u,
    }
}

pub struct GsiRoutes {
    vm: Arc<VmFd>,
    /// The irqchip's fixed routes (a GSI may have several).
    base: Vec<(u32, Route)>,
    /// MSI routes by GSI.
    msi: Mutex<BTreeMap<u32, Route>>,
}

impl GsiRoutes {
    pub fn new(vm: Arc<VmFd>, base: Vec<(u32, Route)>) -> Self {
        Self {
            vm,
            base,
            msi: Mutex::new(BTreeMap::new()),
        }
    }

    /// Routes `gsi` as an MSI (`None`: removes it), and hands KVM the new table.
    pub fn set_msi(&self, gsi: u32, msi: Option<(u64, u32)>) -> Result<(), RouteError> {
        let mut routes = self.msi.lock().unwrap_or_else(|p| p.into_inner());
        let before = routes.get(&gsi).copied();
        match msi {
            Some((address, data)) => routes.insert(gsi, Route::Msi { address, data }),
            None => routes.remove(&gsi),
        };
        if routes.get(&gsi).copied() == before {
            return Ok(());
        }
        let entries: Vec<kvm_irq_routing_entry> = self
            .base
            .iter()
            .copied()
            .chain(routes.iter().map(|(g, r)| (*g, *r)))
            .map(|(g, r)| entry(g, r))
            .collect();
        let table =
            KvmIrqRouting::from_entries(&entries).map_err(|_| RouteError::Table(entries.len()))?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(|source| RouteError::Kvm {
                count: entries.len(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_defaults_match_kvms_own_table() {
        let r = x86_default_routes();
        // 16 GSIs on a PIC and the I/O APIC, 8 on the I/O APIC alone.
        assert_eq!(r.len(), 16 * 2 + 8);
        assert!(r.contains(&(4, Route::Irqchip { chip: 0, pin: 4 })));
        assert!(r.contains(&(4, Route::Irqchip { chip: 2, pin: 4 })));
        assert!(r.contains(&(9, Route::Irqchip { chip: 1, pin: 1 })));
        assert!(r.contains(&(23, Route::Irqchip { chip: 2, pin: 23 })));
        let e = entry(
            30,
            Route::Msi {
                address: 0x1_fee0_1000,
                data: 0x4041,
            },
        );
        assert_eq!((e.gsi, e.type_), (30, KVM_IRQ_ROUTING_MSI));
    }
}
