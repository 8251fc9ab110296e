//! Booting a Linux kernel (`granule run --kernel`). The kernel and initramfs are read
//! and checked before anything is mapped; a per-architecture backend ([`backend`];
//! `x86_64/`, `aarch64/`) builds the VM up to vCPUs ready to run; the arch-neutral run
//! ([`run`]) then drives the console, the event loop and the vCPUs until the guest
//! powers off, reboots, panics or crashes, and says how ([`ending`], [`summary`]).

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod backend;
mod console;
mod ending;
pub mod files;
mod platform;
mod run;
pub mod summary;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

/// This host's boot backend.
#[cfg(target_arch = "aarch64")]
type HostBoot = aarch64::Arm64Boot;
#[cfg(target_arch = "x86_64")]
type HostBoot = x86_64::X86Boot;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use granule_arch::x86_64::boot::e820::E820Error;
use granule_arch::x86_64::boot::KernelError;

use crate::memory::{MemoryError, ZoneConfig};
use crate::vm::VmError;
pub use run::boot;
pub use summary::{BootSummary, End};

/// A duration in milliseconds, as boot timings are reported.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The command line a kernel gets when `--cmdline` is not given: the console on ttyS0
/// (COM1 on x86; on arm64 the device tree's 16550, also its `stdout-path`),
/// and reboot at once on panic (granule reports the panic and exits non-zero).
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1";

/// The checks of `cfg` that need neither KVM nor the files, made before KVM is opened so
/// that a command-line mistake is reported as one (exit 2) on any host. An arm64 kernel
/// has no decompressor of its own and granule always unpacks an Image.gz, so neither
/// kernel option applies there; on x86 whether they apply depends on the file (see
/// `x86_64::kernel`).
pub fn check_options(cfg: &LinuxConfig) -> Result<(), BootError> {
    if cfg!(target_arch = "aarch64") {
        if let Some(option) = cfg.kernel_options.given().first() {
            return Err(BootError::KernelOption {
                option,
                path: cfg.kernel.clone(),
                why: "it applies to an x86 bzImage; granule decompresses an arm64 Image.gz \
                      itself"
                    .into(),
            });
        }
    }
    Ok(())
}

/// A vCPU set-up step's KVM error as the boot error that names the vCPU and the step.
pub(crate) fn vcpu_step<T>(
    index: usize,
    what: &'static str,
    r: Result<T, kvm_ioctls::Error>,
) -> Result<T, BootError> {
    r.map_err(|error| BootError::VcpuSetup { index, what, error })
}

#[derive(Debug, Clone)]
pub struct LinuxConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub vcpus: usize,
    pub zones: Vec<ZoneConfig>,
    pub timeout: Option<Duration>,
    /// PCI functions to pass through (`--device vfio,...`).
    pub devices: Vec<crate::vfio::DeviceSpec>,
    /// When granule started, for the boot timer.
    pub process_start: Instant,
    /// `--kernel-decompress` and `--kernel-cache`, for a bzImage.
    pub kernel_options: crate::kernel_payload::choice::KernelOptions,
    /// `--boot-marker`: console text that ends the boot as the user counts it.
    pub boot_marker: Option<String>,
}

#[derive(Debug, Error)]
pub enum BootError {
    #[error("cannot read the {what} {path}: {error}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] crate::user_io::UserFileError),
    #[error("kernel {path}: {error}")]
    Kernel { path: PathBuf, error: KernelError },
    #[error("kernel {path}: {error}")]
    Image {
        path: PathBuf,
        error: granule_arch::aarch64::boot::ImageError,
    },
    #[error("kernel {path}: cannot decompress the gzip-compressed Image: {error}")]
    Decompress {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("kernel {path}: the Image decompresses to more than {max} bytes")]
    DecompressedTooLarge { path: PathBuf, max: u64 },
    #[error("the device tree: {0}")]
    Fdt(#[from] granule_arch::aarch64::boot::FdtError),
    #[error(transparent)]
    Placement(#[from] granule_arch::aarch64::boot::PlacementError),
    #[error("the initramfs {0} is empty")]
    EmptyInitrd(PathBuf),
    #[error("the initramfs {path} is not a cpio archive, compressed or not (it starts with {head}); give the initramfs (e.g. made with cpio -H newc)")]
    NotAnInitrd { path: PathBuf, head: String },
    #[error("cannot load the kernel into guest memory: {0}")]
    Load(linux_loader::loader::Error),
    #[error(transparent)]
    Layout(#[from] E820Error),
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("the initramfs ({size} bytes) does not fit: {room} bytes between the kernel and the top of low RAM; give the guest more memory")]
    InitrdTooLarge { size: u64, room: u64 },
    #[error("{0} vCPUs requested, but this host's KVM allows at most {1} per VM")]
    TooManyVcpus(usize, usize),
    #[error("{0} vCPUs requested; a Linux guest supports at most 254 (8-bit xAPIC IDs)")]
    TooManyApicIds(usize),
    #[error("{0} vCPUs requested; granule's GIC redistributor region holds at most {1}")]
    TooManyRedistributors(usize, u64),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Vfio(#[from] crate::vfio::VfioError),
    #[error("setting up the PCI host bridge: {0}")]
    Devices(#[from] crate::devices::DeviceError),
    #[error("{what} failed: {error}")]
    Kvm {
        what: &'static str,
        error: kvm_ioctls::Error,
    },
    #[error("cannot set up vCPU {index}: {what} failed: {error}")]
    VcpuSetup {
        index: usize,
        what: &'static str,
        error: kvm_ioctls::Error,
    },
    #[error("cannot build the MSR list ({0} entries)")]
    MsrCount(usize),
    #[error("KVM refused MSR {msr:#x} on vCPU {index}")]
    MsrRefused { index: usize, msr: u32 },
    #[error(transparent)]
    Bus(#[from] granule_devices::BusError),
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    #[error("cannot write the zero page: {0}")]
    ZeroPage(linux_loader::configurator::Error),
    #[error("cannot set up the console output: {0}")]
    Console(std::io::Error),
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("the console event loop failed: {0}")]
    EventLoop(String),
    #[error(transparent)]
    Paging(#[from] granule_arch::x86_64::paging::PagingError),
    #[error(
        "kernel {path}: {error} (--kernel-decompress guest leaves it to the kernel's own \
         decompressor)"
    )]
    Payload {
        path: PathBuf,
        error: crate::kernel_payload::PayloadError,
    },
    #[error("{option} does not apply to kernel {path}: {why}; leave it out")]
    KernelOption {
        option: &'static str,
        path: PathBuf,
        why: String,
    },
}

impl BootError {
    /// An error in the command line (exit 2) rather than in the boot.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::KernelOption { .. })
    }
}
