//! The `granule` binary: parses the command line, runs the command, maps the result to
//! an exit code (see README: 0 ok, 1 granule or host error, 2 usage, 3 guest crashed,
//! 4 guest reported failure, 5 timed out).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use granule_vmm::cli::{output_file, Cli, Command, PlanArgs, RunArgs, UsageError};
use granule_vmm::kvm::KvmHandle;
use granule_vmm::programs::{self, RunConfig, RunSummary, Verdict};
use granule_vmm::signals::InterruptScope;
use granule_vmm::user_io::{output::OutputFile, stdout};
use granule_vmm::{plan_command, probe, units};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    // The boot timer measures guest boot from here.
    let process_start = std::time::Instant::now();
    granule_vmm::footprint::mark_process_start(process_start);
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = match granule_vmm::log_filter::from_env_value(rust_log.as_deref()) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("granule: error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour only for a terminal: a log redirected to a file stays plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    let cli = Cli::parse();
    // From here to the end of a run or stress command, SIGINT/SIGTERM ask granule to
    // stop: set-up stops at its next check, a guest is stopped, and results that were
    // still being written are finished before granule exits 130.
    let runs_a_guest = match &cli.command {
        Command::Run(_) => true,
        Command::Stress(a) => a.action.is_none(),
        Command::Probe { .. } | Command::Plan(_) => false,
    };
    let interrupts = match runs_a_guest.then(InterruptScope::install_polled) {
        None => None,
        Some(Ok(scope)) => Some(scope),
        Some(Err(e)) => {
            eprintln!("granule: error: cannot handle SIGINT/SIGTERM: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match cli.command {
        Command::Probe { json } => run_probe(json),
        Command::Run(args) => {
            granule_vmm::seccomp::configure(args.seccomp, args.seccomp_probe);
            if args.kernel.is_some() {
                run_linux(&args, process_start)
            } else {
                run_program(&args)
            }
        }
        Command::Plan(args) => run_plan(&args),
        Command::Stress(args) => {
            granule_vmm::seccomp::configure(args.seccomp, false);
            granule_vmm::stress_command::main(&args).map(|()| 0)
        }
    };
    let interrupted = interrupts.as_ref().is_some_and(InterruptScope::interrupted);
    ExitCode::from(exit_code(result, interrupted))
}

/// The exit code for a command's result; `interrupted`: SIGINT or SIGTERM arrived.
fn exit_code(result: Result<u8>, interrupted: bool) -> u8 {
    match result {
        Ok(130) => 130,
        Ok(code) if interrupted => {
            eprintln!(
                "granule: interrupted (SIGINT or SIGTERM) after the guest had ended \
                 (its exit code {code}); the results written are complete"
            );
            130
        }
        Ok(code) => code,
        Err(e)
            if e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<granule_vmm::linux::BootError>()
                    .is_some_and(granule_vmm::linux::BootError::is_usage) =>
        {
            eprintln!("granule: error: {e:#}");
            2
        }
        Err(e)
            if e.downcast_ref::<granule_vmm::stress::StressError>()
                .is_some_and(|s| s.is_interrupted()) =>
        {
            eprintln!("granule: {e:#}");
            130
        }
        Err(e) if interrupted => {
            eprintln!("granule: interrupted (SIGINT or SIGTERM): {e:#}");
            130
        }
        Err(e) => {
            eprintln!("granule: error: {e:#}");
            1
        }
    }
}

fn run_probe(json: bool) -> Result<u8> {
    let facts = probe::probe();
    if json {
        stdout::line(&serde_json::to_string_pretty(&facts)?)?;
    } else {
        stdout::print(&probe::render_table(&facts))?;
    }
    if let Some(err) = &facts.kvm_error {
        eprintln!("granule: error: {err}");
        return Ok(1);
    }
    Ok(0)
}

fn run_plan(args: &PlanArgs) -> Result<u8> {
    let out = plan_command::run(args)?;
    if args.json {
        stdout::line(&serde_json::to_string_pretty(&out)?)?;
    } else {
        stdout::print(&format!(
            "stage-2 plan for {}\n{}",
            granule_vmm::report::describe_target(&out.target),
            granule_vmm::report::render_plan(&out.plan)
        ))?;
    }
    Ok(0)
}

fn run_program(args: &RunArgs) -> Result<u8> {
    let report = output_file("stage-2 report", args.report.as_deref())?;
    let json = output_file("run summary", args.json.as_deref())?;
    let kvm = KvmHandle::open()?;
    let cfg = RunConfig {
        program: args.built_in_program().map_err(UsageError::from)?,
        vcpus: args.cpus,
        zones: zones_with_defaults(args),
        timeout: args.timeout,
        progress: !args.quiet,
    };
    let summary = programs::run(&kvm, &cfg, std::io::stdout()).context("running the guest")?;
    eprint!("{}", render_summary(&summary));
    eprint!("{}", granule_vmm::report::render(&summary.stage2));
    if args.verbose {
        eprint!(
            "{}",
            granule_vmm::report::render_exit_counts(&summary.exits)
        );
    }
    write_json(report.as_ref(), &summary.stage2)?;
    write_json(json.as_ref(), &summary)?;
    Ok(match summary.verdict {
        Verdict::Ok => 0,
        Verdict::Crashed => 3,
        Verdict::GuestFailed => 4,
        Verdict::TimedOut => 5,
        Verdict::Interrupted => 130,
    })
}

/// `granule run --kernel`: boots Linux; the exit code says how the guest ended.
fn run_linux(args: &RunArgs, process_start: std::time::Instant) -> Result<u8> {
    use granule_vmm::linux::{self, LinuxConfig, DEFAULT_CMDLINE};
    if let Some(bdf) = granule_vmm::vfio::spec::first_duplicate(&args.device) {
        eprintln!("granule: error: --device names PCI device {bdf} twice; give each device once");
        return Ok(2);
    }
    let report = output_file("stage-2 report", args.report.as_deref())?;
    let json = output_file("boot summary", args.json.as_deref())?;
    let cfg = LinuxConfig {
        kernel: args.kernel.clone().unwrap_or_default(),
        initrd: args.initrd.clone(),
        cmdline: args
            .cmdline
            .clone()
            .unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
        vcpus: args.cpus,
        zones: zones_with_defaults(args),
        timeout: args.timeout,
        devices: args.device.clone(),
        process_start,
        kernel_options: granule_vmm::kernel_payload::choice::KernelOptions {
            decompress: args.kernel_decompress,
            cache: args.kernel_cache,
        },
        boot_marker: args.boot_marker.clone(),
    };
    linux::check_options(&cfg)?;
    let kvm = KvmHandle::open()?;
    let summary = linux::boot(&kvm, &cfg).context("booting the kernel")?;
    if !args.quiet {
        eprint!("{}", granule_vmm::report::render(&summary.stage2));
    }
    eprint!("{}", linux::summary::render(&summary));
    if args.verbose {
        eprint!(
            "{}",
            granule_vmm::report::render_exit_counts(&summary.exits)
        );
    }
    write_json(report.as_ref(), &summary.stage2)?;
    write_json(json.as_ref(), &summary)?;
    Ok(summary.exit_code)
}

/// The `--memory` zones, those without `backing=` given this host's default.
fn zones_with_defaults(args: &RunArgs) -> Vec<granule_vmm::memory::ZoneConfig> {
    let mut zones = args.memory.clone();
    granule_vmm::memory::default_backing::apply_host(&mut zones);
    zones
}

/// Writes `value` as pretty JSON to `out`, when an output was given.
fn write_json(out: Option<&OutputFile>, value: &impl serde::Serialize) -> Result<()> {
    if let Some(out) = out {
        out.write(serde_json::to_string_pretty(value)?.as_bytes())?;
    }
    Ok(())
}

fn render_summary(s: &RunSummary) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let verdict = match s.verdict {
        Verdict::Ok => "ok",
        Verdict::GuestFailed => "guest reported failure",
        Verdict::Crashed => "guest crashed",
        Verdict::TimedOut => "timed out",
        Verdict::Interrupted => "interrupted (SIGINT or SIGTERM); the guest was stopped",
    };
    let _ = writeln!(
        o,
        "granule: {} on {} vCPU(s), {} RAM, guest pages {}: {verdict} after {:.3} s",
        s.program,
        s.vcpus,
        units::format_size(s.memory_bytes),
        units::format_size(s.guest_page_size),
        s.elapsed_s
    );
    for (i, outcome) in s.outcomes.iter().enumerate() {
        let _ = writeln!(o, "  vCPU {i}: {outcome}");
    }
    for (vcpu, value) in &s.values {
        let _ = writeln!(o, "  vCPU {vcpu} reported value {value:#x}");
    }
    o.push_str(&granule_vmm::footprint::render(&s.footprint, "  "));
    if s.pages_touched > 0 {
        let _ = writeln!(
            o,
            "  touched {} pages ({}), host verified {} sampled pages",
            s.pages_touched,
            units::format_size(s.pages_touched * 4096),
            s.pages_verified
        );
    }
    o
}
