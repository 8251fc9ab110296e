//! What every bed checks of a `stress` scenario's two results (skip, stop).

use std::path::PathBuf;

use crate::BedRun;

/// Where bed logs and results are kept.
pub fn logs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bed-logs")
}

/// The skip and stop results the scenario printed, each checked for the expected
/// backend, its fault mode and five measured phases, and saved as
/// `target/bed-logs/{arch}-stress-{mode}.json` (for `stress compare`).
pub fn stress_results(
    run: &BedRun,
    arch: &str,
    backend: &str,
    modes: &[&str],
) -> Vec<(serde_json::Value, PathBuf)> {
    modes
        .iter()
        .copied()
        .map(|mode| {
            let v = run
                .json(&format!("stress-{mode}"))
                .unwrap_or_else(|| panic!("no {mode} result\n{}", run.excerpt()));
            assert_eq!(v["host"]["arch"], arch, "{}", v["host"]);
            assert_eq!(v["host"]["backend"], backend, "{}", v["host"]);
            assert_eq!(v["config"]["on_fault"], mode);
            for phase in ["run1", "reset", "run2", "ro", "rw"] {
                let secs = v["runs"][0]["phases"][phase].as_f64().unwrap_or(0.0);
                assert!(secs > 0.0, "{mode} {phase}: {}", v["runs"][0]);
            }
            let file = logs_dir().join(format!("{arch}-stress-{mode}.json"));
            std::fs::write(&file, serde_json::to_string_pretty(&v).expect("JSON"))
                .expect("write result");
            (v, file)
        })
        .collect()
}
