//! A VM: the KVM VM fd, its RAM, I/O buses and resources, and its vCPUs, built in the
//! order KVM requires and then started as [`RunningVm`].

#[cfg(target_arch = "aarch64")]
mod gic;
mod resources;
mod running;

use std::sync::Arc;

use granule_devices::Bus;
use kvm_ioctls::{VcpuFd, VmFd};
use thiserror::Error;
use vmm_sys_util::eventfd::EventFd;

use crate::devices::DeviceManager;
use crate::kvm::KvmHandle;
use crate::memory::{GuestRam, MemoryError};
use crate::vcpu::{CoalescedRing, ThreadsError, Vcpu, VcpuThreads};

pub use resources::{ResourceError, VmResources};
pub use running::{RunningVm, VmExit};

#[derive(Debug, Error)]
pub enum VmError {
    #[error("KVM_CREATE_VM failed: {0}")]
    Create(kvm_ioctls::Error),
    #[error("{what} failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("laying out the VM's resources: {0}")]
    Resources(#[from] resources::ResourceError),
    #[error("KVM_CREATE_VCPU {index} failed: {source}")]
    CreateVcpu {
        index: usize,
        source: kvm_ioctls::Error,
    },
    /// A set-up step came after the vCPUs it has to precede (a granule bug).
    #[error("{what} must come before any vCPU is created")]
    AfterVcpus { what: &'static str },
    /// A set-up step came before the vCPUs it has to follow (a granule bug).
    #[error("{what} must come after every vCPU is created")]
    BeforeVcpus { what: &'static str },
    #[error(transparent)]
    Threads(#[from] ThreadsError),
}

fn kvm<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, VmError> {
    r.map_err(|source| VmError::Kvm { what, source })
}

/// A created VM whose vCPUs have not started yet.
pub struct Vm {
    // Field order is drop order: the vCPU and VM fds go before the memory they map.
    vcpus: Vec<VcpuFd>,
    fd: Arc<VmFd>,
    /// Shared with every vCPU thread, so RAM stays mapped while any of them may run.
    ram: Arc<GuestRam>,
    /// The buses, device resources and device memory.
    devices: Arc<DeviceManager>,
    /// Signalled whenever a vCPU thread ends, so an event loop can wait on it.
    exit_notifier: Option<Arc<EventFd>>,
    /// Set when writes to some port range are coalesced.
    ring: Option<Arc<CoalescedRing>>,
}

impl Vm {
    /// Creates the VM and registers `ram` with it.
    pub fn new(kvm_handle: &KvmHandle, ram: GuestRam) -> Result<Self, VmError> {
        Self::with_ipa_bits(kvm_handle, ram, None)
    }

    /// [`Vm::new`] with a guest physical address space of `ipa_bits` on arm64 (None:
    /// KVM's default of 40 bits; ignored on x86, whose size comes from CPUID). The size
    /// sets how many levels KVM's stage-2 tables have.
    pub fn with_ipa_bits(
        kvm_handle: &KvmHandle,
        ram: GuestRam,
        ipa_bits: Option<u32>,
    ) -> Result<Self, VmError> {
        #[cfg(target_arch = "aarch64")]
        let created = match ipa_bits {
            Some(bits) => kvm_handle.kvm.create_vm_with_ipa_size(bits),
            None => kvm_handle.kvm.create_vm(),
        };
        #[cfg(not(target_arch = "aarch64"))]
        let created = {
            let _ = ipa_bits;
            kvm_handle.kvm.create_vm()
        };
        let fd = Arc::new(created.map_err(VmError::Create)?);
        #[cfg(target_arch = "x86_64")]
        kvm(
            "KVM_SET_TSS_ADDR",
            fd.set_tss_address(granule_arch::x86_64::layout::KVM_TSS_ADDR as usize),
        )?;
        ram.register(&fd)?;
        #[cfg(target_arch = "x86_64")]
        let map = &granule_arch::address_map::X86_64;
        #[cfg(target_arch = "aarch64")]
        let map = &granule_arch::address_map::AARCH64;
        let ram_end = ram.ranges().iter().map(|r| r.end()).max().unwrap_or(0);
        let max_slots = u32::try_from(kvm_handle.max_memslots()).unwrap_or(u32::MAX);
        let resources = VmResources::new(map, ram_end, ram.slots().len() as u32, max_slots)?;
        Ok(Self {
            vcpus: Vec::new(),
            devices: Arc::new(DeviceManager::new(fd.clone(), resources)),
            fd,
            ram: Arc::new(ram),
            exit_notifier: None,
            ring: None,
        })
    }

    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    pub fn ram(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    pub fn pio(&self) -> &Bus {
        self.devices.pio()
    }

    pub fn mmio(&self) -> &Bus {
        self.devices.mmio()
    }

    pub fn devices(&self) -> &Arc<DeviceManager> {
        &self.devices
    }

    /// `eventfd` is signalled whenever a vCPU thread ends.
    pub fn notify_exits(&mut self, eventfd: Arc<EventFd>) {
        self.exit_notifier = Some(eventfd);
    }

    fn before_vcpus(&self, what: &'static str) -> Result<(), VmError> {
        if self.vcpus.is_empty() {
            Ok(())
        } else {
            Err(VmError::AfterVcpus { what })
        }
    }

    /// x86's in-kernel irqchip (PIC, I/O APIC, local APICs), which KVM accepts only
    /// before the first vCPU.
    #[cfg(target_arch = "x86_64")]
    pub fn create_irqchip(&mut self) -> Result<(), VmError> {
        self.before_vcpus("KVM_CREATE_IRQCHIP")?;
        kvm("KVM_CREATE_IRQCHIP", self.fd.create_irq_chip())?;
        // KVM's default routes; MSI routes are added to these as devices need them.
        self.devices
            .enable_irq_routing(crate::devices::irq_routes::x86_default_routes());
        Ok(())
    }

    /// Has KVM buffer guest writes to ports `port..port+len` instead of exiting, when it
    /// can; true when it did. Before the vCPUs, which map the ring when they are
    /// created. A device there gets each buffered write at the writing vCPU's next exit
    /// (or another vCPU's), always before that exit's own access: right for a register
    /// whose writes only matter to a later access, like an address latch.
    pub fn coalesce_pio(
        &mut self,
        kvm_handle: &KvmHandle,
        port: u64,
        len: u32,
    ) -> Result<bool, VmError> {
        self.before_vcpus("KVM_REGISTER_COALESCED_MMIO")?;
        if !kvm_handle
            .kvm
            .check_extension(kvm_ioctls::Cap::CoalescedPio)
        {
            return Ok(false);
        }
        kvm(
            "KVM_REGISTER_COALESCED_MMIO",
            self.fd
                .register_coalesced_mmio(kvm_ioctls::IoEventAddress::Pio(port), len),
        )?;
        self.ring = Some(Arc::default());
        Ok(true)
    }

    /// Coalesces writes to the PCI configuration address port (0xCF8): an address latch,
    /// written before every configuration access, whose write matters only to the data
    /// access that follows. Linux's bus scans (early quirks, the AGP aperture check) make
    /// some 16,000 such pairs at boot, so this halves their exits.
    #[cfg(target_arch = "x86_64")]
    pub fn coalesce_pci_config_address(&mut self, kvm_handle: &KvmHandle) -> Result<bool, VmError> {
        self.coalesce_pio(kvm_handle, granule_devices::pci::PCI_CONFIG_IO_BASE, 4)
    }

    /// The coalesced ring, when [`Vm::coalesce_pio`] set one up.
    pub fn coalesced_ring(&self) -> Option<&Arc<CoalescedRing>> {
        self.ring.as_ref()
    }

    /// Creates the next vCPU (ids count up from 0) and returns it for arch set-up.
    pub fn create_vcpu(&mut self) -> Result<&VcpuFd, VmError> {
        let index = self.vcpus.len();
        let mut fd = self
            .fd
            .create_vcpu(index as u64)
            .map_err(|source| VmError::CreateVcpu { index, source })?;
        if self.ring.is_some() {
            kvm(
                "mapping the coalesced I/O ring",
                fd.map_coalesced_mmio_ring(),
            )?;
        }
        self.vcpus.push(fd);
        Ok(&self.vcpus[index])
    }

    /// The vCPUs created so far, in id order.
    pub fn vcpus(&self) -> &[VcpuFd] {
        &self.vcpus
    }

    pub fn vcpu(&self, index: usize) -> Option<&VcpuFd> {
        self.vcpus.get(index)
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// Starts the vCPUs on drivers of the caller's own (`driver(index)` makes each),
    /// without buses: every access comes back to the driver. The VM stays with the
    /// caller, which may change memslots while they run. Each thread holds `keep`.
    pub fn start_drivers<O, D>(
        &mut self,
        mut driver: impl FnMut(usize) -> D,
        keep: Arc<dyn Send + Sync>,
    ) -> Result<VcpuThreads<O>, VmError>
    where
        O: Send + 'static,
        D: FnOnce(&mut Vcpu) -> O + Send + 'static,
    {
        let vcpus = std::mem::take(&mut self.vcpus)
            .into_iter()
            .enumerate()
            .map(|(i, fd)| (Vcpu::new(i, fd, None, true), driver(i)))
            .collect();
        Ok(VcpuThreads::spawn(vcpus, keep)?)
    }

    /// Starts one thread per vCPU. `reports` enables the built-in programs' report
    /// channel.
    pub fn start(self, reports: bool) -> Result<RunningVm, VmError> {
        running::start(self, reports)
    }
}
