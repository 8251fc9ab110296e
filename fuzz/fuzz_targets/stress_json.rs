//! `granule stress compare`'s reader: any text as a result file; what parses is put in
//! the table and the chart, alone and beside itself.
#![no_main]

use granule_vmm::stress::compare;
use granule_vmm::stress::StressReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(report) = serde_json::from_str::<StressReport>(text) else {
        return;
    };
    if report.runs.is_empty() {
        return;
    }
    let both = [report.clone(), report];
    let _ = compare::table(&both[..1]);
    let _ = compare::svg(&both[..1]);
    let _ = compare::table(&both);
    let _ = compare::svg(&both);
});
