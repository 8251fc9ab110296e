//! x86_64 kernels: checking a bzImage or ELF vmlinux before any VM exists, then loading
//! it with linux-loader; the command line and the initramfs placement.
//!
//! Only a kernel's first bytes are read for the checks; linux-loader then reads the file
//! straight into guest memory (one copy, no buffer the size of the kernel). A bzImage
//! is by default read whole and booted as the vmlinux inside it ([`super::unpack`]).

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use granule_arch::x86_64::boot::bzimage::{self, BzImageInfo, ENTRY_64_OFFSET};
use granule_arch::x86_64::boot::elf::{self, ElfInfo};
use granule_arch::x86_64::boot::layout::{CMDLINE_MAX, HIMEM_START};
use granule_arch::x86_64::boot::KernelError;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{ByteValued, GuestAddress};

use super::unpack::{unpack, unpack_known, CacheSetting, Unpack, Vmlinux};
use crate::kernel_payload::background_store::PendingStore;
use crate::kernel_payload::cache::stamp::Version;
use crate::kernel_payload::cache::{KernelCache, Key};
use crate::kernel_payload::choice::{DecompressMode, Decompression, KernelOptions};
use crate::linux::files::{open_file, read_head, KernelFormat};
use crate::linux::BootError;
use crate::memory::GuestRam;

/// How much of a kernel is read for its checks: the bzImage setup header, or the ELF
/// and program headers.
const HEAD_LEN: u64 = 64 << 10;
/// The command-line limit for an ELF kernel, which has no header to say (x86's
/// COMMAND_LINE_SIZE minus the NUL).
const ELF_CMDLINE_MAX: usize = 2047;

/// A kernel file that passed its checks, open for loading.
pub struct KernelImage {
    pub path: PathBuf,
    file: File,
    len: u64,
    pub kind: ImageKind,
    /// For a bzImage: where its kernel is decompressed.
    pub decompression: Option<Decompression>,
    /// The cache entry of a kernel just decompressed, while it is being written.
    pub cache_store: Option<PendingStore>,
}

pub enum ImageKind {
    /// Booted as it is: its decompressor runs in the guest.
    BzImage(BzImageInfo),
    Elf(ElfInfo),
    /// A bzImage's vmlinux, decompressed on the host, booted with the bzImage's header.
    Unpacked {
        info: BzImageInfo,
        elf: ElfInfo,
        /// Taken (None) once loaded.
        vmlinux: Option<Vmlinux>,
    },
}

/// A kernel in guest memory.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    pub entry: u64,
    /// End of what the kernel occupies while it starts (for a bzImage, its load address
    /// plus init_size: room to decompress in place).
    pub end: u64,
    /// The setup header to copy into the zero page (None for ELF).
    pub setup_header: Option<linux_loader::loader::bootparam::setup_header>,
    /// The highest address the initramfs may end at.
    pub initrd_limit: u64,
}

/// Opens and checks a kernel: a bzImage (by its "HdrS" header) or an ELF vmlinux.
/// Refuses `opts` that do not apply to it; [`KernelImage::unpack`] then acts on them.
pub fn open(path: &Path, opts: &KernelOptions) -> Result<KernelImage, BootError> {
    let (file, len) = open_file("kernel", path)?;
    let head = read_head(path, &file, HEAD_LEN)?;
    let checked = if len == 0 {
        Err(KernelError::Empty)
    } else if elf::is_elf(&head) {
        elf::parse(&head, len).map(ImageKind::Elf)
    } else {
        bzimage::parse(&head, len).map(ImageKind::BzImage)
    };
    let kind = checked.map_err(|error| BootError::Kernel {
        path: path.to_owned(),
        error,
    })?;
    let refuse = |option: &'static str, why: &str| BootError::KernelOption {
        option,
        path: path.to_owned(),
        why: why.into(),
    };
    match kind {
        ImageKind::BzImage(_) if opts.mode() == DecompressMode::Guest && opts.cache.is_some() => {
            return Err(refuse(
                "--kernel-cache",
                "it applies to a kernel decompressed on the host, not with --kernel-decompress guest",
            ));
        }
        ImageKind::BzImage(_) => {}
        _ => {
            if let Some(option) = opts.given().first() {
                return Err(refuse(
                    option,
                    "it applies to a bzImage, and this kernel is an ELF vmlinux",
                ));
            }
        }
    }
    Ok(KernelImage {
        path: path.to_owned(),
        file,
        len,
        kind,
        decompression: None,
        cache_store: None,
    })
}

/// The whole kernel file (at most the files' size limit, checked when it was opened).
fn read_all(path: &Path, mut file: &File, len: u64) -> Result<Vec<u8>, BootError> {
    let mut all = Vec::with_capacity(len as usize);
    std::io::Seek::rewind(&mut file)
        .and_then(|_| file.take(len).read_to_end(&mut all))
        .map_err(|error| BootError::ReadFile {
            what: "kernel",
            path: path.to_owned(),
            error,
        })?;
    Ok(all)
}

/// The setup header as in the bzImage, for the zero page.
fn header_of(info: &BzImageInfo) -> setup_header {
    let mut h = setup_header::default();
    let dst = h.as_mut_slice();
    let n = dst.len().min(info.header.len());
    dst[..n].copy_from_slice(&info.header[..n]);
    h
}

impl KernelImage {
    /// For a bzImage: decompresses its kernel on the host when asked (the default) and
    /// possible, else leaves it to the guest; records which. Other kernels are kept.
    pub fn unpack(&mut self, opts: &KernelOptions) -> Result<(), BootError> {
        let ImageKind::BzImage(info) = &self.kind else {
            return Ok(());
        };
        let info = info.clone();
        if opts.mode() == DecompressMode::Guest {
            let reason = "--kernel-decompress guest".to_string();
            self.decompression = Some(Decompression::Guest { reason });
            return Ok(());
        }
        let path = &self.path;
        let cache = match (opts.cache_on(), KernelCache::default_dir()) {
            (false, _) => CacheSetting::Off,
            (true, Some(d)) => {
                CacheSetting::Use(KernelCache::new(d, KernelCache::DEFAULT_MAX_BYTES))
            }
            (true, None) => CacheSetting::Unavailable(
                "neither XDG_CACHE_HOME nor HOME is an absolute path".into(),
            ),
        };
        let unpacked = self.unpack_through(&info, &cache)?;
        let record = match unpacked {
            Unpack::Direct(u) => {
                self.cache_store = u.pending;
                self.kind = ImageKind::Unpacked {
                    info,
                    elf: u.elf,
                    vmlinux: Some(u.vmlinux),
                };
                u.record
            }
            Unpack::Guest(reason) => {
                tracing::warn!(
                    "{}: its kernel is decompressed in the guest, more slowly: {reason}",
                    path.display()
                );
                Decompression::Guest { reason }
            }
        };
        self.decompression = Some(record);
        Ok(())
    }

    /// The bzImage's kernel decompressed, or from the cache. A bzImage hashed before
    /// and unchanged since has its SHA-256 on record: a cache hit then reads none of it.
    fn unpack_through(
        &self,
        info: &BzImageInfo,
        cache: &CacheSetting,
    ) -> Result<Unpack, BootError> {
        let version = self.file.metadata().ok().map(|m| Version::of(&m));
        let known = cache.cache().zip(version.as_ref()).and_then(|(c, v)| {
            let key = c.known_key(v)?;
            Some((key, unpack_known(&self.file, self.len, info, c, &key)))
        });
        let key = match known {
            Some((_, Some(u))) => return Ok(Unpack::Direct(u)),
            Some((key, None)) => Some(key),
            None => None,
        };
        let start = std::time::Instant::now();
        let image = read_all(&self.path, &self.file, self.len)?;
        let read = start.elapsed();
        let key = cache
            .cache()
            .map(|_| key.unwrap_or_else(|| Key::of(&image)));
        tracing::debug!(
            "bzImage read in {:.1} ms, hashed (if it was not known) in {:.1} ms",
            crate::linux::ms(read),
            crate::linux::ms(start.elapsed() - read)
        );
        // Stamped only if the file did not change while it was read.
        let after = self.file.metadata().ok().map(|m| Version::of(&m));
        if let (Some(c), Some(k), Some(v)) = (cache.cache(), &key, &version) {
            if after.as_ref() == Some(v) {
                c.note_key(v, k);
            }
        }
        unpack(&image, info, cache, key).map_err(|error| BootError::Payload {
            path: self.path.clone(),
            error,
        })
    }

    pub fn format(&self) -> KernelFormat {
        match self.kind {
            ImageKind::BzImage(_) | ImageKind::Unpacked { .. } => KernelFormat::BzImage,
            ImageKind::Elf(_) => KernelFormat::Elf,
        }
    }

    /// Bytes of RAM above 1 MiB the kernel needs before it can run at all.
    pub fn min_high_ram(&self) -> u64 {
        match &self.kind {
            ImageKind::BzImage(info) => u64::from(info.init_size),
            ImageKind::Elf(info) | ImageKind::Unpacked { elf: info, .. } => {
                info.load_end.saturating_sub(HIMEM_START)
            }
        }
    }

    pub fn cmdline_max(&self) -> usize {
        match &self.kind {
            ImageKind::BzImage(info) | ImageKind::Unpacked { info, .. } => {
                info.cmdline_size as usize
            }
            ImageKind::Elf(_) => ELF_CMDLINE_MAX,
        }
    }

    /// Loads the kernel into `ram`.
    pub fn load(&mut self, ram: &GuestRam) -> Result<LoadedKernel, BootError> {
        let mem = ram.guest_memory();
        let file = &mut self.file;
        let himem = Some(GuestAddress(HIMEM_START));
        match &mut self.kind {
            ImageKind::BzImage(info) => {
                let r = BzImage::load(mem, himem, file, himem).map_err(BootError::Load)?;
                let load = r.kernel_load.0;
                Ok(LoadedKernel {
                    format: KernelFormat::BzImage,
                    entry: load + ENTRY_64_OFFSET,
                    end: r.kernel_end.max(load + u64::from(info.init_size)),
                    setup_header: r.setup_header,
                    initrd_limit: u64::from(info.initrd_addr_max) + 1,
                })
            }
            ImageKind::Elf(info) => {
                let r = Elf::load(mem, None, file, himem).map_err(BootError::Load)?;
                Ok(LoadedKernel {
                    format: KernelFormat::Elf,
                    entry: r.kernel_load.0,
                    end: info.load_end,
                    setup_header: None,
                    // Without a header, stay below 2 GiB as the protocol's default.
                    initrd_limit: 0x8000_0000,
                })
            }
            ImageKind::Unpacked { info, elf, vmlinux } => {
                // The decompressed kernel is only needed until it is in guest memory.
                let r = match vmlinux.take() {
                    Some(Vmlinux::Memory(bytes)) => {
                        Elf::load(mem, None, &mut Cursor::new(&bytes[..]), himem)
                    }
                    Some(Vmlinux::Cached(mut entry)) => {
                        Elf::load(mem, None, &mut entry.file, himem)
                    }
                    None => return Err(BootError::Unsupported("loading a kernel twice")),
                }
                .map_err(BootError::Load)?;
                Ok(LoadedKernel {
                    format: KernelFormat::BzImage,
                    entry: r.kernel_load.0,
                    end: elf.load_end,
                    setup_header: Some(header_of(info)),
                    initrd_limit: u64::from(info.initrd_addr_max) + 1,
                })
            }
        }
    }
}

/// Checks the command line against the kernel's limit; returns it NUL-terminated.
pub fn cmdline_bytes(cmdline: &str, max: usize) -> Result<Vec<u8>, BootError> {
    if cmdline.contains('\0') {
        return Err(BootError::CmdlineNul);
    }
    let max = max.min(CMDLINE_MAX as usize - 1);
    if cmdline.len() > max {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    let mut b = cmdline.as_bytes().to_vec();
    b.push(0);
    Ok(b)
}

/// Places an initramfs of `size` bytes as high as possible below `limit` and the end
/// of the first RAM range, page aligned, above the kernel. Returns its address.
pub fn place_initrd(
    size: u64,
    kernel_end: u64,
    low_ram_end: u64,
    limit: u64,
) -> Result<u64, BootError> {
    let top = low_ram_end.min(limit);
    let addr = top.checked_sub(size).map(|a| a & !0xfff);
    match addr {
        Some(a) if a >= kernel_end.next_multiple_of(0x1000) => Ok(a),
        _ => Err(BootError::InitrdTooLarge {
            size,
            room: top.saturating_sub(kernel_end),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_goes_high_and_page_aligned_or_is_refused() {
        let a = place_initrd(0x1234, 0x400_0000, 0x4000_0000, 0x8000_0000).unwrap();
        assert_eq!(a, 0x3fff_e000);
        assert!(a + 0x1234 <= 0x4000_0000);
        let limited = place_initrd(0x1000, 0x400_0000, 0xc000_0000, 0x8000_0000).unwrap();
        assert_eq!(limited, 0x7fff_f000);
        let e = place_initrd(0x3000_1000, 0x1000_0000, 0x4000_0000, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }

    #[test]
    fn command_lines_are_checked_against_the_kernel_limit() {
        assert_eq!(
            cmdline_bytes("console=ttyS0", 2047).unwrap().last(),
            Some(&0)
        );
        let long = "x".repeat(3000);
        let e = cmdline_bytes(&long, 2047).unwrap_err().to_string();
        assert!(e.contains("3000") && e.contains("2047"), "{e}");
        assert!(cmdline_bytes("a\0b", 2047).is_err());
    }

    #[test]
    fn files_that_are_not_kernels_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("granule-kernel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        let e = open(&empty, &KernelOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("empty") && e.contains(&*empty.to_string_lossy()),
            "{e}"
        );
        let text = dir.join("text");
        std::fs::write(&text, b"hello").unwrap();
        assert!(open(&text, &KernelOptions::default())
            .err()
            .unwrap()
            .to_string()
            .contains("not a Linux kernel"));
        let e = open(&dir.join("missing"), &KernelOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        assert!(open(&dir, &KernelOptions::default())
            .err()
            .unwrap()
            .to_string()
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
