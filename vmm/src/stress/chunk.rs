//! The one host chunk every stress memslot aliases, and the memslot changes on it.

use super::run::StressError;
use crate::memory::memslot::set_memslot;
use crate::memory::mmap::AlignedMmap;
use crate::memory::Backing;

/// Where the read-only/writable flips happen: the one host chunk all slots alias.
pub struct Chunk(pub AlignedMmap);

impl Chunk {
    pub fn new(backing: Backing, size: u64) -> Result<Self, StressError> {
        // 4k: a shared memfd with MADV_NOHUGEPAGE, as upstream; thp: anonymous memory
        // with MADV_HUGEPAGE (shmem THP is off by default); hugetlb: hugetlb memfds.
        let host_backing = if backing == Backing::Anon4k {
            Backing::Memfd
        } else {
            backing
        };
        let align = backing.largest_page().max(2 << 20) as usize;
        let map = AlignedMmap::new(host_backing, size as usize, align, 0).map_err(|e| {
            StressError::Setup(format!("mapping the {} chunk: {e}", backing.name()))
        })?;
        if backing == Backing::Anon4k {
            // SAFETY: advising the mapping we own.
            unsafe { libc::madvise(map.as_ptr().cast(), map.len(), libc::MADV_NOHUGEPAGE) };
        }
        Ok(Self(map))
    }

    pub fn protect(&self, prot: libc::c_int) -> Result<(), StressError> {
        // SAFETY: changes protection of the mapping we own; KVM learns through the
        // mmu_notifier, which is the point of the benchmark.
        if unsafe { libc::mprotect(self.0.as_ptr().cast(), self.0.len(), prot) } != 0 {
            return Err(StressError::Setup(format!(
                "mprotect: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// Upstream's munmap of the first half, done as a PROT_NONE remap so the address
    /// range stays ours until the chunk is dropped (no other mapping can land there).
    pub fn drop_first_half(&self) {
        let half = self.0.len() / 2;
        // SAFETY: replaces the first half of our own mapping in place.
        unsafe {
            libc::mmap(
                self.0.as_ptr().cast(),
                half,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
    }
}

pub fn set_slot(
    vm: &kvm_ioctls::VmFd,
    slot: u32,
    gpa: u64,
    size: u64,
    hva: u64,
) -> Result<(), StressError> {
    // SAFETY: `hva..hva+size` is the chunk, alive until after the VM is dropped (or
    // size is 0, which deletes the slot); aliasing one host range from many slots is
    // allowed and is what the benchmark measures.
    unsafe { set_memslot(vm, slot, gpa, size, hva) }
        .map_err(|e| StressError::Setup(format!("memslot {slot} at {gpa:#x}: {e}")))
}
