//! The cache entry of a freshly decompressed kernel, written by a thread of its own
//! while the guest boots. Writing it (checksumming tens of MB, writing them, waiting
//! for the disk) would otherwise sit between decompression and the guest's first
//! instruction on every first boot of a bzImage. The thread runs in the idle
//! scheduling class: where the host has a core to spare it runs there; where it has
//! not, it takes what the vCPUs leave (at nice 19 instead, the x86 bed's guest booted
//! slower). Its outcome is collected when the guest has stopped ([`PendingStore::finish`]),
//! so the boot's report says whether the entry was stored.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::cache::{KernelCache, Key};
use super::choice::{CacheUse, Decompression};

/// A cache entry being written. Dropping it waits for the write to end, so an entry is
/// never left half-written by a run that ends early (a half-written one would only be
/// a stale temporary file, but a finished one spares the next boot the work).
pub struct PendingStore(Option<Writing>);

enum Writing {
    Thread(JoinHandle<CacheUse>),
    /// No thread could be started: written before the boot went on.
    Done(CacheUse),
}

impl PendingStore {
    /// Starts writing `vmlinux` into `cache` under `key`. If no thread can be started,
    /// the entry is written before this returns.
    pub fn start(cache: &KernelCache, key: Key, vmlinux: Arc<Vec<u8>>) -> Self {
        let writer = {
            let cache = cache.clone();
            let vmlinux = Arc::clone(&vmlinux);
            move || {
                lower_priority();
                store(&cache, &key, &vmlinux)
            }
        };
        let writing = match std::thread::Builder::new()
            .name("kernel-cache".into())
            .spawn(writer)
        {
            Ok(handle) => Writing::Thread(handle),
            Err(e) => {
                tracing::debug!("no thread for the kernel cache ({e}); writing it now");
                Writing::Done(store(cache, &key, &vmlinux))
            }
        };
        Self(Some(writing))
    }

    /// Waits for the write and says what it did.
    pub fn finish(mut self) -> CacheUse {
        match self.0.take() {
            Some(Writing::Done(outcome)) => outcome,
            Some(Writing::Thread(handle)) => {
                handle.join().unwrap_or_else(|_| CacheUse::NotStored {
                    why: "the thread writing the entry failed".into(),
                })
            }
            None => CacheUse::NotStored {
                why: "the entry's write was already collected".into(),
            },
        }
    }
}

impl Drop for PendingStore {
    fn drop(&mut self) {
        if let Some(Writing::Thread(handle)) = self.0.take() {
            let _ = handle.join();
        }
    }
}

/// `record` with the outcome of its cache entry's write, once that has ended.
pub fn settle(
    record: Option<Decompression>,
    pending: Option<PendingStore>,
) -> Option<Decompression> {
    let Some(pending) = pending else {
        return record;
    };
    let outcome = pending.finish();
    record.map(|mut r| {
        if let Decompression::Host { cache, .. } = &mut r {
            *cache = outcome;
        }
        r
    })
}

/// Gives the calling thread the idle scheduling class. Best effort: at the default
/// priority the entry is still written, only competing with the vCPUs on a busy host.
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` and only changes the scheduling of a
    // task; pid 0 is the calling thread alone.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::debug!(
            "the kernel cache writer keeps its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Writes the entry and says what the cache did.
fn store(cache: &KernelCache, key: &Key, vmlinux: &[u8]) -> CacheUse {
    let start = Instant::now();
    let put = cache.put(key, vmlinux);
    tracing::debug!(
        "kernel cache entry written in {:.1} ms",
        crate::linux::ms(start.elapsed())
    );
    match put {
        Ok(true) => CacheUse::Stored {
            dir: cache.dir().to_owned(),
        },
        Ok(false) => CacheUse::NotStored {
            why: "larger than the cache's size bound".into(),
        },
        Err(e) => {
            tracing::warn!("{e}; the next boot decompresses the kernel again");
            CacheUse::NotStored { why: e.to_string() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_payload::temp_dir::TempDir;

    fn cache_in(dir: &TempDir, max_bytes: u64) -> KernelCache {
        KernelCache::new(dir.0.join("kernels"), max_bytes)
    }

    #[test]
    fn a_finished_store_is_a_whole_entry_the_next_boot_finds() {
        let dir = TempDir::new("store-finished");
        let cache = cache_in(&dir, 1 << 20);
        let key = Key::of(b"a bzImage");
        let vmlinux = Arc::new(vec![7u8; 100_000]);
        let outcome = PendingStore::start(&cache, key, Arc::clone(&vmlinux)).finish();
        assert_eq!(
            outcome,
            CacheUse::Stored {
                dir: cache.dir().to_owned()
            }
        );
        let entry = cache.get(&key).unwrap().expect("the entry");
        assert_eq!(entry.len, 100_000);
        assert_eq!(entry.head(16).unwrap(), vec![7u8; 16]);
    }

    #[test]
    fn a_dropped_store_still_leaves_a_whole_entry() {
        let dir = TempDir::new("store-dropped");
        let cache = cache_in(&dir, 1 << 20);
        let key = Key::of(b"another bzImage");
        drop(PendingStore::start(&cache, key, Arc::new(vec![1u8; 5000])));
        assert_eq!(cache.get(&key).unwrap().expect("the entry").len, 5000);
    }

    #[test]
    fn what_the_cache_refused_is_reported_not_stored() {
        let dir = TempDir::new("store-refused");
        let cache = cache_in(&dir, 1000);
        let key = Key::of(b"a large bzImage");
        let outcome = PendingStore::start(&cache, key, Arc::new(vec![0u8; 5000])).finish();
        assert!(matches!(outcome, CacheUse::NotStored { .. }), "{outcome:?}");
        assert!(cache.get(&key).unwrap().is_none());
    }
}
