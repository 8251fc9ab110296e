//! Which parts of a host mapping are backed by huge pages right now, from the
//! PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7+, no privilege needed).
//!
//! It reports PAGE_IS_HUGE per range but not the huge page's size: callers combine it
//! with the VMA's KernelPageSize (hugetlb) or take PMD size (THP).

use std::io;
use std::os::fd::AsRawFd;

/// struct page_region from include/uapi/linux/fs.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// struct pm_scan_arg from include/uapi/linux/fs.h.
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_HUGE: u64 = 1 << 6;
/// _IOWR('f', 16, struct pm_scan_arg).
const PAGEMAP_SCAN: libc::c_ulong = (3 << 30)
    | ((std::mem::size_of::<PmScanArg>() as libc::c_ulong) << 16)
    | ((b'f' as libc::c_ulong) << 8)
    | 16;

/// Present ranges of `[start, end)` with whether each is huge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
    pub huge: bool,
}

/// Scans `[start, end)` of this process. `Ok(None)` if the kernel has no PAGEMAP_SCAN.
pub fn scan(start: u64, end: u64) -> io::Result<Option<Vec<Range>>> {
    let pagemap = std::fs::File::open("/proc/self/pagemap")?;
    let mut out = Vec::new();
    let mut buf = vec![PageRegion::default(); 512];
    let mut pos = start;
    while pos < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            start: pos,
            end,
            vec: buf.as_mut_ptr() as u64,
            vec_len: buf.len() as u64,
            category_mask: PAGE_IS_PRESENT,
            return_mask: PAGE_IS_PRESENT | PAGE_IS_HUGE,
            ..Default::default()
        };
        // SAFETY: `arg` describes `buf`, which lives across the call and has room for
        // `vec_len` entries; the kernel writes at most that many and `walk_end`.
        let n = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) if out.is_empty() => Ok(None),
                _ => Err(e),
            };
        }
        for r in &buf[..n as usize] {
            out.push(Range {
                start: r.start,
                end: r.end,
                huge: r.categories & PAGE_IS_HUGE != 0,
            });
        }
        if arg.walk_end <= pos {
            break;
        }
        pos = arg.walk_end;
    }
    Ok(Some(out))
}

/// Bytes of `[start, end)` that are present, and that are huge.
pub fn present_and_huge(ranges: &[Range]) -> (u64, u64) {
    ranges.iter().fold((0, 0), |(p, h), r| {
        let len = r.end - r.start;
        (p + len, h + if r.huge { len } else { 0 })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_number_matches_the_kernel_header() {
        assert_eq!(std::mem::size_of::<PmScanArg>(), 96);
        assert_eq!(PAGEMAP_SCAN, 0xc060_6610);
    }

    #[test]
    fn scan_sees_thp_in_an_aligned_populated_mapping() {
        use crate::memory::{backing::Backing, mmap::AlignedMmap};
        let m = AlignedMmap::new(Backing::Thp, 8 << 20, 2 << 20, 0).unwrap();
        let base = m.as_ptr() as u64;
        for off in (0..8 << 20).step_by(4096) {
            // SAFETY: inside the mapping just made.
            unsafe { m.as_ptr().add(off).write_volatile(1) };
        }
        let Some(ranges) = scan(base, base + (8 << 20)).unwrap() else {
            eprintln!("SKIP: this kernel has no PAGEMAP_SCAN");
            return;
        };
        let (present, huge) = present_and_huge(&ranges);
        assert_eq!(present, 8 << 20);
        // THP in madvise mode on an aligned, fully written mapping: huge unless memory
        // is too fragmented, which a fresh test host is not; accept partial success.
        assert!(
            huge > 0
                || std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                    .map_or(true, |s| s.contains("[never]"))
        );
    }
}
