//! Building an arm64 Linux guest's VM, up to vCPUs ready to run: RAM from 1 GiB, the
//! kernel at the start of RAM, the initramfs and the device tree at the top of the
//! first RAM range, the vCPUs (then the GIC, which KVM sizes by them), and the
//! platform devices on MMIO: the 16550 console, the boot timer and pvpanic.

use granule_arch::aarch64::boot::layout::{
    BOOT_TIMER, BOOT_TIMER_MAGIC, GIC_DIST, GIC_ITS, GIC_REDIST, MAX_VCPUS, PVPANIC,
    PVPANIC_REG_LEN, SPI_COUNT, UART, UART_SPI,
};
use granule_arch::aarch64::boot::{place, DeviceTree, GicLayout};
use granule_devices::pvpanic::PVPANIC_LEN;
use granule_devices::serial::SERIAL_PORT_LEN;

use super::{kernel, vcpu};
use crate::console::OutputQueue;
use crate::kvm::KvmHandle;
use crate::linux::backend::Prepared;
use crate::linux::files::{open_initrd, read_into, Initrd};
use crate::linux::platform::Platform;
use crate::linux::{BootError, LinuxConfig};
use crate::memory::GuestRam;
use crate::vm::Vm;

const PAGE: u64 = 4096;
/// arm64's COMMAND_LINE_SIZE, NUL included.
const CMDLINE_MAX: usize = 2048;

const GIC: GicLayout = GicLayout {
    dist: GIC_DIST,
    redist: GIC_REDIST,
    its: GIC_ITS,
};

/// The user's files, opened and checked before any memory is mapped.
struct Inputs {
    image: kernel::KernelImage,
    initrd: Option<Initrd>,
}

fn open_inputs(cfg: &LinuxConfig) -> Result<Inputs, BootError> {
    if cfg.cmdline.contains('\0') {
        return Err(BootError::CmdlineNul);
    }
    if cfg.cmdline.len() >= CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong {
            len: cfg.cmdline.len(),
            max: CMDLINE_MAX - 1,
        });
    }
    // `--kernel-decompress` and `--kernel-cache` were refused before KVM was opened
    // (`check_options`).
    let image = kernel::open(&cfg.kernel)?;
    let initrd = open_initrd(cfg.initrd.as_ref())?;
    Ok(Inputs { image, initrd })
}

/// Checks the files, maps RAM, creates the VM, its vCPUs, GIC and devices, loads the
/// kernel, initramfs and device tree, and sets the boot vCPU's registers.
pub fn prepare(
    kvm: &KvmHandle,
    cfg: &LinuxConfig,
    out: OutputQueue,
) -> Result<Prepared, BootError> {
    if cfg.vcpus > kvm.max_vcpus() {
        return Err(BootError::TooManyVcpus(cfg.vcpus, kvm.max_vcpus()));
    }
    if cfg.vcpus as u64 > MAX_VCPUS {
        return Err(BootError::TooManyRedistributors(cfg.vcpus, MAX_VCPUS));
    }
    if !cfg.devices.is_empty() {
        return Err(BootError::Unsupported(
            "PCI passthrough (--device) on arm64",
        ));
    }
    let mut inputs = open_inputs(cfg)?;
    let map = &granule_arch::address_map::AARCH64;
    // Below RAM's base lie the platform devices: a zone placed there is an error.
    let ram = GuestRam::with_base(
        &cfg.zones,
        map.ram_base,
        &[(0, map.ram_base)],
        crate::probe::host_memory(),
    )?;
    let memory_mapped = std::time::Instant::now();
    let first = ram.ranges()[0];
    let header = inputs.image.header;
    // Saturating: a span past 64 bits does not fit, and place() says so.
    let kernel_span = header.text_offset.saturating_add(header.image_size);
    let at = place(
        first.gpa,
        first.end(),
        kernel_span,
        inputs.initrd.as_ref().map(|i| i.2),
    )?;
    let mut vm = Vm::new(kvm, ram)?;
    let entry = inputs.image.load(vm.ram(), at.kernel_base)?;
    if let (Some((path, file, len)), Some((start, _))) = (&mut inputs.initrd, at.initrd) {
        read_into(vm.ram(), start, "initramfs", path, file, *len)?;
    }
    let kernel_loaded = std::time::Instant::now();
    for _ in 0..cfg.vcpus {
        vm.create_vcpu()?;
    }
    let mut mpidrs = Vec::with_capacity(cfg.vcpus);
    for (index, fd) in vm.vcpus().iter().enumerate() {
        vcpu::init(vm.fd(), fd, index)?;
        mpidrs.push(vcpu::mpidr(fd, index)?);
    }
    // After every vCPU, as KVM requires; the UART's irqfd needs the GIC's routes.
    vm.create_gic(&GIC, SPI_COUNT)?;
    let devices = add_devices(&mut vm, out, cfg.boot_marker.clone())?;
    let tree = DeviceTree {
        cpus: mpidrs,
        memory: vm.ram().ranges().iter().map(|r| (r.gpa, r.size)).collect(),
        cmdline: &cfg.cmdline,
        initrd: at.initrd,
        gic: GIC,
        uart: (UART, UART_SPI),
        pvpanic: (PVPANIC.0, PVPANIC_REG_LEN),
        rng_seed: rng_seed(),
    };
    vm.ram().write(at.fdt, &tree.build()?)?;
    if let Some(boot) = vm.vcpu(0) {
        vcpu::set_boot_regs(boot, entry, at.fdt)?;
    }
    Ok(Prepared {
        vm,
        platform: devices,
        format: inputs.image.format(),
        executed: vec![(entry, entry + header.image_size)],
        guest_page_size: header.page_size.unwrap_or(PAGE),
        passthrough: Default::default(),
        decompression: None,
        cache_store: None,
        marks: super::super::backend::SetupMarks {
            memory_mapped,
            kernel_loaded,
        },
    })
}

/// 32 bytes from the host's RNG for the device tree's `rng-seed`; zeros if the host
/// has none to give (the guest then seeds itself, only later).
fn rng_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    // SAFETY: getrandom writes at most `seed.len()` bytes into the live buffer.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), libc::GRND_NONBLOCK) };
    if n != seed.len() as isize {
        tracing::debug!("no random seed for the guest's device tree");
        seed = [0; 32];
    }
    seed
}

/// The console UART, the boot timer and pvpanic on the MMIO bus. Power-off and reset
/// come from PSCI through KVM as vCPU exits, so there is no power device.
fn add_devices(
    vm: &mut Vm,
    out: OutputQueue,
    marker: Option<String>,
) -> Result<Platform, BootError> {
    let p = Platform::new(vm, out, UART_SPI, BOOT_TIMER_MAGIC, marker)?;
    let mmio = vm.mmio();
    mmio.insert(UART.0, SERIAL_PORT_LEN, p.serial.clone())?;
    mmio.insert(BOOT_TIMER.0, 1, p.boot_timer.clone())?;
    mmio.insert(PVPANIC.0, PVPANIC_LEN, p.pvpanic.clone())?;
    Ok(p)
}
