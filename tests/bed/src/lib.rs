//! The QEMU test beds: real Linux with nested KVM, a vIOMMU and a vfio-pci device,
//! under software emulation, for both architectures (see
//! ../shared/spec/machines-and-testbeds.md).
//!
//! A scenario is a script in the bed's initramfs (resources/bed/scenarios), chosen on
//! the kernel command line. The guest prints `GRANULE-BED:` markers on its serial
//! console; QEMU exits 0 even when the guest failed, so only the markers count, read
//! under a timeout. QEMU is killed when a run ends for any reason.

mod boot;
mod excerpt;
mod manifest;
mod qemu;
mod stress;

pub use boot::{
    assert_boot_marker_timed, assert_boot_timer_fired, boot_case, guest_facts, kernel_warnings,
    BootCase,
};
pub use manifest::{bed_available, Manifest};
pub use qemu::{Arch, Bed, BedError, BedRun, Case, TcgThreads};
pub use stress::{logs_dir, stress_results};
