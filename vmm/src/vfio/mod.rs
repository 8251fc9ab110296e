//! VFIO PCI passthrough: `--device vfio,...` ([`spec`]) is checked against sysfs with a
//! fix for each failure ([`preflight`]), opened into a DMA address space with guest RAM
//! mapped at IOVA = GPA ([`iommu`]), its BARs placed and mapped so KVM can use huge
//! stage-2 leaves ([`bars`], [`region_map`]), and put on the guest's PCI bus with the
//! configuration registers the VMM owns emulated ([`function`], [`caps`]).
//! [`sysfs`] is what `granule probe` reports about VFIO-bound devices.

pub mod attach;
pub mod bars;
pub mod caps;
mod function;
mod interrupts;
mod intx;
pub mod iommu;
pub mod leaves;
pub mod msi;
pub mod msix;
pub mod msix_table;
pub mod preflight;
pub mod region_map;
pub mod spec;
pub mod sysfs;
mod vectors;

use thiserror::Error;

pub use attach::{attach_all, Passthrough};
pub use spec::{parse_device, DeviceSpec, IommuApi};

#[derive(Debug, Error)]
pub enum VfioError {
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error("cannot create KVM's VFIO device: {0}")]
    KvmDevice(String),
    #[error("cannot open {what}: {error}")]
    Open { what: String, error: String },
    #[error("PCI device {bdf} is in use: another process (another VMM?) has it open; `fuser -v /dev/vfio/*` names it")]
    InUse { bdf: String },
    #[error("cannot map guest RAM {gpa:#x} (+{size:#x}) for DMA: {error}")]
    DmaMap { gpa: u64, size: u64, error: String },
    #[error("PCI device {bdf}, BAR {index}: {why}")]
    Bar {
        bdf: String,
        index: usize,
        why: String,
    },
    #[error("PCI device {bdf}: {why}")]
    Function { bdf: String, why: String },
    #[error("PCI device {bdf} is given twice")]
    Duplicate { bdf: String },
}
