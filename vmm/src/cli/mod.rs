//! The `granule` command line: definitions and value parsers. Every parser names the bad
//! value and the accepted form; clap turns the error into exit code 2.

pub mod program;
pub mod values;

pub use program::OptionNotApplicable;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// A bad command line found after parsing (an output path that cannot be written, an
/// option for another built-in program): the binary exits 2 as for a parse error.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    File(#[from] crate::user_io::UserFileError),
    #[error(transparent)]
    Option(#[from] OptionNotApplicable),
}

/// Checks an optional output path before any work; see [`crate::user_io::output`].
pub fn output_file(
    what: &'static str,
    path: Option<&std::path::Path>,
) -> Result<Option<crate::user_io::output::OutputFile>, UsageError> {
    path.map(|p| crate::user_io::output::OutputFile::check(what, p))
        .transpose()
        .map_err(UsageError::File)
}

#[derive(Debug, Parser)]
#[command(
    name = "granule",
    version,
    about = "A KVM VMM that knows the page size behind every guest-physical range"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report host facts: architecture, kernel, KVM backend and capabilities, hugepage
    /// pools, THP mode, VFIO. Exits 1 if /dev/kvm is missing or cannot be opened.
    Probe {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a built-in guest program.
    Run(RunArgs),
    /// Predict the stage-2 leaf size of every guest-physical range, without creating a
    /// VM: for this host, or for another architecture or MMU.
    Plan(PlanArgs),
    /// mmu_stress: a port of the Linux KVM selftest mmu_stress_test; or `stress compare`.
    Stress(StressArgs),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StressArgs {
    #[command(subcommand)]
    pub action: Option<StressAction>,
    /// vCPUs (default: 3/4 of this machine's CPUs, at least 1).
    #[arg(short = 'c', long = "vcpus", value_parser = values::parse_vcpus)]
    pub vcpus: Option<usize>,
    /// Guest memory to map, GiB (default: 128 with hardware stage 2, 8 under shadow paging).
    #[arg(short = 'm', long = "mem", value_parser = values::parse_gib)]
    pub mem: Option<u64>,
    /// Size of each memslot and of the host chunk they all alias, GiB (default 2).
    #[arg(short = 's', long = "slot-size", value_parser = values::parse_gib)]
    pub slot: Option<u64>,
    /// Back the chunk with hugetlb pages (upstream -H; same as --backing hugetlb-2m).
    #[arg(short = 'H', long = "hugetlb", conflicts_with = "backing")]
    pub hugetlb: bool,
    /// Host backing of the chunk: 4k, thp, hugetlb-2m or hugetlb-1g.
    #[arg(long, value_parser = values::parse_stress_backing)]
    pub backing: Option<crate::memory::Backing>,
    /// The guest's stage-1 page size: 2M or 1G, on arm64 also 4K (default: 1G, as
    /// upstream on x86; upstream's arm64 guest maps 4K pages).
    #[arg(long, value_parser = values::parse_stress_guest_page)]
    pub guest_page: Option<u64>,
    /// What a vCPU does when its store hits read-only memory (default: skip, as upstream
    /// on x86 and arm64).
    #[arg(long, value_enum)]
    pub on_fault: Option<crate::stress::OnFault>,
    /// Run the benchmark this many times (a fresh VM each time).
    #[arg(long, default_value = "1", value_parser = values::parse_repeat)]
    pub repeat: usize,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Stop with an error when any phase takes longer than this many seconds.
    #[arg(long, default_value = "1800", value_parser = values::parse_timeout)]
    pub phase_timeout: std::time::Duration,
    /// Do not show progress.
    #[arg(long)]
    pub quiet: bool,
    /// System-call filters per thread: on (a call outside a thread's list ends granule
    /// with exit 1, naming it), log (the call goes through; the kernel logs it), off.
    #[arg(long, value_enum, default_value = "on")]
    pub seccomp: crate::seccomp::Mode,
    /// Debug: make this vCPU crash at its first instruction (tests error reporting).
    #[arg(long, hide = true)]
    pub crash_vcpu: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum StressAction {
    /// Put result files side by side: a table on stdout and an SVG bar chart.
    Compare {
        /// Result files written by `granule stress --json`.
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Where to write the SVG chart.
        #[arg(long, default_value = "stress-compare.svg")]
        svg: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    #[value(name = "x86_64")]
    X86_64,
    Aarch64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MmuArg {
    /// Hardware two-dimensional paging (EPT/NPT).
    Tdp,
    /// Shadow paging (PVM, or EPT/NPT disabled).
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GranuleArg {
    #[value(name = "4k")]
    G4k,
    #[value(name = "16k")]
    G16k,
    #[value(name = "64k")]
    G64k,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// A guest RAM zone, as for `run` (repeatable).
    #[arg(long, short = 'm', value_parser = crate::memory::parse_zone, default_value = "1G", allow_hyphen_values = true)]
    pub memory: Vec<crate::memory::ZoneConfig>,
    /// A device BAR mapped as a PFN map: gpa=ADDR,size=SIZE[,pa=ADDR][,hva_offset=SIZE] (repeatable).
    #[arg(long, value_parser = crate::memory::hypothetical::parse_bar)]
    pub bar: Vec<crate::memory::hypothetical::BarConfig>,
    /// Architecture to plan for (default: this host's).
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// x86 MMU (default: this host's KVM backend when planning for this host, else tdp).
    #[arg(long, value_enum)]
    pub mmu: Option<MmuArg>,
    /// x86: the largest leaf the CPU supports, 2M or 1G (default: 1G if this host has pdpe1gb).
    #[arg(long, value_parser = values::parse_leaf)]
    pub max_leaf: Option<u64>,
    /// x86 shadow paging: the guest's page size, 2M or 1G.
    #[arg(long, value_parser = values::parse_leaf, default_value = "2M")]
    pub guest_page: u64,
    /// arm64: the host's base page granule.
    #[arg(long, value_enum, default_value = "4k")]
    pub granule: GranuleArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The built-in programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgramArg {
    /// Print a greeting (or --text) on the serial console.
    Hello,
    /// Write every 4 KiB page of guest RAM with its own address, on all vCPUs; the host
    /// then checks sampled pages.
    Touch,
    /// Crash the guest with a triple fault (shows how crashes are reported).
    TripleFault,
    /// Read an I/O port no device claims (--port) and report the value.
    PortProbe,
    /// Write and read a guest-physical address nothing backs (--gpa).
    MmioProbe,
    /// Count forever on every vCPU (use with --timeout; shows pause/stop behaviour).
    Spin,
    /// Drive devices hard (--count rounds of a serial write, an absent PCI function's
    /// configuration read on x86, an unbacked address written and read (--gpa)): shows
    /// the host's memory and logs stay bounded whatever a guest does.
    Hammer,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The built-in program to run (default: hello); not with --kernel. (Listing the
    /// kernel-only options here too matters: clap drops a `requires = "kernel"` when
    /// something present conflicts with --kernel.)
    #[arg(value_enum, conflicts_with_all = ["kernel", "initrd", "cmdline", "device", "kernel_decompress", "kernel_cache", "boot_marker"])]
    pub program: Option<ProgramArg>,
    /// Boot this Linux kernel instead of a built-in program: a bzImage or ELF vmlinux
    /// on x86_64, an Image or Image.gz on arm64. Its console (ttyS0: COM1 on x86_64, a
    /// 16550 on MMIO on arm64) is on granule's stdin and stdout.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// An initramfs for --kernel.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line (replaces the default "console=ttyS0 panic=-1").
    #[arg(
        long,
        value_name = "STR",
        requires = "kernel",
        allow_hyphen_values = true
    )]
    pub cmdline: Option<String>,
    /// Pass a host PCI function through to the --kernel guest with VFIO:
    /// vfio,path=/sys/bus/pci/devices/DDDD:BB:DD.F[,iommu=legacy|iommufd][,misalign=SIZE
    /// (debug)] or vfio,DDDD:BB:DD.F[,...]. Repeat for several. Default IOMMU interface:
    /// iommufd where the kernel offers it for the device, else the legacy container.
    #[arg(long, value_name = "SPEC", requires = "kernel", value_parser = crate::vfio::parse_device)]
    pub device: Vec<crate::vfio::DeviceSpec>,
    /// Where an x86 bzImage's kernel is decompressed: host (granule decompresses it,
    /// once per bzImage with the cache, and boots the vmlinux inside: faster, but the
    /// kernel is not randomised (no KASLR)) or guest (its own decompressor, as on
    /// hardware) [default: host].
    #[arg(long, value_enum, value_name = "WHERE", requires = "kernel")]
    pub kernel_decompress: Option<crate::kernel_payload::choice::DecompressMode>,
    /// Keep host-decompressed kernels in $XDG_CACHE_HOME/granule/kernels (else
    /// ~/.cache/granule/kernels; at most 1 GiB, least recently used out first): on, off
    /// [default: on].
    #[arg(long, value_enum, value_name = "ON_OFF", requires = "kernel")]
    pub kernel_cache: Option<crate::kernel_payload::choice::CacheSwitch>,
    /// Console text that ends the boot as you count it (e.g. a service's "ready" line):
    /// the first console line holding it is timed, and the boot's phases in the summary
    /// and --json end there ("init until marker").
    #[arg(long, value_name = "TEXT", requires = "kernel", value_parser = values::parse_boot_marker)]
    pub boot_marker: Option<String>,
    /// Number of vCPUs (1 to KVM's maximum).
    #[arg(long, short = 'c', value_parser = values::parse_vcpus, default_value = "1", allow_hyphen_values = true)]
    pub cpus: usize,
    /// A guest RAM zone: SIZE or size=SIZE[,backing=4k|thp|hugetlb-2m|hugetlb-1g|memfd]
    /// [,prefault=on][,gpa=ADDR][,misalign=SIZE (debug)]. Repeat for several zones; they
    /// are placed in order from GPA 0, skipping the MMIO hole at 3-4 GiB.
    #[arg(long, short = 'm', value_parser = crate::memory::parse_zone, default_value = "1G", allow_hyphen_values = true)]
    pub memory: Vec<crate::memory::ZoneConfig>,
    /// Stop the guest after this many seconds (e.g. 30 or 2.5).
    #[arg(long, value_parser = values::parse_timeout, allow_hyphen_values = true)]
    pub timeout: Option<std::time::Duration>,
    /// Text for `hello` [default: "Hello from a granule guest!\n"].
    #[arg(long, value_parser = values::parse_text, conflicts_with = "kernel")]
    pub text: Option<String>,
    /// Port for `port-probe` (decimal or 0x hex) [default: 0x80].
    #[arg(long, value_parser = values::parse_port, conflicts_with = "kernel")]
    pub port: Option<u16>,
    /// Guest-physical address for `mmio-probe` and `hammer` (decimal or 0x hex)
    /// [default: 0xd0000000].
    #[arg(long, value_parser = values::parse_u64, conflicts_with = "kernel")]
    pub gpa: Option<u64>,
    /// Rounds for `hammer` [default: 100000].
    #[arg(long, value_parser = values::parse_count, conflicts_with = "kernel")]
    pub count: Option<u32>,
    /// Write the run summary (with a kernel: end, boot time, stage-2 share) as JSON to
    /// this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the stage-2 report (predicted vs observed leaves) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Do not show progress.
    #[arg(long)]
    pub quiet: bool,
    /// Also print KVM's exit counters per reason, summed over the vCPUs (they are in
    /// --json either way).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// System-call filters per thread: on (a call outside a thread's list ends granule
    /// with exit 1, naming it), log (the call goes through; the kernel logs it), off.
    #[arg(long, value_enum, default_value = "on")]
    pub seccomp: crate::seccomp::Mode,
    /// Debug: each vCPU thread makes a system call outside its list once its filter is
    /// in (shows what --seccomp does).
    #[arg(long, hide = true)]
    pub seccomp_probe: bool,
}
