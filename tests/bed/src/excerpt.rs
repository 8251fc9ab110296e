//! What a failure message shows of a bed's serial log. The log's last lines alone do not
//! say enough when the bed's kernel hung: by the time the run ends its console has
//! repeated the same stall report for minutes, the report's first, fullest instance
//! and the case that was running long scrolled away. So the excerpt also gives the
//! scenario's last progress markers and the bed kernel's first complaint.

/// Progress markers kept: enough to see the case that was running and the one before.
const MARKERS: usize = 6;
/// Lines kept from the bed kernel's first complaint on: its registers and stack.
const COMPLAINT_LINES: usize = 60;
/// The log's last lines.
const TAIL_LINES: usize = 40;

/// Words that start a kernel report of trouble in the bed's own kernel.
const COMPLAINTS: [&str; 7] = [
    "BUG:",
    "rcu: INFO:",
    "Kernel panic",
    "Oops",
    "Internal error",
    "WARNING:",
    "Call trace:",
];

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Lines the bed printed itself: everything outside the TEXT and JSON sections, which
/// hold what the scenario's commands printed (a level-2 guest's own panic among them).
fn bed_lines(text: &str) -> Vec<&str> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(marker) = line.strip_prefix("GRANULE-BED: ") {
            if marker.starts_with("TEXT-BEGIN ") || marker.starts_with("JSON-BEGIN ") {
                inside = true;
            } else if marker.starts_with("TEXT-END ") || marker.starts_with("JSON-END ") {
                inside = false;
            }
        }
        if !inside {
            out.push(line);
        }
    }
    out
}

/// The scenario's last progress markers, the bed kernel's first complaint (when it
/// made one) and the log's last lines.
pub(crate) fn failure_excerpt(text: &str) -> String {
    let lines = bed_lines(text);
    let progress: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            l.strip_prefix("GRANULE-BED: ").is_some_and(|m| {
                ["BOOTED ", "BEGIN ", "RUNNING ", "CASE ", "END "]
                    .iter()
                    .any(|tag| m.starts_with(tag))
            })
        })
        .collect();
    let mut out = format!(
        "last progress markers:\n{}\n",
        progress[progress.len().saturating_sub(MARKERS)..].join("\n")
    );
    if let Some(first) = lines
        .iter()
        .position(|l| COMPLAINTS.iter().any(|c| l.contains(c)))
    {
        let end = (first + COMPLAINT_LINES).min(lines.len());
        out.push_str(&format!(
            "the bed kernel's first complaint:\n{}\n",
            lines[first..end].join("\n")
        ));
    }
    out.push_str(&format!(
        "last {TAIL_LINES} lines:\n{}",
        tail(text, TAIL_LINES)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_bed_shows_the_running_case_and_the_first_report_not_only_the_tail() {
        let mut log = String::from(
            "GRANULE-BED: BOOTED arch=aarch64\nGRANULE-BED: BEGIN probe\n\
             GRANULE-BED: RUNNING 2cpu-stdin\nGRANULE-BED: CASE 2cpu-stdin rc=0\n\
             GRANULE-BED: TEXT-BEGIN 2cpu-stdin.out\n[ 1.0] Kernel panic - not a bed line\n\
             GRANULE-BED: TEXT-END 2cpu-stdin.out\nGRANULE-BED: RUNNING reboot\n\
             [ 54.0] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n\
             [ 54.1] Task dump for CPU 1:\n",
        );
        for i in 0..100 {
            log.push_str(&format!("[ {}.0] watchdog: BUG: soft lockup\n", 60 + i));
        }
        let e = failure_excerpt(&log);
        assert!(e.contains("GRANULE-BED: RUNNING reboot"), "{e}");
        assert!(e.contains("Task dump for CPU 1:"), "{e}");
        assert!(!e.contains("not a bed line"), "{e}");
        assert!(e.contains("[ 159.0] watchdog"), "{e}");
    }

    #[test]
    fn a_quiet_log_has_no_complaint_section() {
        let e = failure_excerpt("GRANULE-BED: BEGIN stress\nsome line\n");
        assert!(!e.contains("first complaint"), "{e}");
        assert!(e.contains("GRANULE-BED: BEGIN stress"), "{e}");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("", 2), "");
    }
}
