//! The root bus: which function answers a configuration access.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use thiserror::Error;

use super::PciDevice;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PciRootError {
    #[error("PCI slot {0:02x}.0 is already taken")]
    Taken(u8),
    #[error("no free PCI slot on bus 0 (32 in all)")]
    Full,
}

/// Bus, device, function and register of one configuration access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    /// Byte offset in the function's configuration space (below 4096).
    pub offset: u16,
}

/// Bus 0, function 0 of each slot. Other buses and functions read as absent.
#[derive(Default)]
pub struct PciRoot {
    slots: RwLock<BTreeMap<u8, Arc<dyn PciDevice>>>,
}

impl PciRoot {
    /// Puts `device` in slot `slot` (0..32).
    pub fn insert(&self, slot: u8, device: Arc<dyn PciDevice>) -> Result<(), PciRootError> {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        if slot >= 32 {
            return Err(PciRootError::Full);
        }
        if slots.contains_key(&slot) {
            return Err(PciRootError::Taken(slot));
        }
        slots.insert(slot, device);
        Ok(())
    }

    /// The lowest free slot, if any (a device's interrupt routing depends on its slot,
    /// so it may need to be known before the device is made).
    pub fn free_slot(&self) -> Option<u8> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        (0..32u8).find(|s| !slots.contains_key(s))
    }

    /// Puts `device` in the lowest free slot and returns it.
    pub fn add(&self, device: Arc<dyn PciDevice>) -> Result<u8, PciRootError> {
        let slot = self.free_slot().ok_or(PciRootError::Full)?;
        self.insert(slot, device).map(|()| slot)
    }

    fn find(&self, a: PciAddress) -> Option<Arc<dyn PciDevice>> {
        if a.bus != 0 || a.function != 0 {
            return None;
        }
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.get(&a.device).cloned()
    }

    /// The dword at `a` (offset rounded down to 4); all-ones where no function is.
    pub fn read(&self, a: PciAddress) -> u32 {
        match self.find(a) {
            Some(d) => d.config_read(a.offset & !3),
            None => u32::MAX,
        }
    }

    /// A write of 1, 2 or 4 bytes inside one dword; dropped where no function is.
    pub fn write(&self, a: PciAddress, data: &[u8]) {
        if let Some(d) = self.find(a) {
            d.config_write(a.offset, data);
        }
    }
}
