//! Checking the hugetlb pools before mapping anything, so a short pool is a clear error
//! with the fix, not a failed mmap (or a SIGBUS) later.

use std::collections::BTreeMap;

use thiserror::Error;

use super::zone::ZoneConfig;
use crate::units::format_size;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("this kernel offers no {} hugetlb pages (no {dir}); pick another backing", format_size(*page))]
    NoSuchSize { page: u64, dir: String },
    #[error("{} hugetlb pool too small: need {need} pages, {available} available ({free} free, {reserved} reserved); \
             {missing} more needed. Reserve them as root with:\n    {command}", format_size(*page))]
    Short {
        page: u64,
        need: u64,
        free: u64,
        reserved: u64,
        available: u64,
        missing: u64,
        command: String,
    },
}

/// One pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub total: u64,
    pub free: u64,
    pub reserved: u64,
}

pub fn pool_dir(page: u64) -> String {
    format!("/sys/kernel/mm/hugepages/hugepages-{}kB", page >> 10)
}

/// Reads a pool's counters; `None` if the kernel has no pool of that size.
pub fn read_pool(page: u64) -> Option<PoolState> {
    let dir = pool_dir(page);
    let num = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("{dir}/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(PoolState {
        total: num("nr_hugepages")?,
        free: num("free_hugepages")?,
        reserved: num("resv_hugepages")?,
    })
}

/// Pages each pool must supply for `zones`.
pub fn pages_needed(zones: &[ZoneConfig]) -> BTreeMap<u64, u64> {
    let mut need = BTreeMap::new();
    for z in zones {
        if let Some(page) = z.backing.hugetlb_size() {
            *need.entry(page).or_insert(0) += z.size / page;
        }
    }
    need
}

/// Checks `need` against pools read by `read` (the real sysfs in production).
pub fn check(
    need: &BTreeMap<u64, u64>,
    read: impl Fn(u64) -> Option<PoolState>,
) -> Result<(), PoolError> {
    for (&page, &pages) in need {
        let dir = pool_dir(page);
        let st = read(page).ok_or_else(|| PoolError::NoSuchSize {
            page,
            dir: dir.clone(),
        })?;
        // Reserved pages are free but promised to other mappings.
        let available = st.free.saturating_sub(st.reserved);
        if available < pages {
            let missing = pages - available;
            let compact = if page >= 1 << 30 {
                "echo 1 > /proc/sys/vm/compact_memory && "
            } else {
                ""
            };
            return Err(PoolError::Short {
                page,
                need: pages,
                free: st.free,
                reserved: st.reserved,
                available,
                missing,
                command: format!("{compact}echo {} > {dir}/nr_hugepages", st.total + missing),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::backing::Backing;

    #[test]
    fn short_pools_name_the_size_count_and_command() {
        let zones = [
            ZoneConfig::new(1 << 30, Backing::Hugetlb2m),
            ZoneConfig::new(2 << 30, Backing::Hugetlb1g),
            ZoneConfig::new(64 << 20, Backing::Hugetlb2m),
        ];
        let need = pages_needed(&zones);
        assert_eq!(need, BTreeMap::from([(2 << 20, 544), (1 << 30, 2)]));
        let pools = |page: u64| {
            Some(if page == 2 << 20 {
                PoolState {
                    total: 600,
                    free: 560,
                    reserved: 20,
                }
            } else {
                PoolState {
                    total: 1,
                    free: 1,
                    reserved: 0,
                }
            })
        };
        let e = check(&need, pools).unwrap_err();
        assert!(
            matches!(
                e,
                PoolError::Short {
                    page: 2097152,
                    missing: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e
            .to_string()
            .contains("echo 604 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"));
        let only_1g = BTreeMap::from([(1u64 << 30, 2u64)]);
        let e = check(&only_1g, pools).unwrap_err().to_string();
        assert!(
            e.contains("1 GiB hugetlb pool too small") && e.contains("compact_memory && echo 2 >"),
            "{e}"
        );
        let e = check(&only_1g, |_| None).unwrap_err();
        assert!(matches!(e, PoolError::NoSuchSize { .. }));
        assert_eq!(check(&BTreeMap::from([(2 << 20, 540)]), pools), Ok(()));
    }
}
