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
        let pages: Vec<u64> = share
            .iter()
            .flat_map(|&(s, e)| (s..e).step_by(4096))
            .collect::<Vec<_>>();
        if pages.is_empty() {
            continue;
        }
        let n = pages.len() as u64;
        let step = (n / SAMPLES_PER_SHARE).max(1);
        let picks = (0..n).step_by(step as usize).chain(std::iter::once(n - 1));
        for i in picks {
            let gpa = pages[i as usize];
            let found = ram.read_u64(gpa)?;
            if found != gpa {
                return Err(VerifyError::Mismatch { gpa, found });
            }
            checked += 1;
        }
    }
    Ok(checked)
}
