//! granule's own cost as a process, for benchmarks and the run summary: the time from
//! `main` to the first guest entry, and the memory the process holds besides the guest
//! RAM the guest touched.
//!
//! Memory is read from /proc/self/smaps_rollup when the guest has stopped and its RAM
//! is still mapped, before the run's stage-2 report is built (its scans of guest RAM
//! come after the guest and are not what running it costs): the process's resident
//! bytes minus the resident bytes of the guest RAM zones (both without hugetlb pages,
//! which smaps counts apart). What is left is the VMM: code, heap, thread stacks, page
//! tables for its own mappings.

use std::sync::OnceLock;
use std::time::Instant;

use serde::{Deserialize, Serialize};

static PROCESS_START: OnceLock<Instant> = OnceLock::new();
static FIRST_ENTRY: OnceLock<Instant> = OnceLock::new();

/// Records when `main` started (the binary does; library callers need not).
pub fn mark_process_start(at: Instant) {
    let _ = PROCESS_START.set(at);
}

/// Marks a vCPU thread about to make its first KVM_RUN (the process's first is kept).
pub fn mark_first_entry() {
    let _ = FIRST_ENTRY.get_or_init(Instant::now);
}

/// What granule itself cost, measured when the guest stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Milliseconds from `main` to the first KVM_RUN (None without both marks).
    pub first_kvm_run_ms: Option<f64>,
    /// Resident bytes of the whole process (None without smaps_rollup).
    pub process_rss_bytes: Option<u64>,
    /// Of those, guest RAM the guest or set-up touched.
    pub guest_resident_bytes: u64,
    /// The rest: granule's own memory.
    pub vmm_bytes: Option<u64>,
}

/// The `Rss:` line of smaps_rollup text, in bytes.
fn rollup_rss(text: &str) -> Option<u64> {
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("Rss:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

/// The footprint now, with `guest_resident` bytes of guest RAM resident.
pub fn measure(guest_resident: u64) -> Footprint {
    let process = std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|t| rollup_rss(&t));
    let first = match (PROCESS_START.get(), FIRST_ENTRY.get()) {
        (Some(start), Some(entry)) => {
            Some(entry.saturating_duration_since(*start).as_secs_f64() * 1000.0)
        }
        _ => None,
    };
    Footprint {
        first_kvm_run_ms: first,
        process_rss_bytes: process,
        guest_resident_bytes: guest_resident,
        vmm_bytes: process.map(|p| p.saturating_sub(guest_resident)),
    }
}

/// At the end of a run: KVM's statistics, then the footprint. In that order: with
/// smaps read before them, KVM reported no 1G leaf for a passed-through BAR (x86 bed;
/// the kernel's page walk for smaps splits a huge PFN mapping, and KVM drops the leaf
/// behind it). Both come before the stage-2 report, whose scans of guest RAM are not
/// what running the guest cost.
pub fn stats_then_footprint(
    vm: &kvm_ioctls::VmFd,
    ram: &crate::memory::GuestRam,
) -> (Option<crate::observe::stats::Stats>, Footprint) {
    let stats = crate::observe::stats::read(vm)
        .map_err(|e| tracing::warn!("no KVM statistics: {e}"))
        .ok();
    (stats, measure(resident_in(&zone_ranges(ram))))
}

/// Host address ranges of guest RAM's zones.
pub fn zone_ranges(ram: &crate::memory::GuestRam) -> Vec<(u64, u64)> {
    ram.zones()
        .iter()
        .map(|z| {
            let start = z.map.as_ptr() as u64;
            (start, start.saturating_add(z.map.len() as u64))
        })
        .collect()
}

/// Resident bytes (smaps Rss) of the mappings in `ranges` (host addresses): guest RAM's
/// zones ([`zone_ranges`]) and any other guest memory (stress's chunk).
pub fn resident_in(ranges: &[(u64, u64)]) -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    ranges
        .iter()
        .map(|&(start, end)| crate::observe::smaps::facts(&text, start, end).rss)
        .sum()
}

/// One line for the human summary, after `prefix`.
pub fn render(f: &Footprint, prefix: &str) -> String {
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let memory = f.vmm_bytes.map_or("unknown".into(), |b| {
        format!("{:.1} MiB resident besides guest RAM", mib(b))
    });
    let entry = f.first_kvm_run_ms.map_or(String::new(), |ms| {
        format!(", first KVM_RUN {ms:.1} ms after start")
    });
    format!("{prefix}footprint: {memory}{entry}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollup_rss_line_is_read_in_bytes() {
        let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:                5120 kB\nPss:   4000 kB\n";
        assert_eq!(rollup_rss(text), Some(5120 * 1024));
        assert_eq!(rollup_rss("Pss: 1 kB\n"), None);
        assert_eq!(rollup_rss("Rss: lots kB\n"), None);
    }

    #[test]
    fn the_vmm_share_is_what_guest_ram_does_not_explain() {
        let f = measure(0);
        assert!(f.process_rss_bytes.is_some_and(|b| b > 0), "{f:?}");
        assert_eq!(f.vmm_bytes, f.process_rss_bytes);
        let all = measure(u64::MAX);
        assert_eq!(all.vmm_bytes, Some(0), "never negative");
    }
}
