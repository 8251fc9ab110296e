//! A bzImage booted as the vmlinux inside it: the payload decompressed on the host (or
//! taken from the cache), checked to be an x86_64 ELF kernel, then loaded like one with
//! the bzImage's own setup header. Where that cannot work (a payload granule does not
//! recognise, one that is not an ELF kernel) the guest's decompressor runs instead,
//! and the reason is logged; a payload that is damaged is an error either way.

use std::sync::Arc;
use std::time::Instant;

use granule_arch::x86_64::boot::bzimage::BzImageInfo;
use granule_arch::x86_64::boot::elf::{self, ElfInfo};

use crate::kernel_payload::background_store::PendingStore;
use crate::kernel_payload::cache::{Entry, KernelCache, Key};
use crate::kernel_payload::choice::{CacheUse, Decompression};
use crate::kernel_payload::{Payload, PayloadError};

/// The most a payload may decompress to: several times any distribution kernel's
/// vmlinux (Debian's is 58 MB).
pub const VMLINUX_MAX: u64 = 512 << 20;
/// The ELF and program headers are in the first bytes of a vmlinux.
const ELF_HEAD: usize = 64 << 10;

/// A vmlinux ready to load, and how it was obtained.
pub struct Unpacked {
    pub elf: ElfInfo,
    pub vmlinux: Vmlinux,
    /// Its cache use is final unless `pending` is set: then that says it.
    pub record: Decompression,
    /// The cache entry of a vmlinux just decompressed, being written.
    pub pending: Option<PendingStore>,
}

/// Where the vmlinux's bytes are: just decompressed, or in a checked cache entry (the
/// entry file is the ELF file, loaded from directly).
pub enum Vmlinux {
    /// Shared with the thread writing its cache entry.
    Memory(Arc<Vec<u8>>),
    Cached(Entry),
}

/// What to boot: the vmlinux, or the bzImage as it is (the reason why).
pub enum Unpack {
    Direct(Unpacked),
    Guest(String),
}

/// The cache a host decompression goes through, or why there is none.
pub enum CacheSetting {
    /// `--kernel-cache off`.
    Off,
    /// Asked for, but there is nowhere to keep it.
    Unavailable(String),
    Use(KernelCache),
}

impl CacheSetting {
    pub fn cache(&self) -> Option<&KernelCache> {
        match self {
            Self::Use(c) => Some(c),
            _ => None,
        }
    }
}

/// Decompresses `image` (the whole bzImage, parsed as `info`), through `cache`.
/// `key`: the bzImage's SHA-256 if it is known already (else it is computed).
pub fn unpack(
    image: &[u8],
    info: &BzImageInfo,
    cache: &CacheSetting,
    key: Option<Key>,
) -> Result<Unpack, PayloadError> {
    let start = Instant::now();
    let Some(range) = info.payload_range(image.len() as u64) else {
        return Ok(Unpack::Guest(format!(
            "its setup header's payload ({} bytes at {:#x}) is not inside the file",
            info.payload_length, info.payload_offset
        )));
    };
    // The range lies inside `image`, whose length is a usize.
    let payload = &image[range.start as usize..range.end as usize];
    let parsed = match Payload::parse(payload) {
        Ok(p) => p,
        Err(e) => return Ok(Unpack::Guest(e.to_string())),
    };
    let keyed = cache
        .cache()
        .map(|c| (c, key.unwrap_or_else(|| Key::of(image))));
    if let Some((c, k)) = &keyed {
        if let Some((elf, entry)) = cached(c, k) {
            let cache = CacheUse::Hit {
                dir: c.dir().to_owned(),
            };
            let vmlinux = Vmlinux::Cached(entry);
            return Ok(Unpack::Direct(done(&parsed, elf, vmlinux, cache, start)));
        }
    }
    let decoding = Instant::now();
    let vmlinux = match parsed.decompress(VMLINUX_MAX) {
        Ok(v) => v,
        Err(e @ PayloadError::TooLarge { .. }) => return Ok(Unpack::Guest(e.to_string())),
        Err(e) => return Err(e),
    };
    let elf = match check_elf(&vmlinux, vmlinux.len() as u64) {
        Ok(elf) => elf,
        Err(why) => return Ok(Unpack::Guest(why)),
    };
    tracing::debug!(
        "kernel decompressed ({}) in {:.1} ms",
        parsed.format,
        crate::linux::ms(decoding.elapsed())
    );
    let vmlinux = Arc::new(vmlinux);
    let (cache, pending) = match (&keyed, cache) {
        (Some((c, k)), _) => {
            let pending = PendingStore::start(c, *k, Arc::clone(&vmlinux));
            let why = "its entry was still being written".to_string();
            (CacheUse::NotStored { why }, Some(pending))
        }
        (None, CacheSetting::Unavailable(why)) => (CacheUse::NotStored { why: why.clone() }, None),
        (None, _) => (CacheUse::Off, None),
    };
    let mut unpacked = done(&parsed, elf, Vmlinux::Memory(vmlinux), cache, start);
    unpacked.pending = pending;
    Ok(Unpack::Direct(unpacked))
}

/// The cache's vmlinux for a bzImage whose SHA-256 is already known (from its
/// stamp), found without reading the bzImage beyond its payload's first bytes. None
/// when there is no whole entry or the payload is not one granule decompresses (the
/// caller then reads the file and takes the usual path).
pub fn unpack_known(
    file: &std::fs::File,
    file_len: u64,
    info: &BzImageInfo,
    cache: &KernelCache,
    key: &Key,
) -> Option<Unpacked> {
    let start = Instant::now();
    let range = info.payload_range(file_len)?;
    let mut head = [0u8; 8];
    let n = (range.end - range.start).min(head.len() as u64) as usize;
    std::os::unix::fs::FileExt::read_exact_at(file, &mut head[..n], range.start).ok()?;
    let format = crate::kernel_payload::Compression::detect(&head[..n])?;
    let payload_len = range.end - range.start;
    if payload_len <= 4 {
        return None;
    }
    let compressed_bytes = Payload::stream_len(format, payload_len);
    let (elf, entry) = cached(cache, key)?;
    let record = Decompression::Host {
        compression: format,
        compressed_bytes,
        vmlinux_bytes: entry.len,
        cache: CacheUse::Hit {
            dir: cache.dir().to_owned(),
        },
        ms: crate::linux::ms(start.elapsed()),
    };
    Some(Unpacked {
        elf,
        vmlinux: Vmlinux::Cached(entry),
        record,
        pending: None,
    })
}

fn done(p: &Payload, elf: ElfInfo, vmlinux: Vmlinux, cache: CacheUse, start: Instant) -> Unpacked {
    let vmlinux_bytes = match &vmlinux {
        Vmlinux::Memory(v) => v.len() as u64,
        Vmlinux::Cached(e) => e.len,
    };
    let record = Decompression::Host {
        compression: p.format,
        compressed_bytes: p.stream.len() as u64,
        vmlinux_bytes,
        cache,
        ms: crate::linux::ms(start.elapsed()),
    };
    Unpacked {
        elf,
        vmlinux,
        record,
        pending: None,
    }
}

/// Checks a decompressed payload (its first bytes and its length) is an x86_64 ELF
/// kernel granule can load.
fn check_elf(vmlinux: &[u8], len: u64) -> Result<ElfInfo, String> {
    let head = &vmlinux[..vmlinux.len().min(ELF_HEAD)];
    elf::parse(head, len)
        .map_err(|e| format!("its payload is not an x86_64 ELF kernel granule can load: {e}"))
}

/// The cache's vmlinux for `key`, if it has a whole one that is an ELF kernel.
fn cached(cache: &KernelCache, key: &Key) -> Option<(ElfInfo, Entry)> {
    match cache.get(key) {
        Ok(Some(entry)) => match entry
            .head(ELF_HEAD as u64)
            .map_err(|e| e.to_string())
            .and_then(|head| check_elf(&head, entry.len))
        {
            Ok(elf) => Some((elf, entry)),
            Err(why) => {
                tracing::warn!(
                    "ignoring the kernel cache's entry in {}: {why}",
                    cache.dir().display()
                );
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("{e}; decompressing the kernel again");
            None
        }
    }
}
