//! Building a built-in program's VM and starting its vCPUs.

use std::io::Write;
#[cfg(target_arch = "x86_64")]
use std::sync::Arc;
use std::time::Instant;

use granule_arch::{GuestImage, RamRange};

use super::{RunConfig, RunError};
use crate::kvm::KvmHandle;
use crate::vm::RunningVm;
#[cfg(target_arch = "x86_64")]
use {
    crate::memory::GuestRam,
    crate::vcpu::setup_x86_64,
    crate::vm::Vm,
    granule_arch::x86_64::{layout, programs},
    granule_devices::serial::{SerialPort, SERIAL_PORT_LEN},
    kvm_bindings::KVM_MAX_CPUID_ENTRIES,
};

/// A built-in program whose vCPUs are running.
pub struct Launched {
    pub running: RunningVm,
    pub image: GuestImage,
    pub ram: Vec<RamRange>,
    pub guest_page_size: u64,
    /// When the vCPUs were started.
    pub started: Instant,
}

/// A device to put on the port bus besides the console: (base, length, device).
pub type ExtraDevice = (u64, u64, std::sync::Arc<dyn granule_devices::BusDevice>);

/// Creates the VM for `cfg`, loads the program and starts every vCPU.
pub fn launch(
    kvm: &KvmHandle,
    cfg: &RunConfig,
    console: impl Write + Send + 'static,
) -> Result<Launched, RunError> {
    launch_with(kvm, cfg, console, Vec::new())
}

/// [`launch`], with `extra` devices on the port bus.
#[cfg(not(target_arch = "x86_64"))]
pub fn launch_with(
    _kvm: &KvmHandle,
    _cfg: &RunConfig,
    _console: impl Write + Send + 'static,
    _extra: Vec<ExtraDevice>,
) -> Result<Launched, RunError> {
    Err(RunError::Unsupported(std::env::consts::ARCH))
}

/// [`launch`], with `extra` devices on the port bus.
#[cfg(target_arch = "x86_64")]
pub fn launch_with(
    kvm: &KvmHandle,
    cfg: &RunConfig,
    console: impl Write + Send + 'static,
    extra: Vec<ExtraDevice>,
) -> Result<Launched, RunError> {
    if cfg.vcpus > kvm.max_vcpus() {
        return Err(RunError::TooManyVcpus(cfg.vcpus, kvm.max_vcpus()));
    }
    let guest_ram = GuestRam::new(
        &cfg.zones,
        granule_arch::address_map::X86_64.ram_holes,
        crate::probe::host_memory(),
    )
    .map_err(|e| RunError::Vm(e.into()))?;
    let ram = guest_ram.ranges();
    let supported = kvm
        .kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(RunError::Cpuid)?;
    let guest_page_size = setup_x86_64::guest_page_size(&supported);
    let image = programs::build(&cfg.program, &ram, cfg.vcpus, guest_page_size)?;

    let mut vm = Vm::new(kvm, guest_ram)?;
    for (gpa, bytes) in &image.writes {
        vm.ram().write(*gpa, bytes).map_err(RunError::Load)?;
    }
    vm.pio()
        .insert(
            u64::from(layout::COM1_PORT),
            SERIAL_PORT_LEN,
            Arc::new(SerialPort::new(console)),
        )
        .map_err(RunError::Serial)?;
    for (base, len, device) in extra {
        vm.pio()
            .insert(base, len, device)
            .map_err(RunError::Serial)?;
    }
    vm.coalesce_pci_config_address(kvm)?;
    for index in 0..cfg.vcpus {
        let fd = vm.create_vcpu()?;
        setup_x86_64::configure(fd, &supported, &image, index)
            .map_err(|source| RunError::VcpuSetup { index, source })?;
    }
    let started = Instant::now();
    let running = vm.start(true)?;
    Ok(Launched {
        running,
        image,
        ram,
        guest_page_size,
        started,
    })
}
