//! A VM: the KVM VM fd, its RAM and I/O buses, and its running vCPU threads.

mod resources;
mod running;

use std::sync::Arc;

use granule_devices::Bus;
use kvm_ioctls::{VcpuFd, VmFd};
use thiserror::Error;
use vmm_sys_util::eventfd::EventFd;

use crate::kvm::KvmHandle;
use crate::memory::{GuestRam, MemoryError};

pub use resources::{ResourceError, VmResources};
pub use running::{RunningVm, VmExit, STOP_TIMEOUT};

#[derive(Debug, Error)]
pub enum VmError {
    #[error("KVM_CREATE_VM failed: {0}")]
    Create(kvm_ioctls::Error),
    #[error("KVM_SET_TSS_ADDR failed: {0}")]
    TssAddr(kvm_ioctls::Error),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("laying out the VM's resources: {0}")]
    Resources(#[from] resources::ResourceError),
    #[error("KVM_CREATE_VCPU {index} failed: {source}")]
    CreateVcpu {
        index: usize,
        source: kvm_ioctls::Error,
    },
    #[error("cannot install the vCPU kick signal handler: {0}")]
    KickHandler(vmm_sys_util::errno::Error),
    #[error("cannot start the thread for vCPU {index}: {source}")]
    Thread {
        index: usize,
        source: std::io::Error,
    },
    #[error("vCPU {index} did not stop within {waited_ms} ms; its thread was left running, and the guest's memory stays mapped until it ends")]
    StopTimeout { index: usize, waited_ms: u128 },
}

/// A created VM whose vCPUs have not started yet.
pub struct Vm {
    // Field order is drop order: the VM fd goes before the memory it maps.
    pub fd: VmFd,
    /// Shared with every vCPU thread, so RAM stays mapped while any of them may run.
    pub ram: Arc<GuestRam>,
    pub pio: Bus,
    pub mmio: Bus,
    /// MMIO windows, ports, memslot ids and GSIs for devices, from the arch's map.
    pub resources: VmResources,
    /// Signalled whenever a vCPU thread ends, so an event loop can wait on it instead
    /// of polling.
    pub exit_notifier: Option<Arc<EventFd>>,
    /// Set when writes to some port range are coalesced: vCPUs drain KVM's shared
    /// ring, one at a time, before each KVM_RUN (every vCPU fd must have mapped it).
    pub coalesced_ring: Option<Arc<std::sync::Mutex<()>>>,
}

impl Vm {
    /// Creates the VM and registers `ram` with it.
    pub fn new(kvm: &KvmHandle, ram: GuestRam) -> Result<Self, VmError> {
        let fd = kvm.kvm.create_vm().map_err(VmError::Create)?;
        #[cfg(target_arch = "x86_64")]
        fd.set_tss_address(granule_arch::x86_64::layout::KVM_TSS_ADDR as usize)
            .map_err(VmError::TssAddr)?;
        ram.register(&fd)?;
        #[cfg(target_arch = "x86_64")]
        let map = &granule_arch::address_map::X86_64;
        #[cfg(target_arch = "aarch64")]
        let map = &granule_arch::address_map::AARCH64;
        let ram_end = ram.ranges().iter().map(|r| r.end()).max().unwrap_or(0);
        let max_slots = u32::try_from(kvm.max_memslots()).unwrap_or(u32::MAX);
        let resources = VmResources::new(map, ram_end, ram.slots().len() as u32, max_slots)?;
        Ok(Self {
            fd,
            ram: Arc::new(ram),
            pio: Bus::new("pio"),
            mmio: Bus::new("mmio"),
            resources,
            exit_notifier: None,
            coalesced_ring: None,
        })
    }

    pub fn create_vcpu(&self, index: usize) -> Result<VcpuFd, VmError> {
        self.fd
            .create_vcpu(index as u64)
            .map_err(|source| VmError::CreateVcpu { index, source })
    }

    /// Starts one thread per vCPU. `report_port` enables the built-in programs' report
    /// channel.
    pub fn start(self, vcpus: Vec<VcpuFd>, report_port: Option<u16>) -> Result<RunningVm, VmError> {
        running::start(self, vcpus, report_port)
    }

    pub(crate) fn into_parts(self) -> VmParts {
        VmParts {
            fd: self.fd,
            ram: self.ram,
            pio: Arc::new(self.pio),
            mmio: Arc::new(self.mmio),
            resources: self.resources,
            exit_notifier: self.exit_notifier,
            coalesced_ring: self.coalesced_ring,
        }
    }
}

/// A [`Vm`] taken apart for its vCPU threads.
pub(crate) struct VmParts {
    pub fd: VmFd,
    pub ram: Arc<GuestRam>,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub resources: VmResources,
    pub exit_notifier: Option<Arc<EventFd>>,
    pub coalesced_ring: Option<Arc<std::sync::Mutex<()>>>,
}
