//! The architecture-neutral description of a built-in guest program ready to load:
//! bytes to copy into guest memory and the entry state of each vCPU.

use thiserror::Error;

/// A range of guest RAM (guest-physical address and length in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamRange {
    pub gpa: u64,
    pub size: u64,
}

impl RamRange {
    pub fn end(&self) -> u64 {
        self.gpa + self.size
    }
}

/// `hello`'s text as bytes, if it fits the `max` bytes an image has room for.
pub fn hello_text(text: &str, max: usize) -> Result<&[u8], ImageError> {
    if text.len() > max {
        return Err(ImageError::TextTooLong {
            len: text.len(),
            max,
        });
    }
    Ok(text.as_bytes())
}

/// `touch`'s unit: it writes one 4 KiB page at a time on every architecture.
const PAGE: u64 = 4096;

/// `x` rounded up to a 4 KiB page.
pub fn page_up(x: u64) -> u64 {
    x.div_ceil(PAGE) * PAGE
}

/// Splits the free RAM above `reserved_end` into `vcpus` contiguous shares of whole
/// 4 KiB pages (the first `pages % vcpus` shares get one page more). Each share is a
/// list of (start, end) guest-physical ranges.
pub fn touch_shares(ram: &[RamRange], reserved_end: u64, vcpus: usize) -> Vec<Vec<(u64, u64)>> {
    let free: Vec<(u64, u64)> = ram
        .iter()
        .map(|r| (page_up(r.gpa.max(reserved_end)), r.end() / PAGE * PAGE))
        .filter(|(s, e)| s < e)
        .collect();
    let total: u64 = free.iter().map(|(s, e)| (e - s) / PAGE).sum();
    let n = vcpus as u64;
    let mut shares = Vec::with_capacity(vcpus);
    let mut ranges = free.into_iter();
    let mut cur = ranges.next();
    for i in 0..n {
        let mut want = total / n + u64::from(i < total % n);
        let mut share = Vec::new();
        while want > 0 {
            let Some((s, e)) = cur else { break };
            let take = want.min((e - s) / PAGE);
            share.push((s, s + take * PAGE));
            want -= take;
            cur = if s + take * PAGE == e {
                ranges.next()
            } else {
                Some((s + take * PAGE, e))
            };
        }
        shares.push(share);
    }
    shares
}

/// The built-in guest programs. Each architecture encodes them in its own `programs`
/// module; the behaviour is the same everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Print a text through the serial port, then finish with code 0.
    Hello { text: String },
    /// Write each page's own guest-physical address into its first 8 bytes, for every
    /// 4 KiB page of RAM outside the program's own area, split over the vCPUs.
    Touch,
    /// Execute an undefined instruction with no exception handlers: the CPU escalates
    /// to a triple fault. Exercises the VMM's crash reporting.
    TripleFault,
    /// Read a 32-bit value from an I/O port nobody claims and report it.
    PortProbe { port: u16 },
    /// Write `address` to the PCI configuration address port (0xCF8), read the data
    /// port (0xCFC) and report the value: one configuration read, as Linux does it.
    PciConfigRead { address: u32 },
    /// Write to, then read from, a guest-physical address no memory or device backs,
    /// and report the value read.
    MmioProbe { gpa: u64 },
    /// `count` times: write a byte to the serial console, read the configuration space
    /// of an absent PCI function (x86), and write then read `gpa`, which nothing backs.
    /// Shows that a guest's device traffic costs the host bounded memory and logs.
    Hammer { count: u32, gpa: u64 },
    /// Count forever, reporting the count as progress every 2^24 iterations. Never
    /// finishes: exercises pause, resume, stop and timeouts.
    Spin,
    /// The mmu_stress workload (a port of the Linux KVM selftest mmu_stress_test) over
    /// `[start, end)`, split evenly over the vCPUs: stage 0 and 1 write every page,
    /// stage 2 reads every page, stage 3 stores into every page until the host sets the
    /// read-only flag, stage 4 writes every page again. Each stage ends with a `Stage`
    /// report. `crash_vcpu` (debug) makes that vCPU crash instead, to test error paths.
    Stress {
        start: u64,
        end: u64,
        crash_vcpu: Option<usize>,
    },
}

/// Where a vCPU starts and what it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuEntry {
    /// Guest address of the first instruction (privileged prologue).
    pub entry: u64,
    /// Top of the privileged stack.
    pub kernel_stack: u64,
    /// Top of the unprivileged stack the workload runs on.
    pub user_stack: u64,
    /// Program arguments, passed in the architecture's argument registers.
    pub args: [u64; 4],
}

/// Everything the VMM needs to start a built-in program.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// Byte blocks to copy to guest-physical addresses before any vCPU runs.
    pub writes: Vec<(u64, Vec<u8>)>,
    /// Root of the guest's identity page tables (x86: CR3).
    pub page_table_root: u64,
    /// Guest page size used by the identity map (the guest side of the stage-2 story).
    pub guest_page_size: u64,
    /// One entry per vCPU.
    pub vcpus: Vec<VcpuEntry>,
    /// Guest-physical end of the area the image occupies (2 MiB aligned); RAM above it
    /// is free for the workload.
    pub reserved_end: u64,
    /// The guest page tables' guest-physical range (write-tracked under shadow paging).
    pub page_tables: (u64, u64),
    /// Work (4 KiB pages) each vCPU is expected to do, for progress display.
    pub pages_per_vcpu: Vec<u64>,
    /// Guest-physical address of the u64 flag the host sets once memory is read-only
    /// (the stress program's `mprotect_ro_done`); 0 for other programs.
    pub ro_flag: u64,
    /// The exception vector table (arm64's VBAR_EL1), where the image has one: its
    /// handlers report an unexpected exception instead of looping on it.
    pub vectors: Option<u64>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("guest has no RAM ranges")]
    NoRam,
    #[error("guest RAM is too small for the program image: need at least {need:#x} bytes below {limit:#x}")]
    RamTooSmall { need: u64, limit: u64 },
    #[error("the text to print is {len} bytes; at most {max} fit")]
    TextTooLong { len: usize, max: usize },
    #[error("vCPU count must be at least 1")]
    NoVcpus,
    #[error("MMIO probe address {gpa:#x} lies inside guest RAM; pick an address outside RAM")]
    ProbeInRam { gpa: u64 },
    #[error("MMIO probe address {gpa:#x} is beyond the identity map (top {top:#x})")]
    ProbeUnmapped { gpa: u64, top: u64 },
    #[error("the {0} program exists only on x86_64 (it uses port I/O)")]
    X86Only(&'static str),
    #[error("guest program encoding failed (a granule bug): {0}")]
    Encode(String),
    #[error("guest page tables: {0}")]
    Paging(String),
    #[error("stress range {start:#x}..{end:#x} is empty or too small for {vcpus} vCPUs")]
    StressRange { start: u64, end: u64, vcpus: usize },
}
