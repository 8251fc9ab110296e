//! Populating guest RAM before the guest runs, without losing huge pages.
//!
//! MADV_HUGEPAGE is applied when the zone is mapped, before this runs: populating first
//! would fault in 4 KiB pages that khugepaged merges only much later (a common
//! complaint about other VMMs). MADV_POPULATE_WRITE (Linux 5.14) faults pages in
//! without touching their contents; several threads share the work on page-size
//! aligned chunks.

use std::io;

/// MADV_POPULATE_WRITE from include/uapi/asm-generic/mman-common.h.
const MADV_POPULATE_WRITE: libc::c_int = 23;

/// The chunk each thread populates at a time.
const CHUNK: usize = 64 << 20;

/// Populates `len` bytes at `addr` for writing, on up to `threads` threads; chunks are
/// multiples of `page`.
///
/// # Safety
/// `addr..addr+len` must be a live read-write mapping owned by the caller.
pub unsafe fn populate(addr: *mut u8, len: usize, page: usize, threads: usize) -> io::Result<()> {
    let chunk = CHUNK.next_multiple_of(page);
    let chunks: Vec<(usize, usize)> = (0..len)
        .step_by(chunk)
        .map(|off| (addr as usize + off, chunk.min(len - off)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = threads.clamp(1, chunks.len().max(1));
    std::thread::scope(|s| {
        let workers = (0..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .name("prefault".into())
                    .spawn_scoped(s, || -> io::Result<()> {
                        loop {
                            // Gigabytes take seconds: SIGINT/SIGTERM stop at the next chunk.
                            if crate::signals::interrupted() {
                                return Err(io::Error::new(
                                    io::ErrorKind::Interrupted,
                                    "stopped prefaulting guest RAM",
                                ));
                            }
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&(start, n)) = chunks.get(i) else {
                                return Ok(());
                            };
                            // SAFETY: the chunk lies inside the caller's live mapping.
                            if unsafe {
                                libc::madvise(start as *mut libc::c_void, n, MADV_POPULATE_WRITE)
                            } != 0
                            {
                                let e = io::Error::last_os_error();
                                if e.raw_os_error() != Some(libc::EINVAL) {
                                    return Err(io::Error::new(
                                        e.kind(),
                                        format!("prefaulting guest RAM: {e}"),
                                    ));
                                }
                                // Kernel before 5.14: touch one byte per page instead.
                                for p in (start..start + n).step_by(page) {
                                    // SAFETY: `p` is inside the caller's read-write mapping; a
                                    // volatile read-modify-write keeps the contents.
                                    unsafe {
                                        let ptr = p as *mut u8;
                                        ptr.write_volatile(ptr.read_volatile());
                                    }
                                }
                            }
                        }
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("prefault thread panicked")))
        })
    })
}
