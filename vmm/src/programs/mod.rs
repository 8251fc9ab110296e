//! Running granule's built-in guest programs (`granule run` without a kernel).

mod launch;
mod verify;

use std::io::Write;
use std::time::Duration;

use granule_arch::report::ReportKind;
use granule_arch::{ImageError, Program};
use serde::Serialize;
use thiserror::Error;

use crate::kvm::KvmHandle;
use crate::memory::ZoneConfig;
use crate::progress::Progress;
use crate::vcpu::{VcpuEvent, VcpuOutcome};
use crate::vm::{VmError, VmExit};
pub use launch::{launch, launch_with, ExtraDevice, Launched};
pub use verify::VerifyError;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0} vCPUs requested, but this host's KVM allows at most {1} per VM")]
    TooManyVcpus(usize, usize),
    #[error("cannot read the CPUID KVM supports: {0}")]
    Cpuid(kvm_ioctls::Error),
    /// Not a `source`: the message already carries the image error's text.
    #[error("cannot build the guest program: {0}")]
    Image(ImageError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("cannot set up vCPU {index}: {source}")]
    VcpuSetup {
        index: usize,
        source: kvm_ioctls::Error,
    },
    #[error("cannot load the program into guest memory: {0}")]
    Load(crate::memory::MemoryError),
    #[error("cannot attach the serial port: {0}")]
    Serial(granule_devices::BusError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("cannot set up the console output: {0}")]
    Console(std::io::Error),
    #[error("cannot handle SIGINT/SIGTERM: {0}")]
    Signals(std::io::Error),
}

impl From<ImageError> for RunError {
    fn from(e: ImageError) -> Self {
        Self::Image(e)
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub program: Program,
    pub vcpus: usize,
    /// Guest RAM zones, in guest-physical order.
    pub zones: Vec<ZoneConfig>,
    /// Stop the guest after this long.
    pub timeout: Option<Duration>,
    /// Show progress on stderr.
    pub progress: bool,
}

/// How the guest as a whole ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every vCPU finished with code 0 (and `touch` memory checked out).
    Ok,
    /// A vCPU finished with a non-zero code.
    GuestFailed,
    /// A vCPU crashed, halted, or KVM failed.
    Crashed,
    /// The timeout passed first.
    TimedOut,
    /// SIGINT or SIGTERM came first; the guest was stopped.
    Interrupted,
}

/// The result of one run, printed as a table or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub program: String,
    pub vcpus: usize,
    pub memory_bytes: u64,
    pub guest_page_size: u64,
    pub elapsed_s: f64,
    pub verdict: Verdict,
    pub outcomes: Vec<VcpuOutcome>,
    /// Values the program reported, as (vCPU, value).
    pub values: Vec<(usize, u64)>,
    /// Pages the program wrote (touch) and pages the host then checked.
    pub pages_touched: u64,
    pub pages_verified: u64,
    /// Predicted vs observed stage-2 leaves.
    pub stage2: crate::report::Stage2Report,
    /// Console output that never reached stdout.
    pub console: crate::console::ConsoleLoss,
    /// granule's own memory and start-up time, measured when the guest stopped.
    pub footprint: crate::footprint::Footprint,
    /// KVM's exit counters by name, summed over the vCPUs.
    pub exits: std::collections::BTreeMap<String, u64>,
}

/// Short name of a program for reports.
pub fn program_name(p: &Program) -> &'static str {
    match p {
        Program::Hello { .. } => "hello",
        Program::Touch => "touch",
        Program::TripleFault => "triple-fault",
        Program::PortProbe { .. } => "port-probe",
        Program::PciConfigRead { .. } => "pci-config-read",
        Program::MmioProbe { .. } => "mmio-probe",
        Program::Spin => "spin",
        Program::Hammer { .. } => "hammer",
        Program::Stress { .. } => "stress",
    }
}

/// Runs `cfg.program` in a fresh VM until it finishes, crashes or times out; the serial
/// console goes to `console` through the console queue, so a console nobody reads
/// never blocks a vCPU.
pub fn run(
    kvm: &KvmHandle,
    cfg: &RunConfig,
    console: impl Write + Send + 'static,
) -> Result<RunSummary, RunError> {
    // From here on SIGINT/SIGTERM stop the guest and end the run with its summary,
    // whatever phase it is in (set-up finishes first; the wait then stops at once).
    let _interrupts =
        crate::signals::InterruptScope::install_polled().map_err(RunError::Signals)?;
    let (result, loss) =
        crate::console::with_console(Box::new(console), |queue| run_queued(kvm, cfg, queue))
            .map_err(RunError::Console)?;
    let mut summary = result?;
    summary.console = loss;
    Ok(summary)
}

fn run_queued(
    kvm: &KvmHandle,
    cfg: &RunConfig,
    console: crate::console::OutputQueue,
) -> Result<RunSummary, RunError> {
    let Launched {
        mut running,
        image,
        ram,
        guest_page_size,
        started,
    } = launch(kvm, cfg, console)?;
    let deadline = cfg.timeout.map(|t| started + t);
    let total_pages: u64 = image.pages_per_vcpu.iter().sum();
    let mut progress = Progress::pages(cfg.progress && total_pages > 0, total_pages);
    // Pages done per vCPU, as each last reported.
    let mut done = vec![0u64; cfg.vcpus];
    let mut update = |vcpu: usize, pages: u64| {
        if let Some(d) = done.get_mut(vcpu) {
            *d = pages;
        }
        progress.set(done.iter().sum());
    };
    let mut values = Vec::new();
    let exit = running.wait(deadline, Duration::from_millis(250), |event| match event {
        None => {}
        Some(VcpuEvent::Report {
            vcpu,
            kind: ReportKind::Progress,
            value,
        }) => update(*vcpu, *value),
        Some(VcpuEvent::Report {
            vcpu,
            kind: ReportKind::Value,
            value,
        }) => values.push((*vcpu, *value)),
        Some(VcpuEvent::Report { .. }) => {}
        Some(VcpuEvent::Exited {
            vcpu,
            outcome: VcpuOutcome::Done { code: 0 },
        }) => update(*vcpu, image.pages_per_vcpu.get(*vcpu).copied().unwrap_or(0)),
        Some(VcpuEvent::Exited { .. }) => {}
    })?;
    progress.finish();
    let elapsed_s = started.elapsed().as_secs_f64();
    let verdict = verdict(&exit);
    let mut pages_verified = 0;
    let shares = granule_arch::touch_shares(&ram, image.reserved_end, cfg.vcpus);
    if verdict == Verdict::Ok && cfg.program == Program::Touch {
        pages_verified = verify::touched_pages(running.ram(), &shares)?;
    }
    let (vm_stats, footprint) = crate::footprint::stats_then_footprint(running.fd(), running.ram());
    let stage2 = stage2_report(
        &running,
        &image,
        guest_page_size,
        cfg.program == Program::Touch,
        &shares,
        vm_stats,
    );
    Ok(RunSummary {
        program: program_name(&cfg.program).into(),
        vcpus: cfg.vcpus,
        memory_bytes: cfg.zones.iter().map(|z| z.size).sum(),
        guest_page_size,
        elapsed_s,
        verdict,
        outcomes: exit.outcomes,
        values,
        pages_touched: if cfg.program == Program::Touch {
            total_pages
        } else {
            0
        },
        pages_verified,
        stage2,
        console: crate::console::ConsoleLoss::default(),
        footprint,
        exits: running.exit_counts(),
    })
}

/// Builds the stage-2 report while the VM (and so its leaves) still exists, with
/// `vm_stats` read before anything walked this process's page tables.
fn stage2_report(
    running: &crate::vm::RunningVm,
    image: &granule_arch::GuestImage,
    guest_page: u64,
    touched: bool,
    shares: &[Vec<(u64, u64)>],
    vm_stats: Option<crate::observe::stats::Stats>,
) -> crate::report::Stage2Report {
    let backend = crate::probe::Backend::detect().kind;
    let target = crate::report::host_target(backend, guest_page);
    let shadow = matches!(target, crate::stage2::Target::X86Shadow { .. });
    // The guest certainly ran its first code page; it may have touched any page of
    // its image. `touch` also wrote every page of its shares.
    let code_page = image.vcpus[0].entry & !0xfff;
    let mut accessed_min = vec![(code_page, code_page + 0x1000)];
    let mut accessed_max = vec![(0, image.reserved_end)];
    if touched {
        let all: Vec<(u64, u64)> = shares.iter().flatten().copied().collect();
        accessed_min.extend(&all);
        accessed_max.extend(&all);
    }
    crate::report::build(crate::report::RunFacts {
        ram: running.ram(),
        backend,
        target,
        write_tracked: if shadow {
            vec![image.page_tables]
        } else {
            vec![]
        },
        // The program's code sits in its image, below `reserved_end`.
        executed: vec![(0, image.reserved_end)],
        accessed_min,
        accessed_max,
        vm_stats,
    })
}

/// Judges a finished run.
pub fn verdict(exit: &VmExit) -> Verdict {
    if exit.interrupted {
        Verdict::Interrupted
    } else if exit.timed_out {
        Verdict::TimedOut
    } else if exit.outcomes.iter().all(VcpuOutcome::is_clean) {
        Verdict::Ok
    } else if exit
        .outcomes
        .iter()
        .all(|o| matches!(o, VcpuOutcome::Done { .. } | VcpuOutcome::Stopped))
    {
        Verdict::GuestFailed
    } else {
        Verdict::Crashed
    }
}
