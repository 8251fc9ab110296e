//! `granule stress compare`: result files side by side, as a table and an SVG chart.

use std::fmt::Write;

use super::result::{StressReport, PHASE_NAMES};

/// The table: one column per file (median of its runs), one row per phase, then the
/// facts that explain differences (backend, FWB, vCPUs, sizes, backing, mode).
pub fn table(reports: &[StressReport]) -> String {
    let mut o = String::new();
    let w = 28;
    let _ = write!(o, "{:<10}", "");
    for r in reports {
        let _ = write!(o, " {:>w$}", r.label());
    }
    let _ = writeln!(o);
    for name in PHASE_NAMES {
        let _ = write!(o, "{name:<10}");
        for r in reports {
            let _ = write!(o, " {:>w$}", format!("{:.6}s", r.median().get(name)));
        }
        let _ = writeln!(o);
    }
    type Fact = fn(&StressReport) -> String;
    let facts: [(&str, Fact); 7] = [
        ("backend", |r| r.host.backend.clone()),
        ("fwb", |r| r.host.fwb.map_or("-".into(), |f| f.to_string())),
        ("vcpus", |r| r.config.vcpus.to_string()),
        ("memory", |r| {
            format!("{}G/{}G slots", r.config.max_mem_gib, r.config.slot_gib)
        }),
        ("runs", |r| r.runs.len().to_string()),
        ("kernel", |r| r.host.kernel.clone()),
        ("cpu", |r| r.host.cpu_model.chars().take(24).collect()),
    ];
    for (name, f) in facts {
        let _ = write!(o, "{name:<10}");
        for r in reports {
            let _ = write!(o, " {:>w$}", f(r));
        }
        let _ = writeln!(o);
    }
    o
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A grouped bar chart: phases along x, one bar per file, seconds up y (log scale, so
/// the sub-millisecond reset phase stays visible next to multi-second ones).
pub fn svg(reports: &[StressReport]) -> String {
    const COLORS: [&str; 6] = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    ];
    let (width, height, left, top, bottom) = (860.0, 420.0, 70.0, 30.0, 90.0);
    let plot_h = height - top - bottom;
    let values: Vec<Vec<f64>> = reports
        .iter()
        .map(|r| PHASE_NAMES.map(|p| r.median().get(p)).to_vec())
        .collect();
    let max = values.iter().flatten().copied().fold(1e-6, f64::max);
    let min = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(max, f64::min)
        .min(max / 10.0);
    let (lo, hi) = (
        min.log10().floor(),
        max.log10().ceil().max(min.log10().floor() + 1.0),
    );
    let y = |v: f64| top + plot_h * (1.0 - ((v.max(10f64.powf(lo))).log10() - lo) / (hi - lo));
    let group_w = (width - left - 20.0) / PHASE_NAMES.len() as f64;
    let bar_w = (group_w * 0.8) / reports.len().max(1) as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{left}" y="18" font-size="14">granule stress: median seconds per phase (log scale)</text>"#
    );
    let mut e = lo;
    while e <= hi {
        let yy = y(10f64.powf(e));
        let _ = writeln!(
            o,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">1e{e}</text>"##,
            width - 20.0,
            left - 6.0,
            yy + 4.0
        );
        e += 1.0;
    }
    for (pi, name) in PHASE_NAMES.iter().enumerate() {
        let gx = left + group_w * pi as f64 + group_w * 0.1;
        for (ri, vals) in values.iter().enumerate() {
            let v = vals[pi];
            let (x, yy) = (gx + bar_w * ri as f64, y(v));
            let _ = writeln!(
                o,
                r#"<rect x="{x:.1}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {name}: {v:.6}s</title></rect>"#,
                bar_w * 0.9,
                (top + plot_h - yy).max(0.0),
                COLORS[ri % COLORS.len()],
                escape(&reports[ri].label())
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{name}</text>"#,
            gx + group_w * 0.4,
            top + plot_h + 16.0
        );
    }
    for (ri, r) in reports.iter().enumerate() {
        let ly = top + plot_h + 36.0 + 16.0 * (ri / 2) as f64;
        let lx = left + 380.0 * (ri % 2) as f64;
        let _ = writeln!(
            o,
            r#"<rect x="{lx}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{}" y="{ly:.1}">{}</text>"#,
            ly - 9.0,
            COLORS[ri % COLORS.len()],
            lx + 14.0,
            escape(&r.label())
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stress::result::{ConfigInfo, HostInfo, Phases, RunResult};
    use crate::stress::OnFault;

    fn report(arch: &str, run1: f64) -> StressReport {
        StressReport {
            tool: "granule stress".into(),
            host: HostInfo {
                arch: arch.into(),
                kernel: "6.12".into(),
                cpu_model: "cpu".into(),
                cpus: 2,
                backend: "svm_npt".into(),
                hardware_stage2: true,
                fwb: None,
            },
            config: ConfigInfo {
                vcpus: 2,
                max_mem_gib: 4,
                slot_gib: 1,
                slots: 4,
                backing: "4k".into(),
                on_fault: OnFault::Skip,
                guest_page: 2 << 20,
            },
            runs: [run1, run1 * 3.0, run1 * 2.0]
                .iter()
                .map(|&r| RunResult {
                    phases: Phases {
                        run1: r,
                        reset: 0.0001,
                        run2: 0.5,
                        ro: 1.0,
                        rw: 2.0,
                    },
                    line: String::new(),
                    stats: Default::default(),
                    predicted_run1: Default::default(),
                    guest_fwb: None,
                    efaults: 0,
                    mmio_faults: 0,
                    footprint: None,
                })
                .collect(),
        }
    }

    #[test]
    fn table_shows_medians_side_by_side() {
        let t = table(&[report("x86_64", 1.0), report("aarch64", 4.0)]);
        let run1 = t.lines().find(|l| l.starts_with("run1")).unwrap();
        assert!(
            run1.contains("2.000000s") && run1.contains("8.000000s"),
            "{t}"
        );
        assert!(
            t.contains("x86_64/svm_npt 4k skip") && t.contains("aarch64/svm_npt 4k skip"),
            "{t}"
        );
    }

    #[test]
    fn svg_has_a_bar_per_phase_and_run_and_is_well_formed() {
        let s = svg(&[report("x86_64", 1.0), report("aarch64", 4.0)]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(
            s.matches("<rect x=").count(),
            5 * 2 + 2,
            "10 bars and 2 legend swatches"
        );
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }
}
