//! A BAR's mmap-able areas mapped from the VFIO device fd at host addresses aligned as
//! the guest addresses are.
//!
//! vfio-pci serves BAR faults with PMD or PUD leaves only where the faulting block lies
//! aligned inside the VMA, and KVM uses a huge stage-2 leaf only where the host address
//! and the guest address are congruent modulo its size. The kernel aligns mmap to the
//! base page only, so: reserve address space for the whole BAR at an address aligned
//! to min(BAR size, 1 GiB), then map each area with MAP_FIXED at its own offset in the
//! reservation. Holes between areas (a trapped MSI-X table) stay PROT_NONE.

use std::io;
use std::os::fd::RawFd;
use std::ptr;

/// The reservation and the areas in it; all of it is unmapped on drop.
#[derive(Debug)]
pub struct BarMapping {
    base: usize,
    len: usize,
}

// SAFETY: the mapping is device memory owned by this struct; the guest (through KVM)
// and the vCPU threads reach it concurrently, which is what it is for.
unsafe impl Send for BarMapping {}
// SAFETY: as above; the struct is never mutated after creation.
unsafe impl Sync for BarMapping {}

/// 1 GiB: the largest leaf either architecture maps device memory with.
const MAX_ALIGN: u64 = 1 << 30;

/// The host alignment for a BAR of `size` bytes.
pub fn alignment(size: u64) -> u64 {
    size.clamp(4096, MAX_ALIGN)
}

impl BarMapping {
    /// Maps `areas` (offset, size within the BAR, page-aligned) of the BAR of `size`
    /// bytes that the device `fd` serves at `region_offset`. `misalign` shifts the
    /// whole mapping off its alignment (to measure what alignment is worth).
    pub fn new(
        fd: RawFd,
        region_offset: u64,
        size: u64,
        areas: &[(u64, u64)],
        misalign: u64,
    ) -> io::Result<Self> {
        let align = alignment(size);
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let len =
            usize::try_from(size).map_err(|_| invalid("BAR larger than the address space"))?;
        let reserve = size
            .checked_add(align)
            .and_then(|n| n.checked_add(misalign))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| invalid("BAR too large to reserve"))?;
        // SAFETY: a fresh PROT_NONE reservation at a kernel-chosen address.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                reserve,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = p as usize;
        let base = (start as u64).next_multiple_of(align) as usize + misalign as usize;
        // SAFETY: both ranges are the slack of our own reservation around
        // `base..base+len`.
        unsafe {
            if base > start {
                libc::munmap(p, base - start);
            }
            let end = start + reserve;
            if end > base + len {
                libc::munmap((base + len) as *mut libc::c_void, end - base - len);
            }
        }
        let me = Self { base, len };
        for &(off, n) in areas {
            let inside = off.checked_add(n).is_some_and(|e| e <= size);
            let file_off = region_offset
                .checked_add(off)
                .and_then(|o| libc::off_t::try_from(o).ok());
            let (Some(file_off), true) = (file_off, inside) else {
                return Err(invalid("a sparse-mmap area lies outside its BAR"));
            };
            // SAFETY: `base+off..+n` lies inside the reservation this struct owns, so
            // MAP_FIXED replaces only that; on error `me` unmaps all of it.
            let q = unsafe {
                libc::mmap(
                    (base + off as usize) as *mut libc::c_void,
                    n as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd,
                    file_off,
                )
            };
            if q == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(me)
    }

    /// The host address of BAR offset 0.
    pub fn hva(&self) -> u64 {
        self.base as u64
    }
}

impl Drop for BarMapping {
    fn drop(&mut self) {
        // SAFETY: the reservation this struct made and owns; the memslots over it are
        // removed first (the device manager holds this until its slot is gone).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn areas_land_aligned_at_their_offsets() {
        // A plain file stands in for the device fd: the mapping logic is the same.
        let path = std::env::temp_dir().join(format!("granule-barmap-{}", std::process::id()));
        let f = std::fs::File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.set_len(3 << 20).unwrap();
        let m = BarMapping::new(
            f.as_raw_fd(),
            1 << 20,
            2 << 20,
            &[(0, 4096), (8192, 4096)],
            0,
        )
        .unwrap();
        assert_eq!(m.hva() % (2 << 20), 0);
        // SAFETY: the first area is mapped read-write, shared, over the file.
        unsafe { *(m.hva() as *mut u8) = 7 };
        drop(m);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            bytes[1 << 20],
            7,
            "offset 0 of the BAR is the region offset in the fd"
        );
        let m = BarMapping::new(f.as_raw_fd(), 0, 2 << 20, &[(0, 4096)], 4096).unwrap();
        assert_eq!(m.hva() % (2 << 20), 4096);
        assert!(BarMapping::new(f.as_raw_fd(), 0, 4096, &[(0, 8192)], 0).is_err());
        assert_eq!((alignment(256), alignment(4 << 30)), (4096, 1 << 30));
    }
}
