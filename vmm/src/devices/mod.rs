//! The device manager: owns the VM's PIO and MMIO buses, its device resources and the
//! memslots of device memory (passthrough BARs), and moves a device's bus range and
//! memslot together when the guest reprograms where it lives. Shared by the VMM and
//! the vCPU threads (a BAR write arrives on a vCPU), so every part locks on its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use granule_devices::pci::{
    BarKind, BarMove, HostBridge, MoveHandler, PciConfigIo, PciConfigMmio, PciRoot, PciRootError,
    PCI_CONFIG_IO_BASE, PCI_CONFIG_IO_LEN,
};
use granule_devices::{Bus, BusError};
use kvm_ioctls::VmFd;
use thiserror::Error;

pub mod irq_routes;

use crate::allocators::IdError;
use crate::memory::memslot::set_memslot;
use crate::vm::VmResources;

#[derive(Debug, Error)]
pub enum DeviceError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Pci(#[from] PciRootError),
    #[error("no memslot for device memory: {0}")]
    Memslot(#[from] IdError),
    #[error("device memory of {size:#x} bytes at {gpa:#x} runs past the end of the address space")]
    Overflow { gpa: u64, size: u64 },
    #[error("device memory at {gpa:#x}..{end:#x} overlaps device memory at {other:#x}")]
    Overlap { gpa: u64, end: u64, other: u64 },
    #[error("no device memory is mapped at {0:#x}")]
    NoRegion(u64),
    #[error(
        "KVM_SET_USER_MEMORY_REGION (slot {slot}, {gpa:#x}, {size:#x} bytes) failed: {source}"
    )]
    Kvm {
        slot: u32,
        gpa: u64,
        size: u64,
        source: kvm_ioctls::Error,
    },
}

/// Called with a window's base and size and whether the device decodes it now.
pub type WindowSwitch = Box<dyn Fn(u64, u64, bool) + Send + Sync>;

/// Device memory the guest reaches without exits: a memslot over a host mapping (a
/// passthrough BAR's mmap).
struct Region {
    slot: u32,
    size: u64,
    hva: u64,
    /// In KVM now; off while the device does not decode memory (the memslot is deleted
    /// and accesses trap to the bus instead).
    enabled: bool,
    /// The host mapping, kept until the memslot is gone.
    _keep: Arc<dyn Send + Sync>,
}

pub struct DeviceManager {
    vm: Arc<VmFd>,
    /// Device memory by guest-physical base. Dropped before the devices: a passthrough
    /// BAR's mmap holds its VFIO device open, which must be closed before its group
    /// can leave the container.
    regions: Mutex<BTreeMap<u64, Region>>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    /// PCI bus 0: the host bridge and the functions added to it.
    pci: Arc<PciRoot>,
    resources: Mutex<VmResources>,
    /// The GSI routing table, once the VM has an in-kernel irqchip.
    routes: Mutex<Option<Arc<irq_routes::GsiRoutes>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a thread panicked holding it; the maps stay consistent
    // because every change is one insert or remove.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DeviceManager {
    pub fn new(vm: Arc<VmFd>, resources: VmResources) -> Self {
        Self {
            vm,
            pio: Arc::new(Bus::new("pio")),
            mmio: Arc::new(Bus::new("mmio")),
            pci: Arc::new(PciRoot::default()),
            resources: Mutex::new(resources),
            regions: Mutex::new(BTreeMap::new()),
            routes: Mutex::new(None),
        }
    }

    /// Starts the GSI routing table with the irqchip's own routes `base` (called when
    /// the in-kernel irqchip is created).
    pub fn enable_irq_routing(&self, base: Vec<(u32, irq_routes::Route)>) {
        *lock(&self.routes) = Some(Arc::new(irq_routes::GsiRoutes::new(self.vm.clone(), base)));
    }

    /// The GSI routing table; None without an in-kernel irqchip.
    pub fn irq_routes(&self) -> Option<Arc<irq_routes::GsiRoutes>> {
        lock(&self.routes).clone()
    }

    /// The VM, for devices that register irqfds.
    pub fn vm(&self) -> &Arc<VmFd> {
        &self.vm
    }

    pub fn pio(&self) -> &Arc<Bus> {
        &self.pio
    }

    pub fn mmio(&self) -> &Arc<Bus> {
        &self.mmio
    }

    pub fn pci(&self) -> &Arc<PciRoot> {
        &self.pci
    }

    /// Puts a host bridge at 00:00.0 and configuration access on the buses: ECAM at
    /// `ecam` (MMIO) and, with `config_ports`, the 0xCF8/0xCFC pair (x86).
    pub fn add_pci_host(&self, ecam: (u64, u64), config_ports: bool) -> Result<(), DeviceError> {
        self.pci.insert(0, Arc::new(HostBridge::default()))?;
        self.mmio.insert(
            ecam.0,
            ecam.1.saturating_sub(ecam.0),
            Arc::new(PciConfigMmio::new(self.pci.clone())),
        )?;
        if config_ports {
            self.pio.insert(
                PCI_CONFIG_IO_BASE,
                PCI_CONFIG_IO_LEN,
                Arc::new(PciConfigIo::new(self.pci.clone())),
            )?;
        }
        Ok(())
    }

    /// The handler a PCI function calls when the guest moves one of its BARs: the
    /// BAR's window follows (bus ranges and device memory for a memory BAR, port
    /// ranges for an I/O BAR). Holds the manager weakly: the manager owns the function.
    pub fn bar_mover(self: &Arc<Self>) -> MoveHandler {
        let dm = Arc::downgrade(self);
        // The guest chooses BAR addresses: warn once per function, then only at debug
        // level, so a guest cannot flood the log.
        let warned = crate::warn_once::WarnOnce::default();
        Box::new(move |m: &BarMove| {
            let Some(dm) = dm.upgrade() else {
                return;
            };
            let r = match m.kind {
                BarKind::Io => dm
                    .pio
                    .relocate_window(m.from, m.size, m.to)
                    .map(|_| ())
                    .map_err(DeviceError::from),
                _ => dm.move_window(m.from, m.size, m.to),
            };
            if let Err(e) = r {
                // The guest asked for an impossible place (over another device): the
                // BAR register says one thing and the mapping another, as on hardware
                // with overlapping BARs; the guest's accesses there go nowhere useful.
                let msg = format!(
                    "BAR {} of a PCI function cannot move to {:#x}: {e}",
                    m.index, m.to
                );
                warned.warn(msg);
            }
        })
    }

    /// MMIO windows, ports, memslot ids and GSIs, for devices added at any time.
    pub fn resources(&self) -> MutexGuard<'_, VmResources> {
        lock(&self.resources)
    }

    fn set_slot(&self, slot: u32, gpa: u64, size: u64, hva: u64) -> Result<(), DeviceError> {
        // SAFETY: `hva..hva+size` is a live mapping held by the region's `_keep` until
        // after this slot is deleted (size 0 deletes, and reads no memory).
        unsafe { set_memslot(&self.vm, slot, gpa, size, hva) }.map_err(|source| DeviceError::Kvm {
            slot,
            gpa,
            size,
            source,
        })
    }

    fn check_free(
        regions: &BTreeMap<u64, Region>,
        gpa: u64,
        size: u64,
        except: &[u64],
    ) -> Result<(), DeviceError> {
        let end = gpa
            .checked_add(size)
            .ok_or(DeviceError::Overflow { gpa, size })?;
        let clash = regions
            .iter()
            .filter(|(base, _)| !except.contains(base))
            .find(|(base, r)| **base < end && gpa < **base + r.size);
        match clash {
            Some((other, _)) => Err(DeviceError::Overlap {
                gpa,
                end,
                other: *other,
            }),
            None => Ok(()),
        }
    }

    /// Maps `size` bytes of host memory at `hva` into the guest at `gpa` in a memslot of
    /// its own; `keep` holds the host mapping until the memslot is removed.
    pub fn map_memory(
        &self,
        gpa: u64,
        size: u64,
        hva: u64,
        keep: Arc<dyn Send + Sync>,
    ) -> Result<u32, DeviceError> {
        let mut regions = lock(&self.regions);
        Self::check_free(&regions, gpa, size, &[])?;
        let slot = self.resources().memslots.allocate()?;
        if let Err(e) = self.set_slot(slot, gpa, size, hva) {
            let _ = self.resources().memslots.free(slot);
            return Err(e);
        }
        regions.insert(
            gpa,
            Region {
                slot,
                size,
                hva,
                enabled: true,
                _keep: keep,
            },
        );
        Ok(slot)
    }

    /// Removes the device memory at `gpa`: KVM drops the memslot first, then the host
    /// mapping may go (no vCPU can reach it any more), and the slot id is free again.
    pub fn unmap_memory(&self, gpa: u64) -> Result<(), DeviceError> {
        let mut regions = lock(&self.regions);
        let r = regions.get(&gpa).ok_or(DeviceError::NoRegion(gpa))?;
        if r.enabled {
            self.set_slot(r.slot, gpa, 0, 0)?;
        }
        let r = regions.remove(&gpa).ok_or(DeviceError::NoRegion(gpa))?;
        self.resources().memslots.free(r.slot)?;
        Ok(())
    }

    /// Puts the device memory inside `[base, base + size)` into KVM (`on`) or takes it
    /// out, so the guest's accesses trap to the bus. A passthrough BAR whose device has
    /// memory decoding off must not stay mapped: VFIO fails host faults there, which
    /// KVM would turn into a vCPU error instead of the all-ones a guest expects.
    pub fn set_window_enabled(&self, base: u64, size: u64, on: bool) -> Result<(), DeviceError> {
        let mut regions = lock(&self.regions);
        let end = base
            .checked_add(size)
            .ok_or(DeviceError::Overflow { gpa: base, size })?;
        for (gpa, r) in regions.range_mut(base..end) {
            if r.enabled == on || *gpa + r.size > end {
                continue;
            }
            let (len, hva) = if on { (r.size, r.hva) } else { (0, 0) };
            self.set_slot(r.slot, *gpa, len, hva)?;
            r.enabled = on;
        }
        Ok(())
    }

    /// The handler a passthrough function calls when its memory decoding turns on or
    /// off, with each memory BAR's window. Holds the manager weakly.
    pub fn window_switch(self: &Arc<Self>) -> WindowSwitch {
        let dm = Arc::downgrade(self);
        Box::new(move |base, size, on| {
            if let Some(dm) = dm.upgrade() {
                if let Err(e) = dm.set_window_enabled(base, size, on) {
                    tracing::warn!(
                        "device memory at {base:#x}: cannot turn it {}: {e}",
                        if on { "on" } else { "off" }
                    );
                }
            }
        })
    }

    /// The memslot of the device memory at `gpa`, if any.
    pub fn memslot_at(&self, gpa: u64) -> Option<u32> {
        lock(&self.regions).get(&gpa).map(|r| r.slot)
    }

    /// Moves a device window (a PCI BAR): every MMIO bus range and every piece of
    /// device memory inside `[base, base + size)` keeps its offset and moves so the
    /// window starts at `new_base`. Either all of it moves or none: a memslot KVM
    /// refuses to move puts back the memslots moved so far and the bus ranges.
    pub fn move_window(&self, base: u64, size: u64, new_base: u64) -> Result<(), DeviceError> {
        let mut regions = lock(&self.regions);
        let end = base
            .checked_add(size)
            .ok_or(DeviceError::Overflow { gpa: base, size })?;
        new_base.checked_add(size).ok_or(DeviceError::Overflow {
            gpa: new_base,
            size,
        })?;
        let mut inside: Vec<u64> = regions
            .range(base..end)
            .filter(|(b, r)| **b + r.size <= end)
            .map(|(b, _)| *b)
            .collect();
        // Moved one memslot at a time, the pieces go front first in the direction of
        // travel, so none lands on a piece not yet moved.
        if new_base > base {
            inside.reverse();
        }
        let target = |b: u64| new_base + (b - base);
        // The whole target window must be free of device memory that stays put.
        Self::check_free(&regions, new_base, size, &inside)?;
        self.mmio.relocate_window(base, size, new_base)?;
        let mut moved = Vec::new();
        for b in inside {
            let r = &regions[&b];
            // KVM moves a memslot in place when only its guest address changes; a
            // switched-off one is only moved in the map.
            if !r.enabled {
                moved.push(b);
                continue;
            }
            if let Err(e) = self.set_slot(r.slot, target(b), r.size, r.hva) {
                for m in moved.into_iter().rev() {
                    let r: &Region = &regions[&m];
                    if r.enabled {
                        let _ = self.set_slot(r.slot, m, r.size, r.hva);
                    }
                }
                let _ = self.mmio.relocate_window(new_base, size, base);
                return Err(e);
            }
            moved.push(b);
        }
        // All out, then all in: a target may be where another piece was.
        let pieces: Vec<(u64, Region)> = moved
            .into_iter()
            .filter_map(|b| regions.remove(&b).map(|r| (target(b), r)))
            .collect();
        regions.extend(pieces);
        Ok(())
    }
}
