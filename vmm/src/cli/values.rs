//! Value parsers for the command line.

use std::time::Duration;

/// The most vCPUs accepted on the command line; KVM's own limit is checked at run time.
pub const MAX_VCPUS_ARG: usize = 4096;

/// A vCPU count: 1 to [`MAX_VCPUS_ARG`].
pub fn parse_vcpus(s: &str) -> Result<usize, String> {
    let n: usize = s.trim().parse().map_err(|_| {
        format!("invalid vCPU count '{s}': expected a whole number from 1 to {MAX_VCPUS_ARG}")
    })?;
    if n == 0 || n > MAX_VCPUS_ARG {
        return Err(format!(
            "invalid vCPU count '{s}': expected a whole number from 1 to {MAX_VCPUS_ARG}"
        ));
    }
    Ok(n)
}

/// The most repeats `granule stress --repeat` accepts.
pub const MAX_REPEAT: usize = 1000;

/// How many times to repeat the benchmark: 1 to [`MAX_REPEAT`].
pub fn parse_repeat(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_REPEAT).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid repeat count '{s}': expected a whole number from 1 to {MAX_REPEAT}"
        )),
    }
}

/// A leaf size for x86 planning: 2M or 1G.
pub fn parse_leaf(s: &str) -> Result<u64, String> {
    match crate::units::parse_size(s) {
        Ok(v) if v == 2 << 20 || v == 1 << 30 => Ok(v),
        _ => Err(format!("invalid leaf size '{s}': expected 2M or 1G")),
    }
}

/// The stress guest's stage-1 page size: 2M or 1G, and on arm64 also 4K (the size
/// upstream's arm64 guest maps with).
pub fn parse_stress_guest_page(s: &str) -> Result<u64, String> {
    let four_k = cfg!(target_arch = "aarch64");
    match crate::units::parse_size(s) {
        Ok(v) if v == 2 << 20 || v == 1 << 30 || (four_k && v == 4 << 10) => Ok(v),
        Ok(4096) => Err(format!(
            "invalid guest page size '{s}': 4K is arm64 only (x86 stress maps with 2M or 1G)"
        )),
        _ if four_k => Err(format!(
            "invalid guest page size '{s}': expected 4K, 2M or 1G"
        )),
        _ => Err(format!("invalid guest page size '{s}': expected 2M or 1G")),
    }
}

/// A whole number of GiB, at least 1 (the stress -m and -s options).
pub fn parse_gib(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=1 << 20).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid size '{s}': expected a whole number of GiB from 1 to 1048576"
        )),
    }
}

/// A stress chunk backing.
pub fn parse_stress_backing(s: &str) -> Result<crate::memory::Backing, String> {
    use crate::memory::Backing;
    match Backing::parse(s) {
        Some(b @ (Backing::Anon4k | Backing::Thp | Backing::Hugetlb2m | Backing::Hugetlb1g)) => {
            Ok(b)
        }
        _ => Err(format!(
            "invalid backing '{s}': expected 4k, thp, hugetlb-2m or hugetlb-1g"
        )),
    }
}

/// The text `hello` prints: at most what fits the program image.
pub fn parse_text(s: &str) -> Result<String, String> {
    // The limit is x86's image layout; other arches refuse `run hello` later anyway.
    const MAX: usize = 4096;
    if s.len() > MAX {
        return Err(format!(
            "the text is {} bytes; at most {MAX} fit: shorten it",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// Longest `--boot-marker` text: well inside the console line the watcher keeps.
pub const MAX_BOOT_MARKER: usize = 256;

/// `--boot-marker`: non-empty text of one line, at most [`MAX_BOOT_MARKER`] bytes.
pub fn parse_boot_marker(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the boot marker is empty: give the text of a console line".into());
    }
    if s.contains(['\n', '\r']) {
        return Err("the boot marker spans lines: give text from one console line".into());
    }
    if s.len() > MAX_BOOT_MARKER {
        return Err(format!(
            "the boot marker is {} bytes; at most {MAX_BOOT_MARKER}: shorten it",
            s.len()
        ));
    }
    Ok(s.to_string())
}

pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let form = "expected a positive number of seconds, e.g. 30 or 2.5";
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid timeout '{s}': {form}"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("invalid timeout '{s}': {form}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse_u64(s: &str) -> Result<u64, String> {
    crate::units::parse_addr(s).ok_or_else(|| {
        format!("invalid address '{s}': expected a 64-bit number, decimal or 0x hex")
    })
}

pub fn parse_count(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid count '{s}': expected 1 to {}", u32::MAX))
}

pub fn parse_port(s: &str) -> Result<u16, String> {
    let v = parse_u64(s)
        .map_err(|_| format!("invalid port '{s}': expected 0 to 65535, decimal or 0x hex"))?;
    u16::try_from(v)
        .map_err(|_| format!("invalid port '{s}': expected 0 to 65535, decimal or 0x hex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stress_guest_page() {
        assert_eq!(parse_stress_guest_page("2M"), Ok(2 << 20));
        assert_eq!(parse_stress_guest_page("1G"), Ok(1 << 30));
        let four_k = parse_stress_guest_page("4K");
        if cfg!(target_arch = "aarch64") {
            assert_eq!(four_k, Ok(4096));
        } else {
            assert!(four_k.unwrap_err().contains("4K is arm64 only"));
        }
        assert!(parse_stress_guest_page("64K")
            .unwrap_err()
            .contains("invalid guest page size '64K'"));
    }

    #[test]
    fn vcpus() {
        assert_eq!(parse_vcpus("2"), Ok(2));
        for bad in ["0", "-1", "x", "", "99999", "1.5"] {
            let e = parse_vcpus(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")) && e.contains("1 to"), "{e}");
        }
    }

    #[test]
    fn timeouts_ports_addresses() {
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        for bad in ["0", "-3", "nan", "inf", "soon"] {
            assert!(parse_timeout(bad)
                .unwrap_err()
                .contains("positive number of seconds"));
        }
        assert_eq!(parse_port("0x3f8"), Ok(0x3f8));
        assert!(parse_port("70000").unwrap_err().contains("0 to 65535"));
        assert_eq!(parse_u64("0xd0000000"), Ok(0xd000_0000));
        assert!(parse_u64("0xzz").unwrap_err().contains("'0xzz'"));
    }
}
