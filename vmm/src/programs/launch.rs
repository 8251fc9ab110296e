//! Building a built-in program's VM and starting its vCPUs.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use granule_arch::{GuestImage, RamRange};
use granule_devices::serial::{SerialPort, SERIAL_PORT_LEN};

use super::{RunConfig, RunError};
use crate::kvm::KvmHandle;
use crate::memory::GuestRam;
use crate::vm::{RunningVm, Vm};
#[cfg(target_arch = "x86_64")]
use {
    crate::vcpu::setup_x86_64,
    granule_arch::x86_64::{layout, programs},
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

/// A device to put on the console's bus besides the console: (base, length, device).
pub type ExtraDevice = (u64, u64, std::sync::Arc<dyn granule_devices::BusDevice>);

/// Creates the VM for `cfg`, loads the program and starts every vCPU.
pub fn launch(
    kvm: &KvmHandle,
    cfg: &RunConfig,
    console: impl Write + Send + 'static,
) -> Result<Launched, RunError> {
    launch_with(kvm, cfg, console, Vec::new())
}

/// [`launch`], with `extra` devices on the console's bus (x86: port I/O, arm64: MMIO).
pub fn launch_with(
    kvm: &KvmHandle,
    cfg: &RunConfig,
    console: impl Write + Send + 'static,
    extra: Vec<ExtraDevice>,
) -> Result<Launched, RunError> {
    if cfg.vcpus > kvm.max_vcpus() {
        return Err(RunError::TooManyVcpus(cfg.vcpus, kvm.max_vcpus()));
    }
    build_and_start(kvm, cfg, console, extra)
}

/// arm64: the VM, the program and the console for [`launch_with`].
#[cfg(target_arch = "aarch64")]
fn build_and_start(
    kvm: &KvmHandle,
    cfg: &RunConfig,
    console: impl Write + Send + 'static,
    extra: Vec<ExtraDevice>,
) -> Result<Launched, RunError> {
    use granule_arch::aarch64::{layout, programs};
    // Built-in programs keep arm64 RAM from 0 and out of the [3 GiB, 4 GiB) report
    // and console page, as x86 does.
    let guest_ram = GuestRam::new(
        &cfg.zones,
        &[(layout::MMIO_HOLE_START, layout::MMIO_HOLE_END)],
        crate::probe::host_memory(),
    )
    .map_err(|e| RunError::Vm(e.into()))?;
    let ram = guest_ram.ranges();
    // 1 GiB stage-1 blocks: the tables stay tiny, and arm64 stage-2 leaf sizes do not
    // depend on the guest's stage-1 sizes.
    let image = programs::build(&cfg.program, &ram, cfg.vcpus, 1 << 30)?;
    let mut vm = Vm::new(kvm, guest_ram)?;
    let console: Arc<dyn granule_devices::BusDevice> = Arc::new(SerialPort::new(console));
    load(&vm, &image, vm.mmio(), (layout::UART_MMIO, console), extra)?;
    for _ in 0..cfg.vcpus {
        vm.create_vcpu()?;
    }
    for (index, fd) in vm.vcpus().iter().enumerate() {
        crate::vcpu::setup_aarch64::configure(fd, vm.fd(), &image, index)
            .map_err(|source| RunError::VcpuSetup { index, source })?;
    }
    let guest_page_size = image.guest_page_size;
    start(vm, image, ram, guest_page_size)
}

/// Copies the image into RAM and puts the console UART and `extra` on `bus`.
fn load(
    vm: &Vm,
    image: &GuestImage,
    bus: &granule_devices::Bus,
    console: (u64, Arc<dyn granule_devices::BusDevice>),
    extra: Vec<ExtraDevice>,
) -> Result<(), RunError> {
    for (gpa, bytes) in &image.writes {
        vm.ram().write(*gpa, bytes).map_err(RunError::Load)?;
    }
    bus.insert(console.0, SERIAL_PORT_LEN, console.1)
        .map_err(RunError::Serial)?;
    for (base, len, device) in extra {
        bus.insert(base, len, device).map_err(RunError::Serial)?;
    }
    Ok(())
}

/// Starts every vCPU of `vm` on the built-in programs' driver.
fn start(
    vm: Vm,
    image: GuestImage,
    ram: Vec<RamRange>,
    guest_page_size: u64,
) -> Result<Launched, RunError> {
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

/// x86_64: the VM, the program and the console for [`launch_with`].
#[cfg(target_arch = "x86_64")]
fn build_and_start(
    kvm: &KvmHandle,
    cfg: &RunConfig,
    console: impl Write + Send + 'static,
    extra: Vec<ExtraDevice>,
) -> Result<Launched, RunError> {
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
    let console: Arc<dyn granule_devices::BusDevice> = Arc::new(SerialPort::new(console));
    load(
        &vm,
        &image,
        vm.pio(),
        (u64::from(layout::COM1_PORT), console),
        extra,
    )?;
    vm.coalesce_pci_config_address(kvm)?;
    for index in 0..cfg.vcpus {
        let fd = vm.create_vcpu()?;
        setup_x86_64::configure(fd, &supported, &image, index)
            .map_err(|source| RunError::VcpuSetup { index, source })?;
    }
    start(vm, image, ram, guest_page_size)
}
