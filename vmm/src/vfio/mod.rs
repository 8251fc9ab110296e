//! VFIO passthrough. So far: finding the devices bound to vfio-pci and what their BARs
//! allow (`granule probe`); the passthrough itself is still to come.

pub mod sysfs;
