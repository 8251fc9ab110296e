//! An aligned host mapping for one guest RAM zone.
//!
//! The kernel picks mmap addresses aligned only to the base page, so huge pages need a
//! trick: reserve address space larger than needed with PROT_NONE, map the backing with
//! MAP_FIXED at an aligned address inside the reservation, and unmap the slack around
//! it. The reservation is ours, so MAP_FIXED cannot clobber anything else.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use super::backing::Backing;

/// A mapping that is unmapped on drop.
#[derive(Debug)]
pub struct AlignedMmap {
    addr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; sharing the pointer across
// threads is what guest memory is for (KVM and vCPU threads access it concurrently).
unsafe impl Send for AlignedMmap {}
// SAFETY: as above; the struct itself is never mutated after creation.
unsafe impl Sync for AlignedMmap {}

fn last_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// MFD_HUGE_2MB / MFD_HUGE_1GB: log2 of the page size in bits 26..31.
fn mfd_huge_flag(page: u64) -> libc::c_uint {
    (page.trailing_zeros() << 26) as libc::c_uint
}

fn memfd(size: usize, hugetlb: Option<u64>) -> io::Result<OwnedFd> {
    let name: &CStr = c"granule-guest-ram";
    let mut flags = libc::MFD_CLOEXEC;
    if let Some(page) = hugetlb {
        flags |= libc::MFD_HUGETLB | mfd_huge_flag(page);
    }
    // SAFETY: `name` is a valid NUL-terminated string; the returned fd is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(last_err("memfd_create"));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on an fd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
        return Err(last_err("ftruncate of the guest RAM memfd"));
    }
    Ok(fd)
}

impl AlignedMmap {
    /// Maps `size` bytes of `backing` at an address aligned to `align`, plus `misalign`.
    pub fn new(backing: Backing, size: usize, align: usize, misalign: usize) -> io::Result<Self> {
        let reserve_len = size
            .checked_add(align)
            .and_then(|n| n.checked_add(misalign))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "zone too large"))?;
        // SAFETY: a fresh PROT_NONE anonymous reservation at a kernel-chosen address;
        // nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                reserve_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(last_err("reserving address space for guest RAM"));
        }
        let base = base as usize;
        let target = base.next_multiple_of(align) + misalign;
        let mapped = Self::map_at(backing, target, size);
        let (keep_start, keep_end) = match &mapped {
            // Trim the reservation around the mapping.
            Ok(()) => (target, target + size),
            // A failed MAP_FIXED may have unmapped part of the target range, and a
            // failed madvise leaves the mapping there: put the reservation back over
            // it, so no other thread's mmap can land in a hole that the munmap below
            // would then take away from it. If even that fails, leave the target range
            // alone (leaked address space, never someone else's mapping unmapped).
            Err(_) if reserve_fixed(target, size) => (base, base),
            Err(_) => (target, target + size),
        };
        // SAFETY: both ranges lie inside our own reservation and outside [keep_start,
        // keep_end), which is either the live mapping or left untouched on purpose.
        unsafe {
            if keep_start > base {
                libc::munmap(base as *mut libc::c_void, keep_start - base);
            }
            let end = base + reserve_len;
            if end > keep_end.max(base) {
                let from = keep_end.max(base);
                libc::munmap(from as *mut libc::c_void, end - from);
            }
        }
        mapped.map(|()| Self {
            addr: target as *mut u8,
            len: size,
        })
    }

    fn map_at(backing: Backing, target: usize, size: usize) -> io::Result<()> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let fixed = libc::MAP_FIXED;
        let (flags, fd) = match backing {
            Backing::Anon4k | Backing::Thp => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                None,
            ),
            Backing::Memfd => (libc::MAP_SHARED, Some(memfd(size, None)?)),
            // No MAP_NORESERVE: the pool pages are reserved now, so a short pool fails
            // here with ENOMEM instead of SIGBUS on a later guest access.
            Backing::Hugetlb2m | Backing::Hugetlb1g => {
                (libc::MAP_SHARED, Some(memfd(size, backing.hugetlb_size())?))
            }
        };
        let raw_fd = fd.as_ref().map_or(-1, |f| f.as_raw_fd());
        // SAFETY: `target..target+size` lies inside the PROT_NONE reservation this
        // process made and still owns, so MAP_FIXED replaces only that.
        let p = unsafe {
            libc::mmap(
                target as *mut libc::c_void,
                size,
                prot,
                flags | fixed,
                raw_fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_err(&format!("mapping {} guest RAM", backing.name())));
        }
        let advice = match backing {
            Backing::Anon4k => Some(libc::MADV_NOHUGEPAGE),
            Backing::Thp => Some(libc::MADV_HUGEPAGE),
            _ => None,
        };
        if let Some(advice) = advice {
            // SAFETY: advising our own fresh mapping.
            if unsafe { libc::madvise(p, size, advice) } != 0 {
                // The caller puts the reservation back over the mapping.
                return Err(last_err("madvise on guest RAM"));
            }
        }
        // The fd may close now: the mapping keeps the memory alive.
        Ok(())
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.addr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Replaces `addr..addr+len` (inside this process's own reservation) with a fresh
/// PROT_NONE reservation; true if it did.
fn reserve_fixed(addr: usize, len: usize) -> bool {
    // SAFETY: the range lies inside a reservation this process made and still owns
    // (the caller's), so MAP_FIXED replaces only that.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    p != libc::MAP_FAILED
}

impl Drop for AlignedMmap {
    fn drop(&mut self) {
        // SAFETY: `addr..addr+len` is the mapping this struct created and owns; views
        // into it (vm-memory regions, KVM memslots) are dropped before it.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_are_aligned_writable_and_misalignable() {
        for (backing, align) in [
            (Backing::Anon4k, 2 << 20),
            (Backing::Thp, 1 << 30),
            (Backing::Memfd, 2 << 20),
        ] {
            let m = AlignedMmap::new(backing, 4 << 20, align, 0).unwrap();
            assert_eq!(m.as_ptr() as usize % align, 0, "{backing:?}");
            // SAFETY: inside the 4 MiB mapping just created.
            unsafe { m.as_ptr().add(4095).write(7) };
            let off = AlignedMmap::new(backing, 4 << 20, align, 4096).unwrap();
            assert_eq!(off.as_ptr() as usize % align, 4096);
        }
    }

    #[test]
    fn huge_flags_encode_the_page_shift() {
        assert_eq!(mfd_huge_flag(2 << 20), 21 << 26);
        assert_eq!(mfd_huge_flag(1 << 30), 30 << 26);
    }
}
