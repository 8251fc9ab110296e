//! arm64's in-kernel interrupt controller: a GICv3 with an ITS. KVM sizes the
//! redistributors by the vCPUs that exist when the GIC is initialised, so the GIC is
//! created after every vCPU and before the first KVM_RUN (the reverse of x86's irqchip).
//! The order within follows what KVM accepts: the distributor's and redistributors'
//! addresses and the interrupt count, then the ITS at its address, then the GIC's
//! initialisation.

use granule_arch::aarch64::boot::GicLayout;
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, KVM_DEV_ARM_VGIC_CTRL_INIT,
    KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
    KVM_VGIC_ITS_ADDR_TYPE, KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::DeviceFd;

use super::{kvm, Vm, VmError};

/// Interrupt IDs below the first SPI: 16 SGIs and 16 PPIs.
const PRIVATE_IRQS: u32 = 32;

fn create(vm: &kvm_ioctls::VmFd, type_: u32, what: &'static str) -> Result<DeviceFd, VmError> {
    let mut dev = kvm_create_device {
        type_,
        fd: 0,
        flags: 0,
    };
    kvm(what, vm.create_device(&mut dev))
}

/// Sets one attribute from a value; KVM reads it through the pointer during the call.
fn set<T>(
    dev: &DeviceFd,
    group: u32,
    attr: u32,
    value: &T,
    what: &'static str,
) -> Result<(), VmError> {
    let a = kvm_device_attr {
        flags: 0,
        group,
        attr: u64::from(attr),
        addr: std::ptr::from_ref(value) as u64,
    };
    kvm(what, dev.set_device_attr(&a))
}

impl Vm {
    /// Creates and initialises the GICv3 (with `spis` shared interrupts) and its ITS at
    /// `layout`'s addresses; after every vCPU, as KVM requires.
    pub fn create_gic(&mut self, layout: &GicLayout, spis: u32) -> Result<(), VmError> {
        self.create_gic_v3(layout.dist.0, layout.redist.0, spis, Some(layout.its.0))
    }

    /// Creates and initialises a GICv3 with its distributor at `dist`, redistributors
    /// from `redist`, `spis` shared interrupts and, if given, an ITS at `its`; after
    /// every vCPU, as KVM requires.
    pub fn create_gic_v3(
        &mut self,
        dist: u64,
        redist: u64,
        spis: u32,
        its: Option<u64>,
    ) -> Result<(), VmError> {
        if self.vcpus.is_empty() {
            return Err(VmError::BeforeVcpus {
                what: "creating the GIC",
            });
        }
        let gic = create(
            &self.fd,
            kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
            "KVM_CREATE_DEVICE (GICv3)",
        )?;
        set(
            &gic,
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            KVM_VGIC_V3_ADDR_TYPE_DIST,
            &dist,
            "setting the GIC distributor address",
        )?;
        set(
            &gic,
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            KVM_VGIC_V3_ADDR_TYPE_REDIST,
            &redist,
            "setting the GIC redistributor address",
        )?;
        let irqs: u32 = PRIVATE_IRQS + spis;
        set(
            &gic,
            KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
            0,
            &irqs,
            "setting the GIC interrupt count",
        )?;
        let none = 0u64;
        if let Some(at) = its {
            let its = create(
                &self.fd,
                kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS,
                "KVM_CREATE_DEVICE (GIC ITS)",
            )?;
            set(
                &its,
                KVM_DEV_ARM_VGIC_GRP_ADDR,
                KVM_VGIC_ITS_ADDR_TYPE,
                &at,
                "setting the GIC ITS address",
            )?;
            set(
                &its,
                KVM_DEV_ARM_VGIC_GRP_CTRL,
                KVM_DEV_ARM_VGIC_CTRL_INIT,
                &none,
                "initialising the GIC ITS",
            )?;
        }
        set(
            &gic,
            KVM_DEV_ARM_VGIC_GRP_CTRL,
            KVM_DEV_ARM_VGIC_CTRL_INIT,
            &none,
            "initialising the GIC",
        )?;
        // KVM keeps both devices for the VM's life; their fds are not needed again.
        Ok(())
    }
}
