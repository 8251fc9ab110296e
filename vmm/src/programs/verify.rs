//! Host-side check that `touch` really wrote every page: sample pages across each
//! vCPU's share (always its first and last page) and compare them with their address.

use thiserror::Error;

use crate::memory::{GuestRam, MemoryError};

/// Pages checked per share besides the first and last.
const SAMPLES_PER_SHARE: u64 = 4096;

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("guest memory check failed: page {gpa:#x} holds {found:#x}, expected its own address")]
    Mismatch { gpa: u64, found: u64 },
    #[error("guest memory check failed: {0}")]
    Read(#[from] MemoryError),
}

/// Checks sampled pages of every share; returns how many pages were checked.
pub fn touched_pages(ram: &GuestRam, shares: &[Vec<(u64, u64)>]) -> Result<u64, VerifyError> {
    let mut checked = 0;
    for share in shares {
        let n: u64 = share.iter().map(|&(s, e)| pages_in(s, e)).sum();
        if n == 0 {
            continue;
        }
        let step = (n / SAMPLES_PER_SHARE).max(1);
        let picks = (0..n).step_by(step as usize).chain(std::iter::once(n - 1));
        for i in picks {
            let Some(gpa) = nth_page(share, i) else {
                continue;
            };
            let found = ram.read_u64(gpa)?;
            if found != gpa {
                return Err(VerifyError::Mismatch { gpa, found });
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// 4 KiB pages starting in `[start, end)`.
fn pages_in(start: u64, end: u64) -> u64 {
    end.saturating_sub(start).div_ceil(4096)
}

/// The address of a share's `i`-th page, counted across its ranges in order. Found by
/// walking the ranges rather than listing every page: a large guest's share has
/// millions, and such a list stayed in granule's heap after the check.
fn nth_page(share: &[(u64, u64)], mut i: u64) -> Option<u64> {
    for &(start, end) in share {
        let n = pages_in(start, end);
        if i < n {
            return Some(start + i * 4096);
        }
        i -= n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_counted_across_ranges_in_order() {
        let share = [(0x1000, 0x3000), (0x10_0000, 0x10_1800)];
        let all: Vec<u64> = (0..5).map_while(|i| nth_page(&share, i)).collect();
        assert_eq!(all, [0x1000, 0x2000, 0x10_0000, 0x10_1000]);
        assert_eq!(share.iter().map(|&(s, e)| pages_in(s, e)).sum::<u64>(), 4);
        assert_eq!(nth_page(&[], 0), None);
    }
}
