//! Where a bzImage's kernel is decompressed (the user's choice) and what happened:
//! the record a boot's summary carries.

use std::path::PathBuf;

use serde::Serialize;

use super::Compression;

/// `--kernel-decompress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecompressMode {
    /// granule decompresses the payload (once; cached) and boots the vmlinux inside.
    Host,
    /// The kernel's own decompressor runs in the guest, as on hardware.
    Guest,
}

/// `--kernel-cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheSwitch {
    On,
    Off,
}

/// The user's choices for a bzImage; None where an option was not given (so an
/// option that does not apply to the kernel can be refused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelOptions {
    pub decompress: Option<DecompressMode>,
    pub cache: Option<CacheSwitch>,
}

impl KernelOptions {
    pub fn mode(&self) -> DecompressMode {
        self.decompress.unwrap_or(DecompressMode::Host)
    }

    pub fn cache_on(&self) -> bool {
        self.cache != Some(CacheSwitch::Off)
    }

    /// The options given, by their command-line names (for refusing them).
    pub fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.decompress.is_some() {
            v.push("--kernel-decompress");
        }
        if self.cache.is_some() {
            v.push("--kernel-cache");
        }
        v
    }
}

/// How a bzImage's kernel was decompressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Decompression {
    Host {
        compression: Compression,
        compressed_bytes: u64,
        vmlinux_bytes: u64,
        cache: CacheUse,
        /// Reading the bzImage, hashing it and decompressing or reading the cache (a
        /// new cache entry is written meanwhile by a thread of its own, not counted).
        ms: f64,
    },
    /// By the kernel's own decompressor in the guest, and why.
    Guest { reason: String },
}

/// What the cache did for a host decompression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CacheUse {
    /// The vmlinux came from the cache; nothing was decompressed.
    Hit { dir: PathBuf },
    /// Decompressed, then stored for the next boot.
    Stored { dir: PathBuf },
    /// Decompressed; not stored, and why.
    NotStored { why: String },
    /// `--kernel-cache off`.
    Off,
}

impl Decompression {
    /// One line for the boot's human summary.
    pub fn describe(&self) -> String {
        match self {
            Self::Host {
                compression,
                vmlinux_bytes,
                cache,
                ms,
                ..
            } => {
                let size = format!("{:.1} MB", *vmlinux_bytes as f64 / 1e6);
                match cache {
                    CacheUse::Hit { dir } => format!(
                        "kernel: the {size} vmlinux of the {compression} bzImage came from the \
                         cache ({}) in {ms:.0} ms",
                        dir.display()
                    ),
                    CacheUse::Stored { .. } => format!(
                        "kernel: {compression} payload decompressed on the host to {size} in \
                         {ms:.0} ms (cached for the next boot)"
                    ),
                    CacheUse::NotStored { why } => format!(
                        "kernel: {compression} payload decompressed on the host to {size} in \
                         {ms:.0} ms (not cached: {why})"
                    ),
                    CacheUse::Off => format!(
                        "kernel: {compression} payload decompressed on the host to {size} in \
                         {ms:.0} ms (--kernel-cache off)"
                    ),
                }
            }
            Self::Guest { reason } => {
                format!("kernel: decompressed by its own code in the guest ({reason})")
            }
        }
    }
}
