//! Results of `granule stress`: the upstream line, and JSON with the host facts needed
//! to compare runs across machines.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::OnFault;

/// The five timed phases, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    pub run1: f64,
    pub reset: f64,
    pub run2: f64,
    pub ro: f64,
    pub rw: f64,
}

pub const PHASE_NAMES: [&str; 5] = ["run1", "reset", "run2", "ro", "rw"];

impl From<[std::time::Duration; 5]> for Phases {
    fn from(p: [std::time::Duration; 5]) -> Self {
        let f = |d: std::time::Duration| d.as_secs_f64();
        Self {
            run1: f(p[0]),
            reset: f(p[1]),
            run2: f(p[2]),
            ro: f(p[3]),
            rw: f(p[4]),
        }
    }
}

impl Phases {
    pub fn get(&self, name: &str) -> f64 {
        match name {
            "run1" => self.run1,
            "reset" => self.reset,
            "run2" => self.run2,
            "ro" => self.ro,
            _ => self.rw,
        }
    }
}

/// Upstream's `%ld.%.9lds`.
pub fn secs(d: Duration) -> String {
    format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
}

/// mmu_stress_test's result line, character for character.
pub fn upstream_line(p: [Duration; 5]) -> String {
    format!(
        "run1 = {}, reset = {}, run2 = {}, ro = {}, rw = {}",
        secs(p[0]),
        secs(p[1]),
        secs(p[2]),
        secs(p[3]),
        secs(p[4])
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    pub arch: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    /// KVM backend (svm_npt, vmx_ept, pvm_shadow, arm64_vhe, ...).
    pub backend: String,
    pub hardware_stage2: bool,
    /// arm64 FEAT_FWB (stage-2 forced write-back); None on x86.
    pub fwb: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigInfo {
    pub vcpus: usize,
    pub max_mem_gib: u64,
    pub slot_gib: u64,
    pub slots: u64,
    pub backing: String,
    pub on_fault: OnFault,
    pub guest_page: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub phases: Phases,
    pub line: String,
    /// KVM VM statistics after each phase (x86: pages_4k, pages_2m, pages_1g).
    pub stats: BTreeMap<String, BTreeMap<String, u64>>,
    /// The leaves granule's planner expects after run 1 for the aliased memory.
    #[serde(default)]
    pub predicted_run1: BTreeMap<String, u64>,
    /// arm64: FEAT_FWB as the guest's ID_AA64MMFR2_EL1 shows it.
    #[serde(default)]
    pub guest_fwb: Option<bool>,
    pub efaults: u64,
    pub mmio_faults: u64,
    /// granule's own memory and start-up time, measured after the last phase.
    #[serde(default)]
    pub footprint: Option<crate::footprint::Footprint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StressReport {
    pub tool: String,
    pub host: HostInfo,
    pub config: ConfigInfo,
    pub runs: Vec<RunResult>,
}

impl StressReport {
    /// A short name for tables and charts: arch/backend, backing, fault mode.
    pub fn label(&self) -> String {
        format!(
            "{}/{} {} {:?}",
            self.host.arch, self.host.backend, self.config.backing, self.config.on_fault
        )
        .to_lowercase()
    }

    /// Median of each phase over the runs.
    pub fn median(&self) -> Phases {
        let med = |f: &dyn Fn(&Phases) -> f64| {
            let mut v: Vec<f64> = self.runs.iter().map(|r| f(&r.phases)).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        Phases {
            run1: med(&|p| p.run1),
            reset: med(&|p| p.reset),
            run2: med(&|p| p.run2),
            ro: med(&|p| p.ro),
            rw: med(&|p| p.rw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_matches_upstreams_format() {
        let d = |s: u64, n: u32| Duration::new(s, n);
        assert_eq!(
            upstream_line([d(6, 873408794), d(0, 165898), d(0, 36000000), d(6, 150000000), d(7, 710000000)]),
            "run1 = 6.873408794s, reset = 0.000165898s, run2 = 0.036000000s, ro = 6.150000000s, rw = 7.710000000s"
        );
    }
}
