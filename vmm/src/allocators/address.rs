//! A window of addresses handing out naturally aligned ranges (what PCI requires of
//! BARs, and what lets KVM map a BAR with 2M/1G stage-2 leaves), first fit, with
//! release.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("{what}: size {size:#x} must be a power of two")]
    NotPowerOfTwo { what: &'static str, size: u64 },
    #[error("{what}: no free {size:#x}-byte range aligned to {align:#x} in {start:#x}..{end:#x}")]
    Exhausted {
        what: &'static str,
        size: u64,
        align: u64,
        start: u64,
        end: u64,
    },
    #[error("{what}: {base:#x}+{size:#x} is not free inside {start:#x}..{end:#x}")]
    NotFree {
        what: &'static str,
        base: u64,
        size: u64,
        start: u64,
        end: u64,
    },
    #[error("{what}: nothing was allocated at {base:#x}")]
    NotAllocated { what: &'static str, base: u64 },
}

/// Hands out ranges of `[start, end)`.
#[derive(Debug, Clone)]
pub struct AddressAllocator {
    what: &'static str,
    start: u64,
    end: u64,
    /// Allocated ranges: base -> size.
    used: BTreeMap<u64, u64>,
}

impl AddressAllocator {
    /// A window `[start, end)` named `what` for error messages.
    pub fn new(what: &'static str, start: u64, end: u64) -> Self {
        Self {
            what,
            start,
            end: end.max(start),
            used: BTreeMap::new(),
        }
    }

    fn exhausted(&self, size: u64, align: u64) -> AllocError {
        AllocError::Exhausted {
            what: self.what,
            size,
            align,
            start: self.start,
            end: self.end,
        }
    }

    /// A range of `size` bytes (a power of two) at a multiple of `size`: natural
    /// alignment, as a BAR of that size needs.
    pub fn allocate_natural(&mut self, size: u64) -> Result<u64, AllocError> {
        if !size.is_power_of_two() {
            return Err(AllocError::NotPowerOfTwo {
                what: self.what,
                size,
            });
        }
        self.allocate(size, size)
    }

    /// The lowest free range of `size` bytes at a multiple of `align` (a power of two).
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<u64, AllocError> {
        if !align.is_power_of_two() {
            return Err(AllocError::NotPowerOfTwo {
                what: self.what,
                size: align,
            });
        }
        let mut candidate = self
            .start
            .checked_next_multiple_of(align)
            .ok_or_else(|| self.exhausted(size, align))?;
        // Ranges in address order: try the gap before each, then after the last.
        for (&base, &len) in &self.used {
            let fits = candidate.checked_add(size).is_some_and(|e| e <= base);
            if size > 0 && fits {
                break;
            }
            if base + len > candidate {
                candidate = (base + len)
                    .checked_next_multiple_of(align)
                    .ok_or_else(|| self.exhausted(size, align))?;
            }
        }
        match candidate.checked_add(size) {
            Some(e) if size > 0 && e <= self.end => {
                self.used.insert(candidate, size);
                Ok(candidate)
            }
            _ => Err(self.exhausted(size, align)),
        }
    }

    /// Takes `[base, base + size)` if it is inside the window and free.
    pub fn reserve(&mut self, base: u64, size: u64) -> Result<(), AllocError> {
        let not_free = || AllocError::NotFree {
            what: self.what,
            base,
            size,
            start: self.start,
            end: self.end,
        };
        let end = base.checked_add(size).ok_or_else(not_free)?;
        if size == 0 || base < self.start || end > self.end {
            return Err(not_free());
        }
        if let Some((&b, &l)) = self.used.range(..end).next_back() {
            if b + l > base {
                return Err(not_free());
            }
        }
        self.used.insert(base, size);
        Ok(())
    }

    /// Gives back the range allocated or reserved at `base`.
    pub fn free(&mut self, base: u64) -> Result<(), AllocError> {
        self.used
            .remove(&base)
            .map(|_| ())
            .ok_or(AllocError::NotAllocated {
                what: self.what,
                base,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;

    #[test]
    fn allocations_are_naturally_aligned_inside_the_window_and_never_overlap() {
        let mut a = AddressAllocator::new("mmio64", 5 * G + 4096, 64 * G);
        let sizes = [4096, 2 * M, G, 16 * 1024, 4 * G, 2 * M, 64 * 1024, G];
        let mut got: Vec<(u64, u64)> = Vec::new();
        for size in sizes {
            let base = a.allocate_natural(size).unwrap();
            assert_eq!(base % size, 0, "{size:#x} at {base:#x}");
            assert!(base >= 5 * G + 4096 && base + size <= 64 * G);
            for &(b, s) in &got {
                assert!(base + size <= b || b + s <= base, "overlap");
            }
            got.push((base, size));
        }
        // The 4K allocation took the window's first page; the 1G ones skip to 6G.
        assert_eq!(got[0].0, 5 * G + 4096);
        assert_eq!(got[2].0, 6 * G);
        assert_eq!(got[4].0, 8 * G, "4 GiB aligned to 4 GiB");
    }

    #[test]
    fn freed_ranges_are_reused_and_exhaustion_is_an_error_naming_the_window() {
        let mut a = AddressAllocator::new("mmio32", 3 * G, 4 * G);
        let first = a.allocate_natural(G / 2).unwrap();
        let second = a.allocate_natural(G / 2).unwrap();
        assert_eq!((first, second), (3 * G, 3 * G + G / 2));
        let e = a.allocate_natural(G / 2).unwrap_err();
        assert!(e.to_string().contains("mmio32"), "{e}");
        a.free(first).unwrap();
        assert_eq!(a.allocate_natural(G / 4).unwrap(), 3 * G);
        assert_eq!(
            a.free(first + 1),
            Err(AllocError::NotAllocated {
                what: "mmio32",
                base: first + 1
            })
        );
        assert!(matches!(
            a.allocate_natural(3 * M),
            Err(AllocError::NotPowerOfTwo { .. })
        ));
        assert!(a.allocate(0, 4096).is_err());
    }

    #[test]
    fn reservations_keep_fixed_ranges_out_of_allocations() {
        let mut a = AddressAllocator::new("mmio32", 3 * G, 0xfec0_0000);
        a.reserve(3 * G, 2 * M).unwrap();
        assert!(
            a.reserve(3 * G + M, 4096).is_err(),
            "overlaps the reservation"
        );
        assert!(a.reserve(4 * G, 4096).is_err(), "outside the window");
        assert_eq!(a.allocate_natural(2 * M).unwrap(), 3 * G + 2 * M);
        let e = a.allocate_natural(G).unwrap_err();
        assert!(matches!(e, AllocError::Exhausted { .. }), "{e}");
    }

    #[test]
    fn a_window_at_the_top_of_the_address_space_does_not_wrap() {
        let mut a = AddressAllocator::new("top", u64::MAX - 3 * 4096 + 1, u64::MAX);
        assert!(a.allocate_natural(4096).is_ok());
        assert!(a.allocate_natural(G).is_err());
    }
}
