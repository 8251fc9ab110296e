//! The `granule` command line: definitions and value parsers. Every parser names the bad
//! value and the accepted form; clap turns the error into exit code 2.

pub mod values;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The program to run.
    #[arg(value_enum, default_value_t = ProgramArg::Hello)]
    pub program: ProgramArg,
    /// Number of vCPUs (1 to KVM's maximum).
    #[arg(long, short = 'c', value_parser = values::parse_vcpus, default_value = "1", allow_hyphen_values = true)]
    pub cpus: usize,
    /// Guest RAM, e.g. 512M or 4G (a multiple of 2 MiB, at least 4M). RAM above 3 GiB
    /// is placed above the 4 GiB boundary.
    #[arg(long, short = 'm', value_parser = values::parse_ram_size, default_value = "1G", allow_hyphen_values = true)]
    pub memory: u64,
    /// Stop the guest after this many seconds (e.g. 30 or 2.5).
    #[arg(long, value_parser = values::parse_timeout, allow_hyphen_values = true)]
    pub timeout: Option<std::time::Duration>,
    /// Text for `hello`.
    #[arg(long, default_value = "Hello from a granule guest!\n")]
    pub text: String,
    /// Port for `port-probe` (decimal or 0x hex).
    #[arg(long, value_parser = values::parse_port, default_value = "0x80")]
    pub port: u16,
    /// Guest-physical address for `mmio-probe` (decimal or 0x hex).
    #[arg(long, value_parser = values::parse_u64, default_value = "0xd0000000")]
    pub gpa: u64,
    /// Write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Do not show progress.
    #[arg(long)]
    pub quiet: bool,
}
