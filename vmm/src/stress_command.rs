//! `granule stress` and `granule stress compare` at the binary's edge: defaults for this
//! machine, repeats, the upstream line, JSON, and the comparison.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::cli::{output_file, StressAction, StressArgs, UsageError};
use crate::memory::Backing;
use crate::probe;
use crate::stress::{compare, config, OnFault, StressConfig, StressReport};
use crate::user_io::output::OutputFile;

/// Runs `granule stress` (all repeats); returns the report.
pub fn run(a: &StressArgs) -> Result<StressReport> {
    let facts = probe::probe();
    let Some(kvm_facts) = &facts.kvm else {
        bail!(
            "{}",
            facts
                .kvm_error
                .clone()
                .unwrap_or_else(|| "KVM unavailable".into())
        );
    };
    let (vcpus, mem, slot) = config::defaults(
        facts.cpus,
        kvm_facts.backend.hardware_stage2,
        facts.memory_bytes,
    );
    let backing = if a.hugetlb {
        Some(Backing::Hugetlb2m)
    } else {
        a.backing
    };
    let cfg = StressConfig {
        vcpus: a.vcpus.unwrap_or(vcpus),
        max_mem_gib: a.mem.unwrap_or(mem),
        slot_gib: a.slot.unwrap_or(slot),
        backing: backing.unwrap_or(Backing::Anon4k),
        on_fault: a.on_fault.unwrap_or(OnFault::Skip),
        guest_page: a.guest_page,
        phase_timeout: a.phase_timeout,
        progress: !a.quiet,
        crash_vcpu: a.crash_vcpu,
    };
    run_with(&cfg, a.repeat, &facts)
}

fn run_with(cfg: &StressConfig, repeat: usize, facts: &probe::HostFacts) -> Result<StressReport> {
    // SIGINT/SIGTERM (handled from the start of the command, by `main`'s scope) stop the
    // run at its next phase boundary or between repeats, with no results file.
    let kvm = crate::kvm::KvmHandle::open()?;
    let backend = facts.kvm.as_ref().map(|k| k.backend.clone());
    eprintln!(
        "granule stress: {} GiB of guest memory in {} GiB slots aliasing one {} chunk, {} vCPUs, on-fault {:?}",
        cfg.max_mem_gib,
        cfg.slot_gib,
        cfg.backing.name(),
        cfg.vcpus,
        cfg.on_fault
    );
    let mut runs = Vec::new();
    let mut info = None;
    for i in 0..repeat {
        if crate::signals::interrupted() {
            return Err(crate::stress::StressError::Interrupted { phase: "set-up" })
                .with_context(|| format!("stress run {} of {repeat}", i + 1));
        }
        let (r, c) = crate::stress::run(&kvm, cfg)
            .with_context(|| format!("stress run {} of {repeat}", i + 1))?;
        crate::user_io::stdout::line(&r.line)?;
        runs.push(r);
        info = Some(c);
    }
    let info = info.context("no runs")?;
    Ok(StressReport {
        tool: format!("granule stress {}", env!("CARGO_PKG_VERSION")),
        host: crate::stress::result::HostInfo {
            arch: facts.arch.into(),
            kernel: facts.kernel.clone(),
            cpu_model: facts.cpu_model.clone(),
            cpus: facts.cpus,
            backend: backend.as_ref().map_or("unknown".into(), |b| {
                serde_json::to_value(b.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            }),
            hardware_stage2: backend.as_ref().is_some_and(|b| b.hardware_stage2),
            fwb: probe::arm64_fwb(),
        },
        config: info,
        runs,
    })
}

/// Result files are small (a few KiB per run); this bounds what a wrong file costs.
const MAX_RESULT_FILE: u64 = 64 << 20;

/// `granule stress compare`: prints the table, writes the SVG.
pub fn compare(files: &[impl AsRef<Path>], svg: &Path) -> Result<String> {
    let svg = OutputFile::check("chart", svg).map_err(UsageError::File)?;
    let reports = files
        .iter()
        .map(|f| {
            let f = f.as_ref();
            let text = crate::user_io::input::read_text("result file", f, MAX_RESULT_FILE)
                .map_err(UsageError::File)?;
            serde_json::from_str::<StressReport>(&text).with_context(|| {
                format!(
                    "{} is not a granule stress result (written by --json)",
                    f.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(f) = files.iter().zip(&reports).find(|(_, r)| r.runs.is_empty()) {
        bail!(
            "the result file {} has no runs; give files written by `granule stress --json`",
            f.0.as_ref().display()
        );
    }
    svg.write(compare::svg(&reports).as_bytes())?;
    Ok(compare::table(&reports))
}

/// Dispatch for the binary.
pub fn main(a: &StressArgs) -> Result<()> {
    if let Some(StressAction::Compare { files, svg }) = &a.action {
        crate::user_io::stdout::print(&compare(files, svg)?)?;
        eprintln!("granule: chart written to {}", svg.display());
        return Ok(());
    }
    let json = output_file("stress results", a.json.as_deref())?;
    let report = run(a)?;
    if let Some(out) = json {
        out.write(serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
