//! The device manager on the host's /dev/kvm: device windows (a PCI BAR's trapped parts
//! on the bus and its mapped part in a memslot) added, moved and removed while a vCPU
//! runs, checked against KVM itself.

// The built-in guest programs exist for x86_64 only so far.
#![cfg(target_arch = "x86_64")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use granule_arch::Program;
use granule_devices::pci::{
    Bar, BarKind, Header, HostBridge, PciConfigIo, PciFunction, PciRoot, PCI_CONFIG_IO_LEN,
};
use granule_devices::{Access, BusDevice};
use granule_vmm::memory::mmap::AlignedMmap;
use granule_vmm::memory::{Backing, ZoneConfig};
use granule_vmm::programs::{launch, launch_with, RunConfig};
use granule_vmm::vcpu::VcpuEvent;
use granule_vmm::vcpu::VcpuOutcome;
use kvm_bindings::kvm_userspace_memory_region;

const MIB: u64 = 1 << 20;

/// Remembers the last write: a BAR's trapped register block.
#[derive(Default)]
struct Registers(Mutex<Option<(u64, u8)>>);

impl BusDevice for Registers {
    fn read(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0x5a);
    }
    fn write(&self, offset: u64, data: &[u8]) {
        *self.0.lock().unwrap() = Some((offset, data[0]));
    }
}

/// Whether KVM already has a memslot covering `[gpa, gpa + size)`: a probe slot there
/// is refused with EEXIST, else it is added and deleted again.
fn kvm_has_memory_at(vm: &kvm_ioctls::VmFd, gpa: u64, size: u64, hva: u64) -> bool {
    const PROBE_SLOT: u32 = 500;
    let region = |size| kvm_userspace_memory_region {
        slot: PROBE_SLOT,
        flags: 0,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: hva,
    };
    // SAFETY: `hva..hva+size` is a live mapping of the test that outlives the probe
    // slot, which is deleted (size 0) right after it is added.
    match unsafe { vm.set_user_memory_region(region(size)) } {
        Err(e) if e.errno() == libc::EEXIST => true,
        Err(e) => panic!("probe slot at {gpa:#x}: {e}"),
        Ok(()) => {
            // SAFETY: deleting the probe slot reads no memory.
            unsafe { vm.set_user_memory_region(region(0)) }.unwrap();
            false
        }
    }
}

/// A VM whose one vCPU runs the spin program until stopped: changes made to it happen
/// while a vCPU runs.
fn spinning_vm(kvm: &granule_vmm::kvm::KvmHandle) -> granule_vmm::programs::Launched {
    let cfg = RunConfig {
        program: Program::Spin,
        vcpus: 1,
        zones: vec![ZoneConfig::new(64 * MIB, Backing::Anon4k)],
        timeout: None,
        progress: false,
    };
    launch(kvm, &cfg, std::io::sink()).unwrap()
}

#[test]
fn a_device_window_moves_its_bus_ranges_and_memslot_while_a_vcpu_runs() {
    if !common::kvm_available("a_device_window_moves_its_bus_ranges_and_memslot_while_a_vcpu_runs")
    {
        return;
    }
    let kvm = common::kvm();
    let mut l = spinning_vm(&kvm);
    let dm = l.running.devices().clone();
    let ram_slots = l.running.ram().slots().len() as u32;

    // A 4 MiB BAR: registers trapped at offset 0, 2 MiB of memory mapped at offset 2 MiB.
    let (bar, moved_to) = {
        let mut res = dm.resources();
        let a = res.mmio32.allocate_natural(4 * MIB).unwrap();
        let b = res.mmio32.allocate_natural(4 * MIB).unwrap();
        (a, b)
    };
    assert_eq!(bar % (4 * MIB), 0, "naturally aligned");
    let memory =
        Arc::new(AlignedMmap::new(Backing::Anon4k, 2 * MIB as usize, 2 * MIB as usize, 0).unwrap());
    let hva = memory.as_ptr() as u64;
    let regs = Arc::new(Registers::default());
    dm.mmio().insert(bar, 0x1000, regs.clone()).unwrap();
    let slot = dm
        .map_memory(bar + 2 * MIB, 2 * MIB, hva, memory.clone())
        .unwrap();
    assert_eq!(slot, ram_slots, "the first free memslot id after RAM's");
    assert!(kvm_has_memory_at(
        l.running.fd(),
        bar + 2 * MIB,
        2 * MIB,
        hva
    ));

    dm.move_window(bar, 4 * MIB, moved_to).unwrap();

    // The bus range moved with its offset...
    assert_eq!(dm.mmio().write(moved_to + 8, &[7]), Access::Claimed);
    assert_eq!(*regs.0.lock().unwrap(), Some((8, 7)));
    assert_eq!(dm.mmio().write(bar + 8, &[9]), Access::Unclaimed);
    // ...and so did the memslot, as KVM sees it.
    assert_eq!(dm.memslot_at(moved_to + 2 * MIB), Some(slot));
    assert!(kvm_has_memory_at(
        l.running.fd(),
        moved_to + 2 * MIB,
        2 * MIB,
        hva
    ));
    assert!(!kvm_has_memory_at(
        l.running.fd(),
        bar + 2 * MIB,
        2 * MIB,
        hva
    ));

    // The guest never stopped.
    assert!(l
        .running
        .next_event(Duration::ZERO)
        .is_none_or(|e| !matches!(e, granule_vmm::vcpu::VcpuEvent::Exited { .. })));

    // Removed, the memslot id is free for the next device memory.
    dm.unmap_memory(moved_to + 2 * MIB).unwrap();
    assert!(!kvm_has_memory_at(
        l.running.fd(),
        moved_to + 2 * MIB,
        2 * MIB,
        hva
    ));
    let again = dm.map_memory(bar + 2 * MIB, 2 * MIB, hva, memory).unwrap();
    assert_eq!(again, slot, "memslot ids are reused");
    // A window onto memory already mapped is refused and leaves everything in place.
    assert!(dm.move_window(moved_to, 4 * MIB, bar).is_err());
    assert!(dm.mmio().claims_any(moved_to, 0x1000));
    assert_eq!(dm.memslot_at(bar + 2 * MIB), Some(again));

    assert_eq!(l.running.stop().unwrap(), vec![VcpuOutcome::Stopped]);
}

/// The PCI address write is coalesced (KVM buffers it in its ring instead of exiting),
/// yet the data read that follows sees it: the ring is drained before the read's exit
/// is handled. Were it drained after, the read would use the old address (0, not
/// enabled) and return all-ones.
#[test]
fn a_coalesced_pci_address_write_reaches_the_bridge_before_the_data_read() {
    if !common::kvm_available(
        "a_coalesced_pci_address_write_reaches_the_bridge_before_the_data_read",
    ) {
        return;
    }
    let kvm = common::kvm();
    let root = Arc::new(PciRoot::default());
    root.insert(0, Arc::new(HostBridge::default())).unwrap();
    let io = Arc::new(PciConfigIo::new(root));
    let cfg = RunConfig {
        // Enable bit, bus 0, device 0, function 0, register 0: vendor and device ids.
        program: Program::PciConfigRead {
            address: 0x8000_0000,
        },
        vcpus: 1,
        zones: vec![ZoneConfig::new(64 * MIB, Backing::Anon4k)],
        timeout: Some(Duration::from_secs(60)),
        progress: false,
    };
    let mut l = launch_with(
        &kvm,
        &cfg,
        std::io::sink(),
        vec![(0xcf8, PCI_CONFIG_IO_LEN, io)],
    )
    .unwrap();
    let mut values = Vec::new();
    let exit = l
        .running
        .wait(None, Duration::from_millis(100), |e| {
            if let Some(VcpuEvent::Report { value, .. }) = e {
                values.push(*value);
            }
        })
        .unwrap();
    assert_eq!(exit.outcomes, vec![VcpuOutcome::Done { code: 0 }]);
    assert_eq!(
        values,
        vec![0x0008_1b36],
        "device:vendor of the host bridge"
    );
    if kvm.kvm.check_extension(kvm_ioctls::Cap::CoalescedPio) {
        assert_eq!(
            l.running.coalesced_writes(),
            Some(1),
            "the address write went through the ring"
        );
    }
}

/// A guest reprogramming a BAR moves its memslot: configuration writes go through the
/// 0xCF8/0xCFC ports on the VM's bus (the path a guest's take), the function reports
/// the move, and the device manager moves the memory; KVM's own memslots show it.
#[test]
fn reprogramming_a_bar_through_config_space_moves_its_memslot() {
    if !common::kvm_available("reprogramming_a_bar_through_config_space_moves_its_memslot") {
        return;
    }
    let kvm = common::kvm();
    let mut l = spinning_vm(&kvm);
    let dm = l.running.devices().clone();
    dm.add_pci_host((0xe000_0000, 0xe010_0000), true).unwrap();
    let (bar, to) = {
        let mut res = dm.resources();
        (
            res.mmio32.allocate_natural(2 * MIB).unwrap(),
            res.mmio32.allocate_natural(2 * MIB).unwrap(),
        )
    };
    let memory =
        Arc::new(AlignedMmap::new(Backing::Anon4k, 2 * MIB as usize, 2 * MIB as usize, 0).unwrap());
    let hva = memory.as_ptr() as u64;
    let slot = dm.map_memory(bar, 2 * MIB, hva, memory).unwrap();
    let header = Header {
        vendor: 0x1af4,
        device: 0x1110,
        class: (0x05, 0x00, 0x00),
        revision: 1,
    };
    let function = PciFunction::new(
        header,
        &[(
            0,
            Bar {
                kind: BarKind::Mem32,
                size: 2 * MIB,
                addr: bar,
            },
        )],
        dm.bar_mover(),
    )
    .unwrap();
    let dev = dm.pci().add(Arc::new(function)).unwrap();
    let pio = dm.pio().clone();
    let at = |reg: u32| ((1u32 << 31) | (u32::from(dev) << 11) | reg).to_le_bytes();
    let write = |reg: u32, v: u32| {
        pio.write(0xcf8, &at(reg));
        pio.write(0xcfc, &v.to_le_bytes());
    };
    // As a guest does it: decoding off, size the BAR, write the new address, decoding on.
    write(0x04, 0);
    write(0x10, u32::MAX);
    pio.write(0xcf8, &at(0x10));
    let mut mask = [0u8; 4];
    pio.read(0xcfc, &mut mask);
    assert_eq!(u32::from_le_bytes(mask), !(2 * MIB as u32 - 1));
    write(0x10, to as u32);
    assert!(
        kvm_has_memory_at(l.running.fd(), bar, 2 * MIB, hva),
        "not yet moved"
    );
    write(0x04, 0x2);
    assert_eq!(dm.memslot_at(to), Some(slot));
    assert!(kvm_has_memory_at(l.running.fd(), to, 2 * MIB, hva));
    assert!(!kvm_has_memory_at(l.running.fd(), bar, 2 * MIB, hva));
    assert_eq!(l.running.stop().unwrap(), vec![VcpuOutcome::Stopped]);
}

/// Device memory switched off (a passthrough device whose memory decoding the guest
/// turned off) leaves KVM, moves with its window while off, and comes back in KVM at
/// the new place when switched on.
#[test]
fn device_memory_switched_off_leaves_kvm_and_returns_where_its_window_is() {
    if !common::kvm_available(
        "device_memory_switched_off_leaves_kvm_and_returns_where_its_window_is",
    ) {
        return;
    }
    let kvm = common::kvm();
    let mut l = spinning_vm(&kvm);
    let dm = l.running.devices().clone();
    let (bar, moved_to) = {
        let mut res = dm.resources();
        let a = res.mmio32.allocate_natural(2 * MIB).unwrap();
        let b = res.mmio32.allocate_natural(2 * MIB).unwrap();
        (a, b)
    };
    let memory =
        Arc::new(AlignedMmap::new(Backing::Anon4k, 2 * MIB as usize, 2 * MIB as usize, 0).unwrap());
    let hva = memory.as_ptr() as u64;
    let slot = dm.map_memory(bar, 2 * MIB, hva, memory).unwrap();
    let fd = l.running.fd();
    assert!(kvm_has_memory_at(fd, bar, 2 * MIB, hva));
    let switch = dm.window_switch();
    switch(bar, 2 * MIB, false);
    assert!(
        !kvm_has_memory_at(fd, bar, 2 * MIB, hva),
        "off: gone from KVM"
    );
    assert_eq!(dm.memslot_at(bar), Some(slot), "but still the device's");
    dm.move_window(bar, 2 * MIB, moved_to).unwrap();
    assert!(
        !kvm_has_memory_at(fd, moved_to, 2 * MIB, hva),
        "moved while off"
    );
    switch(moved_to, 2 * MIB, true);
    assert!(
        kvm_has_memory_at(fd, moved_to, 2 * MIB, hva),
        "on again, at the new place"
    );
    assert!(!kvm_has_memory_at(fd, bar, 2 * MIB, hva));
    // Off again, then removed: nothing left in KVM, and the id is free.
    switch(moved_to, 2 * MIB, false);
    dm.unmap_memory(moved_to).unwrap();
    assert_eq!(dm.resources().memslots.allocate().unwrap(), slot);
    assert_eq!(l.running.stop().unwrap(), vec![VcpuOutcome::Stopped]);
}

/// The VM's GSI routing table as KVM takes it: the irqchip's default routes plus MSI
/// routes, with an irqfd on an MSI GSI and a resampling irqfd on a PCI INTx input
/// (what passthrough registers), changed and removed again.
#[test]
fn kvm_takes_the_routing_table_with_msi_routes_and_intx_irqfds() {
    if !common::kvm_available("kvm_takes_the_routing_table_with_msi_routes_and_intx_irqfds") {
        return;
    }
    use granule_vmm::memory::GuestRam;
    use vmm_sys_util::eventfd::EventFd;
    let kvm = common::kvm();
    let zones = [ZoneConfig::new(64 * MIB, Backing::Anon4k)];
    let ram = GuestRam::new(&zones, granule_arch::address_map::X86_64.ram_holes, 0).unwrap();
    let mut vm = granule_vmm::vm::Vm::new(&kvm, ram).unwrap();
    assert!(vm.devices().irq_routes().is_none(), "no irqchip, no table");
    vm.create_irqchip().unwrap();
    let routes = vm.devices().irq_routes().expect("a table with the irqchip");
    let gsi = vm.devices().resources().gsis.allocate().unwrap();
    routes.set_msi(gsi, Some((0xfee0_0000, 0x4041))).unwrap();
    let msi = EventFd::new(0).unwrap();
    vm.fd().register_irqfd(&msi, gsi).unwrap();
    // The guest re-aims the vector while it is live.
    routes.set_msi(gsi, Some((0xfee0_1000, 0x4042))).unwrap();
    vm.fd().unregister_irqfd(&msi, gsi).unwrap();
    routes.set_msi(gsi, None).unwrap();
    // A level-triggered INTx input keeps its I/O APIC route: a resampling irqfd on it.
    let (trigger, resample) = (EventFd::new(0).unwrap(), EventFd::new(0).unwrap());
    let intx = granule_arch::x86_64::boot::acpi_pci::intx_gsi(1, 0);
    vm.fd()
        .register_irqfd_with_resample(&trigger, &resample, intx)
        .unwrap();
    trigger.write(1).unwrap();
}
