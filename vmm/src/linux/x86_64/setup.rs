//! Building an x86_64 Linux guest's VM, up to vCPUs ready to run: RAM around the
//! 32-bit hole, the in-kernel irqchip and PIT (before any vCPU, as KVM requires),
//! ACPI tables, the zero page, the platform devices and each vCPU's state.

use std::sync::Arc;

use granule_arch::x86_64::boot::acpi_pci::PciWindows;
use granule_arch::x86_64::boot::e820::E820Entry;
use granule_arch::x86_64::boot::layout::SLEEP_TYPE_S5;
use granule_arch::x86_64::boot::layout::{
    ports, ACPI_ADDR, CMDLINE_ADDR, COM1_IRQ, HIMEM_START, ZERO_PAGE_ADDR,
};
use granule_arch::x86_64::boot::{acpi, e820, tables};
use granule_arch::x86_64::layout::{COM1_PORT, MMIO_HOLE_START, PCI_ECAM_BASE, PCI_ECAM_SIZE};
use granule_devices::power::{acpi_power_len, AcpiPower, I8042Reset, I8042_LEN};
use granule_devices::pvpanic::PVPANIC_LEN;
use granule_devices::serial::SERIAL_PORT_LEN;
use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};

use super::{kernel, vcpu, zero_page};
use crate::console::OutputQueue;
use crate::kvm::KvmHandle;
use crate::linux::backend::Prepared;
use crate::linux::files::{open_initrd, Initrd};
use crate::linux::platform::Platform;
use crate::linux::{ms, BootError, LinuxConfig};
use crate::memory::GuestRam;
use crate::vm::Vm;

/// Offset of the ACPI reset register from the sleep control register.
const RESET_OFFSET: u64 = (ports::ACPI_RESET - ports::ACPI_SLEEP_CONTROL) as u64;

/// ECAM for bus 0, as `[start, end)`.
const ECAM: (u64, u64) = (PCI_ECAM_BASE, PCI_ECAM_BASE + PCI_ECAM_SIZE);

fn kvm_step<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, BootError> {
    r.map_err(|error| BootError::Kvm { what, error })
}

/// The user's files, opened and checked before any memory is mapped.
struct Inputs {
    image: kernel::KernelImage,
    initrd: Option<Initrd>,
    cmdline: Vec<u8>,
}

fn open_inputs(cfg: &LinuxConfig) -> Result<Inputs, BootError> {
    let mut image = kernel::open(&cfg.kernel, &cfg.kernel_options)?;
    let initrd = open_initrd(cfg.initrd.as_ref())?;
    let cmdline = kernel::cmdline_bytes(&cfg.cmdline, image.cmdline_max())?;
    // Decompressing is the slow part: after every cheaper check.
    image.unpack(&cfg.kernel_options)?;
    Ok(Inputs {
        image,
        initrd,
        cmdline,
    })
}

/// Checks the files, maps RAM, creates the VM and its devices, loads the kernel and
/// configures every vCPU. Console output goes to `out`.
pub fn prepare(
    kvm: &KvmHandle,
    cfg: &LinuxConfig,
    out: OutputQueue,
) -> Result<Prepared, BootError> {
    if cfg.vcpus > kvm.max_vcpus() {
        return Err(BootError::TooManyVcpus(cfg.vcpus, kvm.max_vcpus()));
    }
    let apic_ids = u8::try_from(cfg.vcpus)
        .ok()
        .filter(|n| *n < 255)
        .ok_or(BootError::TooManyApicIds(cfg.vcpus))?;
    // Every file check comes before any memory is mapped.
    let mut inputs = open_inputs(cfg)?;
    let decompression = inputs.image.decompression.clone();
    let cache_store = inputs.image.cache_store.take();
    let ram = GuestRam::new(
        &cfg.zones,
        granule_arch::address_map::X86_64.ram_holes,
        crate::probe::host_memory(),
    )?;
    let memory_mapped = std::time::Instant::now();
    let mut vm = Vm::new(kvm, ram)?;
    // The irqchip and PIT before any vCPU, as KVM requires.
    vm.create_irqchip()?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    kvm_step("KVM_CREATE_PIT2", vm.fd().create_pit2(pit))?;
    tracing::debug!(
        "VM and irqchip created in {:.1} ms",
        ms(memory_mapped.elapsed())
    );
    let loaded = load(&vm, inputs, apic_ids)?;
    let kernel_loaded = std::time::Instant::now();
    let devices = add_devices(&mut vm, out, cfg.boot_marker.clone())?;
    let passthrough = crate::vfio::attach_all(&vm, &cfg.devices)?;
    let supported = kvm_step(
        "KVM_GET_SUPPORTED_CPUID",
        kvm.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES),
    )?;
    let msrs = kvm_step("KVM_GET_MSR_INDEX_LIST", kvm.kvm.get_msr_index_list())?;
    vm.coalesce_pci_config_address(kvm)?;
    for index in 0..cfg.vcpus {
        let fd = vm.create_vcpu()?;
        vcpu::configure(
            fd,
            &supported,
            msrs.as_slice(),
            index,
            cfg.vcpus,
            loaded.entry,
        )?;
    }
    Ok(Prepared {
        vm,
        platform: devices,
        format: loaded.format,
        executed: vec![(HIMEM_START, loaded.end)],
        guest_page_size: crate::vcpu::setup_x86_64::guest_page_size(&supported),
        passthrough,
        decompression,
        cache_store,
        marks: super::super::backend::SetupMarks {
            memory_mapped,
            kernel_loaded,
        },
    })
}

/// Loads the kernel, the initramfs and the command line, and writes the firmware
/// tables, the zero page and the early page tables.
fn load(vm: &Vm, inputs: Inputs, apic_ids: u8) -> Result<kernel::LoadedKernel, BootError> {
    let Inputs {
        mut image,
        mut initrd,
        cmdline,
    } = inputs;
    let ram = vm.ram();
    let ranges = ram.ranges();
    let mut e820 = e820::build(&ranges, image.min_high_ram())?;
    // ECAM is reserved in the memory map too: Linux uses MMCONFIG only where firmware
    // reserves it.
    e820.push(E820Entry {
        addr: PCI_ECAM_BASE,
        size: PCI_ECAM_SIZE,
        kind: e820::E820_RESERVED,
    });
    let t = std::time::Instant::now();
    let loaded = image.load(ram)?;
    tracing::debug!("kernel written into guest RAM in {:.1} ms", ms(t.elapsed()));
    let t = std::time::Instant::now();
    let initrd_at = match &mut initrd {
        Some((path, file, len)) => {
            let at = kernel::place_initrd(
                *len,
                loaded.end,
                ranges[0].end(),
                loaded.initrd_limit.min(MMIO_HOLE_START),
            )?;
            crate::linux::files::read_into(ram, at, "initramfs", path, file, *len)?;
            // place_initrd keeps it below 4 GiB, so both fit the zero page's fields.
            (at as u32, *len as u32)
        }
        None => (0, 0),
    };
    tracing::debug!(
        "initramfs written into guest RAM in {:.1} ms",
        ms(t.elapsed())
    );
    ram.write(CMDLINE_ADDR, &cmdline)?;
    let acpi = acpi::build(ACPI_ADDR, apic_ids, Some(&pci_windows(&ranges)));
    ram.write(acpi.base, &acpi.bytes)?;
    let zp = zero_page::build(&zero_page::BootFacts {
        setup_header: loaded.setup_header,
        cmdline_addr: CMDLINE_ADDR as u32,
        initrd: initrd_at,
        rsdp_addr: ACPI_ADDR,
        e820,
    });
    zero_page::write(ram.guest_memory(), &zp, ZERO_PAGE_ADDR).map_err(BootError::ZeroPage)?;
    let (gdt_at, gdt, _) = tables::gdt_bytes();
    ram.write(gdt_at, &gdt)?;
    let pt = tables::page_tables()?;
    ram.write(pt.base, &pt.bytes)?;
    let (stub_at, stub) = tables::reset_vector_stub();
    ram.write(stub_at, &stub)?;
    Ok(loaded)
}

/// What the PCI host bridge decodes: the 32-bit window without ECAM, the 64-bit window
/// above RAM, and ECAM.
fn pci_windows(ram: &[granule_arch::RamRange]) -> PciWindows {
    let map = &granule_arch::address_map::X86_64;
    let ram_end = ram.iter().map(|r| r.end()).max().unwrap_or(0);
    let mmio64 = map
        .mmio64_start(ram_end)
        .map_or((0, 0), |start| (start, start + map.mmio64_size));
    PciWindows {
        mmio32: map.mmio32_ranges(),
        mmio64,
        ecam: ECAM,
    }
}

/// The console UART on COM1, ACPI power, the i8042 reset line, the boot timer and
/// pvpanic.
fn add_devices(
    vm: &mut Vm,
    out: OutputQueue,
    marker: Option<String>,
) -> Result<Platform, BootError> {
    let p = Platform::new(vm, out, COM1_IRQ, ports::BOOT_TIMER_MAGIC, marker)?;
    let pio = vm.pio();
    pio.insert(u64::from(COM1_PORT), SERIAL_PORT_LEN, p.serial.clone())?;
    pio.insert(
        u64::from(ports::ACPI_SLEEP_CONTROL),
        acpi_power_len(RESET_OFFSET),
        Arc::new(AcpiPower::new(
            p.sink.clone(),
            SLEEP_TYPE_S5,
            RESET_OFFSET,
            ports::ACPI_RESET_VALUE,
        )),
    )?;
    pio.insert(
        u64::from(ports::I8042_DATA),
        I8042_LEN,
        Arc::new(I8042Reset::new(p.sink.clone())),
    )?;
    pio.insert(u64::from(ports::BOOT_TIMER), 1, p.boot_timer.clone())?;
    pio.insert(u64::from(ports::PVPANIC), PVPANIC_LEN, p.pvpanic.clone())?;
    vm.devices().add_pci_host(ECAM, true)?;
    Ok(p)
}
