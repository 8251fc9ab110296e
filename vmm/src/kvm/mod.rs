//! Opening /dev/kvm and checking what it offers, with typed errors so a user learns
//! exactly what is missing instead of meeting a failed ioctl later.

use std::io;

use kvm_ioctls::{Cap, Kvm};
use thiserror::Error;

pub const KVM_PATH: &str = "/dev/kvm";
/// The only stable KVM API version.
pub const KVM_API_VERSION: i32 = 12;

#[derive(Debug, Error)]
pub enum KvmError {
    #[error("{KVM_PATH} does not exist: this host has no KVM (load kvm_intel, kvm_amd or kvm, or enable virtualization)")]
    Missing,
    #[error("no permission to open {KVM_PATH}: run as root or add the user to the group that owns it (usually `kvm`)")]
    Permission,
    #[error("cannot open {KVM_PATH}: {0}")]
    Open(io::Error),
    #[error("KVM API version {0} is not the supported version {KVM_API_VERSION}")]
    ApiVersion(i32),
    #[error("KVM lacks a capability granule needs: {0}")]
    MissingCap(&'static str),
    #[error("{what} failed: {source}")]
    Ioctl {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
}

/// Capabilities every granule VM relies on, with the names users see.
pub const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    #[cfg(target_arch = "x86_64")]
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    #[cfg(target_arch = "x86_64")]
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
];

/// An open /dev/kvm whose API version and required capabilities were checked.
pub struct KvmHandle {
    pub kvm: Kvm,
}

impl KvmHandle {
    pub fn open() -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(|e| match e.errno() {
            libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::Missing,
            libc::EACCES | libc::EPERM => KvmError::Permission,
            _ => KvmError::Open(io::Error::from_raw_os_error(e.errno())),
        })?;
        let v = kvm.get_api_version();
        if v != KVM_API_VERSION {
            return Err(KvmError::ApiVersion(v));
        }
        for &(cap, name) in REQUIRED_CAPS {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap(name));
            }
        }
        Ok(Self { kvm })
    }

    /// The most vCPUs one VM may have (KVM_CAP_MAX_VCPUS).
    pub fn max_vcpus(&self) -> usize {
        self.kvm.get_max_vcpus()
    }

    /// The vCPU count KVM recommends (KVM_CAP_NR_VCPUS), usually the host CPU count.
    pub fn recommended_vcpus(&self) -> usize {
        self.kvm.get_nr_vcpus()
    }

    pub fn max_memslots(&self) -> usize {
        self.kvm.get_nr_memslots()
    }
}
