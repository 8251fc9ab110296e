//! How a Linux guest run ended, what the boot timer measured, and how much of guest RAM
//! got huge stage-2 mappings: a JSON document and a short human summary.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::files::KernelFormat;
use crate::report::Stage2Report;
use crate::vcpu::VcpuOutcome;

/// How the guest ended. The exit code follows granule's convention (README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum End {
    /// ACPI power off (`poweroff`).
    PowerOff,
    /// The guest asked for a reset; granule ends the VM instead of restarting it.
    Reboot { via: String },
    /// The kernel panicked; the reason is its panic line, `via` how granule knows.
    Panic { reason: String, via: String },
    /// A vCPU crashed (triple fault without a panic, KVM error, unhandled exit).
    Crashed { vcpu: usize, outcome: VcpuOutcome },
    /// `--timeout` passed.
    TimedOut,
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl End {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::PowerOff | Self::Reboot { .. } => 0,
            Self::Panic { .. } | Self::Crashed { .. } => 3,
            Self::TimedOut => 5,
            Self::Interrupted => 130,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::PowerOff => "the guest powered off".into(),
            Self::Reboot { via } => {
                format!("the guest asked to reboot ({via}); granule ends the VM rather than restarting it")
            }
            Self::Panic { reason, via } => {
                format!("the guest kernel panicked: {reason} (signalled by {via})")
            }
            Self::Crashed { vcpu, outcome } => format!("vCPU {vcpu} crashed: {outcome}"),
            Self::TimedOut => "the timeout passed; the guest was stopped".into(),
            Self::Interrupted => "interrupted; the guest was stopped".into(),
        }
    }
}

/// Milliseconds from granule's start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BootTimes {
    /// Files checked and guest RAM mapped (prefaulted, if asked).
    pub memory_mapped_ms: f64,
    /// Kernel, initramfs and boot data in guest memory.
    pub kernel_loaded_ms: f64,
    /// The vCPUs started (VM, memory, kernel load and devices done).
    pub vcpus_started_ms: f64,
    /// The first KVM_RUN: the guest's first instruction.
    pub first_kvm_run_ms: Option<f64>,
    /// The guest's init wrote the boot timer port; None if it never did.
    pub userspace_ms: Option<f64>,
    /// The console first showed the `--boot-marker` text; None without one or if it
    /// never came.
    pub marker_ms: Option<f64>,
    /// The boot by phase, in ms: each phase from the end of the one before.
    pub phases: BootPhases,
}

/// The boot's phases, each from the end of the one before, in ms: where the time went.
/// A phase is None when an end it needs never came, or came before its start (a
/// `--boot-marker` line the kernel printed before init).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BootPhases {
    /// granule's start to guest RAM mapped (files checked, memory mapped).
    pub vmm_setup_ms: f64,
    /// Kernel, initramfs and boot data into guest memory.
    pub kernel_load_ms: f64,
    /// Devices, vCPU set-up and threads, to the first KVM_RUN.
    pub until_first_instruction_ms: Option<f64>,
    /// The kernel's own boot, until init writes the boot timer.
    pub kernel_until_init_ms: Option<f64>,
    /// init's work until the `--boot-marker` line.
    pub init_until_marker_ms: Option<f64>,
}

impl BootPhases {
    /// The phases between the marks (ms after granule's start).
    pub fn between(
        memory_mapped: f64,
        kernel_loaded: f64,
        first_kvm_run: Option<f64>,
        userspace: Option<f64>,
        marker: Option<f64>,
    ) -> Self {
        let span = |from: Option<f64>, to: Option<f64>| Some(to? - from?).filter(|d| *d >= 0.0);
        Self {
            vmm_setup_ms: memory_mapped,
            kernel_load_ms: kernel_loaded - memory_mapped,
            until_first_instruction_ms: span(Some(kernel_loaded), first_kvm_run),
            kernel_until_init_ms: span(first_kvm_run, userspace),
            init_until_marker_ms: span(userspace, marker),
        }
    }
}

/// Guest RAM by the stage-2 leaf size KVM mapped it with.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeafShare {
    /// Bytes mapped with each leaf size (bytes of leaf -> mapped bytes).
    pub mapped_bytes: BTreeMap<u64, u64>,
    /// Share of the mapped bytes that are in 2 MiB or larger leaves, 0..1.
    pub huge_share: f64,
}

impl LeafShare {
    pub fn from_counts(counts: &BTreeMap<u64, u64>) -> Self {
        let mapped_bytes: BTreeMap<u64, u64> =
            counts.iter().map(|(leaf, n)| (*leaf, leaf * n)).collect();
        let total: u64 = mapped_bytes.values().sum();
        let huge: u64 = mapped_bytes
            .iter()
            .filter(|(leaf, _)| **leaf >= 2 << 20)
            .map(|(_, b)| b)
            .sum();
        Self {
            mapped_bytes,
            huge_share: if total == 0 {
                0.0
            } else {
                huge as f64 / total as f64
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BootSummary {
    pub kernel: PathBuf,
    pub format: KernelFormat,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// `--boot-marker`, if given.
    pub boot_marker: Option<String>,
    pub vcpus: usize,
    pub memory_bytes: u64,
    pub end: End,
    pub exit_code: u8,
    pub boot: BootTimes,
    /// KVM's leaves when the guest ended (None where KVM reports no counts).
    pub stage2_share: Option<LeafShare>,
    pub stage2: Stage2Report,
    /// Guest console output that never reached stdout (stdout not read or closed).
    pub console: ConsoleLoss,
    /// The PCI functions passed through, their BARs and predicted leaves.
    pub passthrough: Vec<crate::vfio::Passthrough>,
    /// granule's own memory and start-up time, measured when the guest stopped.
    pub footprint: crate::footprint::Footprint,
    /// KVM's exit counters by name, summed over the vCPUs.
    pub exits: std::collections::BTreeMap<String, u64>,
    /// For a bzImage: where its kernel was decompressed (None for other kernels).
    pub decompression: Option<crate::kernel_payload::choice::Decompression>,
}

pub use crate::console::ConsoleLoss;

/// The phase breakdown line, and the marker line when a marker was asked for.
fn render_phases(b: &BootTimes) -> String {
    let p = &b.phases;
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |ms| format!("{ms:.1}"));
    let mut out = format!(
        "granule: boot phases (ms): VMM set-up {:.1}, kernel load {:.1}, to the first instruction {}, kernel until init {}, init until marker {}\n",
        p.vmm_setup_ms,
        p.kernel_load_ms,
        opt(p.until_first_instruction_ms),
        opt(p.kernel_until_init_ms),
        opt(p.init_until_marker_ms)
    );
    if let Some(ms) = b.marker_ms {
        out.push_str(&format!(
            "granule: boot marker on the console {ms:.1} ms after granule started\n"
        ));
    }
    out
}

/// The lines granule prints on stderr after the run.
pub fn render(s: &BootSummary) -> String {
    let mut out = format!("granule: {}\n", s.end.describe());
    match s.boot.userspace_ms {
        Some(ms) => out.push_str(&format!(
            "granule: boot time: guest userspace {ms:.1} ms after granule started\n"
        )),
        None => out.push_str("granule: boot time: the guest never wrote the boot timer port\n"),
    }
    out.push_str(&render_phases(&s.boot));
    if let (Some(text), None) = (&s.boot_marker, s.boot.marker_ms) {
        out.push_str(&format!(
            "granule: boot marker {text:?} never appeared on the console\n"
        ));
    }
    if let Some(d) = &s.decompression {
        out.push_str(&format!("granule: {}\n", d.describe()));
    }
    let b = &s.boot;
    let first = b
        .first_kvm_run_ms
        .map_or(String::new(), |ms| format!(", first KVM_RUN {ms:.1}"));
    out.push_str(&format!(
        "granule: set-up (ms after start): memory mapped {:.1}, kernel loaded {:.1}, vCPUs started {:.1}{first}\n",
        b.memory_mapped_ms, b.kernel_loaded_ms, b.vcpus_started_ms
    ));
    if let Some(share) = s
        .stage2_share
        .as_ref()
        .filter(|s| s.mapped_bytes.values().any(|b| *b > 0))
    {
        let parts: Vec<String> = share
            .mapped_bytes
            .iter()
            .filter(|(_, b)| **b > 0)
            .map(|(leaf, b)| {
                format!(
                    "{} in {} leaves",
                    crate::units::format_size(*b),
                    crate::units::format_size(*leaf)
                )
            })
            .collect();
        out.push_str(&format!(
            "granule: stage 2 after boot: {} ({:.0}% of mapped guest memory in huge leaves)\n",
            parts.join(", "),
            share.huge_share * 100.0
        ));
    }
    for d in &s.passthrough {
        out.push_str(&render_passthrough(d));
    }
    out.push_str(&crate::footprint::render(&s.footprint, "granule: "));
    out
}

/// A device's lines: how it was opened, and each BAR with its predicted leaves.
fn render_passthrough(d: &crate::vfio::Passthrough) -> String {
    use crate::units::format_size as sz;
    let mut out = format!(
        "granule: passthrough {} as guest 00:{:02x}.0, IOMMU group {}, {} ({})\n",
        d.bdf,
        d.guest_slot,
        d.group,
        d.iommu.name(),
        d.iommu_reason
    );
    for b in &d.bars {
        let leaves: Vec<String> = b
            .predicted
            .iter()
            .map(|p| match &p.reason {
                Some(r) => format!("{} in {} leaves ({r})", sz(p.size), sz(p.leaf)),
                None => format!("{} in {} leaves", sz(p.size), sz(p.leaf)),
            })
            .collect();
        let how = if b.areas.is_empty() {
            "trapped".to_string()
        } else {
            format!("predicted {}", leaves.join(", "))
        };
        out.push_str(&format!(
            "granule:   BAR {} {} {} at {:#x}: {how}\n",
            b.index,
            b.kind,
            sz(b.size),
            b.gpa
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_the_spans_between_the_marks() {
        let p = BootPhases::between(2.0, 5.0, Some(9.0), Some(100.0), Some(130.0));
        assert_eq!(
            p,
            BootPhases {
                vmm_setup_ms: 2.0,
                kernel_load_ms: 3.0,
                until_first_instruction_ms: Some(4.0),
                kernel_until_init_ms: Some(91.0),
                init_until_marker_ms: Some(30.0),
            }
        );
        let p = BootPhases::between(2.0, 5.0, Some(9.0), None, Some(130.0));
        assert_eq!(
            (p.kernel_until_init_ms, p.init_until_marker_ms),
            (None, None),
            "no boot timer write: neither span around it"
        );
        let p = BootPhases::between(2.0, 5.0, Some(9.0), Some(100.0), Some(50.0));
        assert_eq!(
            (p.kernel_until_init_ms, p.init_until_marker_ms),
            (Some(91.0), None),
            "a marker line from the kernel's log, before init"
        );
    }

    #[test]
    fn exit_codes_follow_the_convention() {
        assert_eq!(End::PowerOff.exit_code(), 0);
        assert_eq!(End::Reboot { via: "x".into() }.exit_code(), 0);
        let p = End::Panic {
            reason: "Kernel panic - not syncing: oops".into(),
            via: "pvpanic".into(),
        };
        assert_eq!(p.exit_code(), 3);
        assert!(p.describe().contains("not syncing: oops"));
        assert_eq!(End::TimedOut.exit_code(), 5);
    }

    #[test]
    fn leaf_share_counts_bytes_not_leaves() {
        let s = LeafShare::from_counts(&BTreeMap::from([(4096, 512), (2 << 20, 3)]));
        assert_eq!(s.mapped_bytes[&4096], 2 << 20);
        assert!((s.huge_share - 0.75).abs() < 1e-9);
        assert_eq!(LeafShare::from_counts(&BTreeMap::new()).huge_share, 0.0);
    }
}
