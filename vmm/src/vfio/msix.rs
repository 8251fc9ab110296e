//! MSI-X of a passed-through function. The guest programs vectors in a table inside a
//! BAR; the table is trapped (never mmapped) and emulated here. Each vector has a GSI
//! of its own, an MSI route to where the guest pointed it, and an eventfd that VFIO
//! signals when the device fires the vector and that KVM injects through an irqfd, so
//! an interrupt never passes through granule. A masked vector (or a masked or disabled
//! function) has its irqfd removed: the eventfd keeps counting, and KVM delivers the
//! pending interrupt as soon as the irqfd is back.

use std::sync::{Arc, Mutex, MutexGuard};

use kvm_ioctls::VmFd;
use vfio_ioctls::VfioDevice;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::devices::irq_routes::GsiRoutes;

const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_MASK: u16 = 1 << 14;
const ENTRY_SIZE: u64 = 16;
const VECTOR_MASKED: u32 = 1;

/// The MSI-X capability's layout, read from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixCap {
    /// Offset of the capability in configuration space.
    pub at: u16,
    pub vectors: u16,
    pub table_bar: usize,
    pub table_offset: u64,
    pub pba_bar: usize,
    pub pba_offset: u64,
}

impl MsixCap {
    /// The capability at `at`, from its three dwords.
    pub fn parse(at: u16, dwords: [u32; 3]) -> Self {
        let control = (dwords[0] >> 16) as u16;
        Self {
            at,
            vectors: (control & 0x7ff) + 1,
            table_bar: (dwords[1] & 7) as usize,
            table_offset: u64::from(dwords[1] & !7),
            pba_bar: (dwords[2] & 7) as usize,
            pba_offset: u64::from(dwords[2] & !7),
        }
    }

    /// Bytes of the table.
    pub fn table_len(&self) -> u64 {
        u64::from(self.vectors) * ENTRY_SIZE
    }

    /// Bytes of the pending-bit array.
    pub fn pba_len(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }
}

struct Vector {
    address: u64,
    data: u32,
    control: u32,
    gsi: u32,
    event: EventFd,
    /// The irqfd is registered (the vector is live).
    live: bool,
}

struct State {
    enabled: bool,
    masked: bool,
    vectors: Vec<Vector>,
    /// VFIO has the eventfds (MSI-X enabled on the device).
    armed: bool,
}

pub struct Msix {
    cap: MsixCap,
    device: Arc<VfioDevice>,
    vm: Arc<VmFd>,
    routes: Arc<GsiRoutes>,
    state: Mutex<State>,
    warned: std::sync::atomic::AtomicBool,
}

impl Msix {
    /// MSI-X for `cap` with one GSI per vector from `gsis`.
    pub fn new(
        cap: MsixCap,
        device: Arc<VfioDevice>,
        vm: Arc<VmFd>,
        routes: Arc<GsiRoutes>,
        gsis: &[u32],
    ) -> std::io::Result<Self> {
        let vectors = gsis
            .iter()
            .map(|&gsi| {
                Ok(Vector {
                    address: 0,
                    data: 0,
                    control: VECTOR_MASKED,
                    gsi,
                    event: EventFd::new(EFD_NONBLOCK)?,
                    live: false,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            cap,
            device,
            vm,
            routes,
            state: Mutex::new(State {
                enabled: false,
                masked: false,
                vectors,
                armed: false,
            }),
            warned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn cap(&self) -> &MsixCap {
        &self.cap
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The message control register as the guest sees it.
    pub fn control(&self) -> u16 {
        let s = self.lock();
        (self.cap.vectors - 1)
            | if s.enabled { CONTROL_ENABLE } else { 0 }
            | if s.masked { CONTROL_MASK } else { 0 }
    }

    pub fn write_control(&self, value: u16) {
        let mut s = self.lock();
        s.enabled = value & CONTROL_ENABLE != 0;
        s.masked = value & CONTROL_MASK != 0;
        self.sync(&mut s);
    }

    /// A read of the table at `offset` (4 or 8 bytes, aligned).
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        let s = self.lock();
        let mut dwords = Vec::new();
        for k in 0..data.len().div_ceil(4) as u64 {
            let off = offset + 4 * k;
            let v =
                s.vectors
                    .get((off / ENTRY_SIZE) as usize)
                    .map_or(0, |v| match off % ENTRY_SIZE {
                        0 => v.address as u32,
                        4 => (v.address >> 32) as u32,
                        8 => v.data,
                        _ => v.control,
                    });
            dwords.extend_from_slice(&v.to_le_bytes());
        }
        let n = data.len().min(dwords.len());
        data[..n].copy_from_slice(&dwords[..n]);
    }

    /// A write to the table at `offset` (4 or 8 bytes, aligned).
    pub fn table_write(&self, offset: u64, data: &[u8]) {
        let mut s = self.lock();
        for (k, chunk) in data.chunks(4).enumerate() {
            let mut b = [0u8; 4];
            b[..chunk.len()].copy_from_slice(chunk);
            let value = u32::from_le_bytes(b);
            let off = offset + 4 * k as u64;
            let Some(v) = s.vectors.get_mut((off / ENTRY_SIZE) as usize) else {
                continue;
            };
            match off % ENTRY_SIZE {
                0 => v.address = (v.address & !0xffff_ffff) | u64::from(value),
                4 => v.address = (v.address & 0xffff_ffff) | (u64::from(value) << 32),
                8 => v.data = value,
                _ => v.control = value & VECTOR_MASKED,
            }
        }
        self.sync(&mut s);
    }

    /// Brings VFIO, the routes and the irqfds in line with the guest's settings.
    fn sync(&self, s: &mut State) {
        if s.enabled && !s.armed {
            let fds: Vec<&EventFd> = s.vectors.iter().map(|v| &v.event).collect();
            match self.device.enable_msix(fds) {
                Ok(()) => s.armed = true,
                Err(e) => self.warn(format!("cannot enable MSI-X on the device: {e}")),
            }
        }
        for i in 0..s.vectors.len() {
            let want = s.enabled && !s.masked && s.vectors[i].control & VECTOR_MASKED == 0;
            let v = &mut s.vectors[i];
            if want {
                // The route follows the table even while the vector is live.
                if let Err(e) = self.routes.set_msi(v.gsi, Some((v.address, v.data))) {
                    self.warn(e.to_string());
                    continue;
                }
                if !v.live {
                    match self.vm.register_irqfd(&v.event, v.gsi) {
                        Ok(()) => v.live = true,
                        Err(e) => self.warn(format!("KVM_IRQFD for GSI {}: {e}", v.gsi)),
                    }
                }
            } else if v.live {
                match self.vm.unregister_irqfd(&v.event, v.gsi) {
                    Ok(()) => v.live = false,
                    Err(e) => self.warn(format!("removing the irqfd of GSI {}: {e}", v.gsi)),
                }
            }
        }
        if !s.enabled && s.armed {
            if let Err(e) = self.device.disable_msix() {
                self.warn(format!("cannot disable MSI-X on the device: {e}"));
            }
            s.armed = false;
        }
    }

    /// The guest drives these changes: warn once, then at debug level.
    fn warn(&self, msg: String) {
        if self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!("MSI-X: {msg}");
        } else {
            tracing::warn!("MSI-X: {msg}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_says_where_table_and_pba_are() {
        // QEMU's NVMe: 65 vectors, table in BAR 0 at 0x2000, PBA in BAR 0 at 0x3000.
        let c = MsixCap::parse(0x40, [0x0040_0011, 0x2000, 0x3000]);
        assert_eq!((c.vectors, c.table_bar, c.table_offset), (65, 0, 0x2000));
        assert_eq!((c.pba_bar, c.pba_offset), (0, 0x3000));
        assert_eq!((c.table_len(), c.pba_len()), (65 * 16, 16));
        let c = MsixCap::parse(0x70, [0x0007_0011, 0x0000_0004, 0x0000_0804]);
        assert_eq!(
            (c.vectors, c.table_bar, c.pba_bar, c.pba_offset),
            (8, 4, 4, 0x800)
        );
    }
}
