//! The parsers of command-line values a user types: memory zones, `--bar`, `--device`,
//! sizes, counts, timeouts, ports and addresses. Every input gives a value or an error
//! message that quotes it; none may panic.
#![no_main]

use granule_vmm::cli::values;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = granule_vmm::memory::parse_zone(s);
    let _ = granule_vmm::memory::hypothetical::parse_bar(s);
    let _ = granule_vmm::vfio::parse_device(s);
    let _ = values::parse_vcpus(s);
    let _ = values::parse_repeat(s);
    let _ = values::parse_leaf(s);
    let _ = values::parse_gib(s);
    let _ = values::parse_stress_backing(s);
    let _ = values::parse_text(s);
    let _ = values::parse_timeout(s);
    let _ = values::parse_u64(s);
    let _ = values::parse_port(s);
});
