//! An address bus (port I/O or MMIO) that routes guest accesses to devices.
//!
//! Guests control every address and length that reaches here, so the bus checks that an
//! access lies wholly inside one device's range. Anything else is unclaimed: reads see
//! all-ones (what real hardware returns for a master abort), writes are dropped, and the
//! first such access per address is logged so a misbehaving guest cannot flood the log.
//!
//! Devices can be added, removed and moved while vCPUs run (a guest reprogramming a PCI
//! BAR moves the device's range): the map is behind a lock that an access holds only to
//! find its device, never while the device runs, so a device may even move itself from
//! inside its own write.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;

#[cfg(test)]
mod tests;

/// A device on a bus. Offsets are relative to the start of the device's range, and the
/// access `[offset, offset + data.len())` is guaranteed to lie inside the range.
pub trait BusDevice: Send + Sync {
    fn read(&self, offset: u64, data: &mut [u8]);
    fn write(&self, offset: u64, data: &[u8]);
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    #[error("device range at {base:#x} has zero length")]
    Empty { base: u64 },
    #[error("device range {base:#x}+{len:#x} wraps around the address space")]
    Overflow { base: u64, len: u64 },
    #[error("device range {base:#x}+{len:#x} overlaps the device at {other:#x}")]
    Overlap { base: u64, len: u64, other: u64 },
    #[error("no device starts at {base:#x}")]
    NoDevice { base: u64 },
}

/// What became of an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Claimed,
    Unclaimed,
}

/// How many distinct unclaimed addresses are logged before the bus goes quiet.
const MAX_LOGGED_UNCLAIMED: usize = 64;

#[derive(Clone)]
struct Entry {
    len: u64,
    device: Arc<dyn BusDevice>,
}

type DeviceMap = BTreeMap<u64, Entry>;

/// A bus: named for log messages ("pio", "mmio").
pub struct Bus {
    name: &'static str,
    devices: RwLock<DeviceMap>,
    logged: Mutex<HashSet<u64>>,
}

/// Checks that `[base, base + len)` is a valid range free in `map`; returns its end.
fn check_free(map: &DeviceMap, base: u64, len: u64) -> Result<u64, BusError> {
    if len == 0 {
        return Err(BusError::Empty { base });
    }
    let end = base
        .checked_add(len)
        .ok_or(BusError::Overflow { base, len })?;
    if let Some((&other, e)) = map.range(..end).next_back() {
        if other + e.len > base {
            return Err(BusError::Overlap { base, len, other });
        }
    }
    Ok(end)
}

impl Bus {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            devices: RwLock::new(BTreeMap::new()),
            logged: Mutex::new(HashSet::new()),
        }
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, DeviceMap> {
        // Every update below leaves the map consistent before it could panic.
        self.devices.read().unwrap_or_else(|p| p.into_inner())
    }

    fn map_mut(&self) -> std::sync::RwLockWriteGuard<'_, DeviceMap> {
        self.devices.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `[base, base + len)` for `device`.
    pub fn insert(&self, base: u64, len: u64, device: Arc<dyn BusDevice>) -> Result<(), BusError> {
        let mut map = self.map_mut();
        check_free(&map, base, len)?;
        map.insert(base, Entry { len, device });
        Ok(())
    }

    /// Releases the range that starts at `base`; returns its device.
    pub fn remove(&self, base: u64) -> Result<Arc<dyn BusDevice>, BusError> {
        self.map_mut()
            .remove(&base)
            .map(|e| e.device)
            .ok_or(BusError::NoDevice { base })
    }

    /// Moves the range that starts at `base` to start at `new_base`, in one step: no
    /// access sees the device at both places or at neither.
    pub fn relocate(&self, base: u64, new_base: u64) -> Result<(), BusError> {
        let mut map = self.map_mut();
        let entry = map.remove(&base).ok_or(BusError::NoDevice { base })?;
        if let Err(e) = check_free(&map, new_base, entry.len) {
            map.insert(base, entry);
            return Err(e);
        }
        map.insert(new_base, entry);
        Ok(())
    }

    /// Moves every range that lies inside the window `[base, base + len)` by the same
    /// distance, so the window starts at `new_base` (a PCI BAR with several trapped
    /// parts moves as one). All or nothing, in one step; returns how many ranges moved.
    pub fn relocate_window(&self, base: u64, len: u64, new_base: u64) -> Result<usize, BusError> {
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overflow { base, len })?;
        new_base.checked_add(len).ok_or(BusError::Overflow {
            base: new_base,
            len,
        })?;
        let mut map = self.map_mut();
        let inside: Vec<u64> = map
            .range(base..end)
            .filter(|(&b, e)| b + e.len <= end)
            .map(|(&b, _)| b)
            .collect();
        let moved: Vec<(u64, Entry)> = inside
            .iter()
            .filter_map(|b| map.remove(b).map(|e| (*b, e)))
            .collect();
        // Offsets inside the window are kept, so no moved range can overlap another.
        let target = |b: u64| new_base + (b - base);
        if let Some(err) = moved
            .iter()
            .find_map(|(b, e)| check_free(&map, target(*b), e.len).err())
        {
            map.extend(moved);
            return Err(err);
        }
        let count = moved.len();
        map.extend(moved.into_iter().map(|(b, e)| (target(b), e)));
        Ok(count)
    }

    /// True when any device's range overlaps `[base, base + len)`.
    pub fn claims_any(&self, base: u64, len: u64) -> bool {
        let end = base.saturating_add(len);
        self.map()
            .range(..end)
            .next_back()
            .is_some_and(|(&b, e)| b + e.len > base)
    }

    /// The device whose range holds all of `[addr, addr + len)`, with the offset. The
    /// lock is released before the device is called.
    fn find(&self, addr: u64, len: usize) -> Option<(Arc<dyn BusDevice>, u64)> {
        let map = self.map();
        let (&base, entry) = map.range(..=addr).next_back()?;
        let offset = addr - base;
        let end = offset.checked_add(len as u64)?;
        (end <= entry.len).then(|| (entry.device.clone(), offset))
    }

    pub fn read(&self, addr: u64, data: &mut [u8]) -> Access {
        match self.find(addr, data.len()) {
            Some((device, offset)) => {
                device.read(offset, data);
                Access::Claimed
            }
            None => {
                data.fill(0xff);
                self.log_unclaimed("read", addr, data.len());
                Access::Unclaimed
            }
        }
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Access {
        match self.find(addr, data.len()) {
            Some((device, offset)) => {
                device.write(offset, data);
                Access::Claimed
            }
            None => {
                self.log_unclaimed("write", addr, data.len());
                Access::Unclaimed
            }
        }
    }

    fn log_unclaimed(&self, what: &str, addr: u64, len: usize) {
        let Ok(mut logged) = self.logged.lock() else {
            return;
        };
        if logged.len() > MAX_LOGGED_UNCLAIMED || !logged.insert(addr) {
            return;
        }
        if logged.len() > MAX_LOGGED_UNCLAIMED {
            tracing::debug!(
                bus = self.name,
                "more unclaimed addresses; no longer logging them"
            );
        } else {
            // Guests probe absent legacy devices as a matter of course: debug, not warn.
            tracing::debug!(
                bus = self.name,
                "guest {what} of {len} byte(s) at {addr:#x}: no device claims it ({})",
                if what == "read" {
                    "reads as all-ones"
                } else {
                    "dropped"
                }
            );
        }
    }
}
