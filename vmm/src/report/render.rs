//! The human-readable stage-2 report and plan.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Stage2Report, Verdict};
use crate::stage2::{PlanRange, Target};
use crate::units::format_size;

/// Rows of the plan table shown before the rest are summarised.
const MAX_ROWS: usize = 16;

fn leaf(size: u64) -> String {
    format_size(size)
        .replace(" KiB", "K")
        .replace(" MiB", "M")
        .replace(" GiB", "G")
}

/// One line naming the MMU a plan is for.
pub fn describe_target(t: &Target) -> String {
    match t {
        Target::X86Tdp { max_leaf } => format!("x86 TDP (leaves up to {})", leaf(*max_leaf)),
        Target::X86Shadow {
            max_leaf,
            guest_page,
        } => format!(
            "x86 shadow paging (leaves up to {}, guest pages {})",
            leaf(*max_leaf),
            leaf(*guest_page)
        ),
        Target::Arm64 { granule } => format!("arm64 stage 2 ({granule:?} granule)"),
    }
}

/// The plan as a table (the first [`MAX_ROWS`] ranges) and bytes per leaf size.
pub fn render_plan(plan: &[PlanRange]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "  {:<29} {:>10} {:>5} {:>5}  why not larger",
        "guest-physical range", "size", "leaf", "best"
    );
    for p in plan.iter().take(MAX_ROWS) {
        let why = p
            .reason
            .map_or(String::new(), |x| format!("{x} (fix: {})", x.fix()));
        let _ = writeln!(
            o,
            "  {:#014x}-{:#014x} {:>10} {:>5} {:>5}  {why}",
            p.gpa,
            p.gpa + p.size,
            format_size(p.size),
            leaf(p.leaf),
            leaf(p.best)
        );
    }
    if plan.len() > MAX_ROWS {
        let _ = writeln!(
            o,
            "  ... {} more ranges (see the JSON output)",
            plan.len() - MAX_ROWS
        );
    }
    let mut by_leaf = BTreeMap::new();
    for p in plan {
        *by_leaf.entry(p.leaf).or_insert(0u64) += p.size;
    }
    let total = by_leaf.values().sum::<u64>().max(1);
    let parts: Vec<String> = by_leaf
        .iter()
        .rev()
        .map(|(l, b)| {
            format!(
                "{} in {} leaves ({:.1}%)",
                format_size(*b),
                leaf(*l),
                *b as f64 * 100.0 / total as f64
            )
        })
        .collect();
    let _ = writeln!(o, "  predicted: {}", parts.join(", "));
    o
}

pub fn render(r: &Stage2Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "stage-2 report: {}, backend {:?}",
        describe_target(&r.target),
        r.backend
    );
    o.push_str(&render_plan(&r.plan));
    for z in &r.zones {
        let host = match (z.present, z.huge) {
            (Some(p), Some(h)) => format!("present {}, huge {}", format_size(p), format_size(h)),
            _ => "no PAGEMAP_SCAN on this kernel".into(),
        };
        let prefault = z
            .prefault_s
            .map_or(String::new(), |s| format!(", prefault {s:.3}s"));
        let chosen = z
            .backing_default
            .as_ref()
            .map_or(String::new(), |why| format!(" ({why})"));
        let _ = writeln!(
            o,
            "  zone {}: {} {}{chosen} at hva {:#x}: {host} (map {:.3}s{prefault})",
            z.zone,
            format_size(z.size),
            z.backing.name(),
            z.hva,
            z.map_s
        );
    }
    let sizes: std::collections::BTreeSet<u64> = r
        .expected_max
        .keys()
        .chain(r.observed.iter().flat_map(|m| m.keys()))
        .copied()
        .collect();
    let _ = writeln!(
        o,
        "  {:<6} {:>21} {:>12}",
        "leaves", "expected", "KVM reports"
    );
    for s in sizes {
        let lo = r.expected_min.get(&s).copied().unwrap_or(0);
        let hi = r.expected_max.get(&s).copied().unwrap_or(0);
        let exp = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}..{hi}")
        };
        let obs = r
            .observed
            .as_ref()
            .map_or("-".into(), |m| m.get(&s).copied().unwrap_or(0).to_string());
        let _ = writeln!(o, "  {:<6} {:>21} {:>12}", leaf(s), exp, obs);
    }
    for n in &r.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    let verdict = match r.verdict {
        Verdict::Match => "KVM's leaves match the prediction",
        Verdict::Mismatch => "MISMATCH: KVM's leaves differ from the prediction",
        Verdict::PredictedOnly => "predicted only (this KVM reports no leaf counts)",
    };
    let _ = writeln!(o, "  verdict: {verdict}");
    o
}

/// KVM's exit counters, one line each, largest first (for `--verbose`).
pub fn render_exit_counts(counts: &std::collections::BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "granule: exits: KVM has no vCPU statistics here\n".into();
    }
    let mut rows: Vec<(&String, &u64)> = counts.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut o = String::from("granule: KVM exits by reason (all vCPUs):\n");
    for (name, n) in rows {
        let _ = writeln!(o, "  {name:<24} {n:>12}");
    }
    o
}
