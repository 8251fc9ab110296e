//! Per-VMA page-size facts from /proc/self/smaps.

use serde::Serialize;

/// What smaps says about the VMAs overlapping one host range, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SmapsFacts {
    /// KernelPageSize of the VMAs (hugetlb page size, else the base page).
    pub kernel_page_size: u64,
    pub rss: u64,
    pub anon_huge_pages: u64,
    pub shmem_pmd_mapped: u64,
    pub file_pmd_mapped: u64,
    pub private_hugetlb: u64,
    pub shared_hugetlb: u64,
}

fn kb(line: &str, key: &str) -> Option<u64> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    Some(rest.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
}

/// Sums the facts of every VMA in `smaps` that overlaps `[start, end)`.
pub fn facts(smaps: &str, start: u64, end: u64) -> SmapsFacts {
    let mut f = SmapsFacts::default();
    let mut inside = false;
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = head.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                inside = a < end && b > start;
                continue;
            }
        }
        if !inside {
            continue;
        }
        let fields: [(&str, &mut u64); 6] = [
            ("Rss", &mut f.rss),
            ("AnonHugePages", &mut f.anon_huge_pages),
            ("ShmemPmdMapped", &mut f.shmem_pmd_mapped),
            ("FilePmdMapped", &mut f.file_pmd_mapped),
            ("Private_Hugetlb", &mut f.private_hugetlb),
            ("Shared_Hugetlb", &mut f.shared_hugetlb),
        ];
        for (key, slot) in fields {
            if let Some(v) = kb(line, key) {
                *slot += v;
            }
        }
        if let Some(v) = kb(line, "KernelPageSize") {
            f.kernel_page_size = f.kernel_page_size.max(v);
        }
    }
    f
}

/// Reads this process's smaps for `[start, end)`.
pub fn read(start: u64, end: u64) -> std::io::Result<SmapsFacts> {
    Ok(facts(
        &std::fs::read_to_string("/proc/self/smaps")?,
        start,
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_only_overlapping_vmas() {
        let smaps = "\
7f0000000000-7f0040000000 rw-s 00000000 00:0f 1 /memfd:granule (deleted)
Rss:                   0 kB
KernelPageSize:  1048576 kB
Shared_Hugetlb:  1048576 kB
7f0040000000-7f0080000000 rw-p 00000000 00:00 0
Rss:             1048576 kB
KernelPageSize:        4 kB
AnonHugePages:   1046528 kB
";
        let f = facts(smaps, 0x7f00_4000_0000, 0x7f00_8000_0000);
        assert_eq!(
            (f.rss, f.anon_huge_pages, f.kernel_page_size),
            (1 << 30, 1046528 * 1024, 4096)
        );
        let g = facts(smaps, 0x7f00_0000_0000, 0x7f00_4000_0000);
        assert_eq!((g.shared_hugetlb, g.kernel_page_size), (1 << 30, 1 << 30));
    }
}
