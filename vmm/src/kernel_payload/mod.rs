//! A bzImage's compressed kernel, decompressed on the host. The guest's own
//! decompressor runs at guest speed, before the kernel proper starts; decompressing
//! once on the host (and caching the result, [`cache`]) lets granule load the vmlinux
//! inside directly, as it loads an ELF kernel.
//!
//! The payload is what the kernel's build appends to the decompressor: one stream in
//! one of the seven compressions that decompressor understands, then the uncompressed
//! size as 32 bits little-endian (for gzip, its own trailer's last field). The size is checked against what comes out, so a
//! truncated or damaged stream is an error rather than a half kernel.

pub mod background_store;
pub mod cache;
pub mod choice;
mod lz4_legacy;
mod lzop;
#[cfg(test)]
mod temp_dir;

use std::io::Read;

use serde::Serialize;
use thiserror::Error;

/// The compressions a bzImage's payload can be in (the kernel's CONFIG_KERNEL_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    Gzip,
    Bzip2,
    Lzma,
    Xz,
    Lzo,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every compression, for tests and messages.
    pub const ALL: [Compression; 7] = [
        Self::Gzip,
        Self::Bzip2,
        Self::Lzma,
        Self::Xz,
        Self::Lzo,
        Self::Lz4,
        Self::Zstd,
    ];

    /// The compression a stream starts with, by the magic numbers the kernel's
    /// decompressor recognises; None for anything else.
    pub fn detect(stream: &[u8]) -> Option<Self> {
        const MAGICS: [(&[u8], Compression); 8] = [
            (b"\x1f\x8b", Compression::Gzip),
            (b"\x1f\x9e", Compression::Gzip),
            (b"BZh", Compression::Bzip2),
            (b"\x5d\x00\x00", Compression::Lzma),
            (b"\xfd7zXZ\x00", Compression::Xz),
            (b"\x89LZO", Compression::Lzo),
            (b"\x02\x21\x4c\x18", Compression::Lz4),
            (b"\x28\xb5\x2f\xfd", Compression::Zstd),
        ];
        MAGICS
            .iter()
            .find(|(magic, _)| stream.starts_with(magic))
            .map(|(_, c)| *c)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Bzip2 => "bzip2",
            Self::Lzma => "lzma",
            Self::Xz => "xz",
            Self::Lzo => "lzo",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("the compressed kernel is {len} bytes, too short to hold its size trailer")]
    TooShort { len: usize },
    #[error("the compressed kernel starts with bytes {head} that no compression the kernel supports starts with")]
    UnknownCompression { head: String },
    #[error(
        "the compressed kernel says it decompresses to {claimed} bytes, more than granule's \
         limit of {limit} bytes"
    )]
    TooLarge { claimed: u64, limit: u64 },
    #[error("the {format} data of the compressed kernel is corrupt or truncated: {detail}")]
    Corrupt { format: Compression, detail: String },
    #[error(
        "the {format} data of the compressed kernel decompressed to {actual} bytes where its \
         trailer says {expected}: the data is truncated or corrupt"
    )]
    SizeMismatch {
        format: Compression,
        expected: u64,
        actual: u64,
    },
}

/// A payload split into its compressed stream and the size it says it decompresses to.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    pub format: Compression,
    pub stream: &'a [u8],
    pub size: u64,
}

impl<'a> Payload<'a> {
    /// Splits `payload` into its stream and size trailer and recognises the stream.
    /// (gzip's own trailer ends in the size, so its stream is the whole payload.)
    pub fn parse(payload: &'a [u8]) -> Result<Self, PayloadError> {
        let split = payload
            .len()
            .checked_sub(4)
            .filter(|n| *n > 0)
            .ok_or(PayloadError::TooShort { len: payload.len() })?;
        let format =
            Compression::detect(payload).ok_or_else(|| PayloadError::UnknownCompression {
                head: payload.iter().take(6).map(|b| format!("{b:02x}")).collect(),
            })?;
        let t = &payload[split..];
        let size = u64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
        let stream = &payload[..Self::stream_len(format, payload.len() as u64) as usize];
        Ok(Self {
            format,
            stream,
            size,
        })
    }

    /// Bytes of the compressed stream in a payload of `payload_len` bytes (at least 4):
    /// all of it for gzip, whose own trailer ends in the size, else all but the size.
    pub fn stream_len(format: Compression, payload_len: u64) -> u64 {
        match format {
            Compression::Gzip => payload_len,
            _ => payload_len.saturating_sub(4),
        }
    }

    /// Decompresses the stream; refuses one that claims more than `limit` bytes, and
    /// checks the result has exactly the size the trailer says.
    pub fn decompress(&self, limit: u64) -> Result<Vec<u8>, PayloadError> {
        if self.size > limit {
            return Err(PayloadError::TooLarge {
                claimed: self.size,
                limit,
            });
        }
        // The trailer's size is at most 4 GiB - 1 and at most `limit`: it fits usize.
        let expected = self.size as usize;
        let out = self.decode(expected).map_err(|e| self.corrupt(e))?;
        if out.len() != expected {
            return Err(PayloadError::SizeMismatch {
                format: self.format,
                expected: self.size,
                actual: out.len() as u64,
            });
        }
        Ok(out)
    }

    /// Decodes at most `expected + 1` bytes (one more shows a stream that is too long).
    fn decode(&self, expected: usize) -> std::io::Result<Vec<u8>> {
        let s = self.stream;
        let cap = expected.saturating_add(1);
        match self.format {
            Compression::Gzip => read_capped(flate2::read::GzDecoder::new(s), cap),
            Compression::Bzip2 => read_capped(bzip2::read::BzDecoder::new(s), cap),
            Compression::Lzma => {
                let r = lzma_rust2::LzmaReader::new_mem_limit(s, DECODER_MEMORY_KIB, None)?;
                read_capped(r, cap)
            }
            Compression::Xz => {
                let r = lzma_rust2::XzReader::new_mem_limit(s, false, DECODER_MEMORY_KIB);
                read_capped(r, cap)
            }
            Compression::Zstd => zstd_one_pass(s, cap),
            Compression::Lz4 => lz4_legacy::decompress(s, cap),
            Compression::Lzo => lzop::decompress(s, cap),
        }
    }

    fn corrupt(&self, e: std::io::Error) -> PayloadError {
        let detail = match e.kind() {
            std::io::ErrorKind::UnexpectedEof => format!("it ends early ({e})"),
            _ => e.to_string(),
        };
        PayloadError::Corrupt {
            format: self.format,
            detail,
        }
    }
}

/// The most memory an lzma or xz decoder may take for its dictionary: the header of a
/// damaged or hostile stream can ask for 4 GiB. The kernel's build uses 32 MiB (xz)
/// and 64 MiB (`lzma -9`).
const DECODER_MEMORY_KIB: u32 = 256 << 10;

/// Decodes the zstd frame `stream` starts with in one pass, straight into a buffer of
/// `cap` bytes. Unlike streaming, this keeps no window: no second buffer the size of
/// the kernel (the kernel's build uses a 2^27-byte window) and no copy out of it,
/// which takes 40% off the decoding time (Debian's 58 MB vmlinux, natively and under
/// TCG alike). Memory is bounded by `cap` whatever the frame's header claims; a frame
/// that decodes to more than `cap` bytes is refused.
fn zstd_one_pass(stream: &[u8], cap: usize) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::{self, DCtx};
    let failed = |code: usize| invalid(zstd_safe::get_error_name(code));
    let frame = zstd_safe::find_frame_compressed_size(stream).map_err(failed)?;
    let frame = stream
        .get(..frame)
        .ok_or_else(|| invalid("the frame is longer than the data"))?;
    let mut out = Vec::with_capacity(cap);
    DCtx::create().decompress(&mut out, frame).map_err(failed)?;
    Ok(out)
}

/// Reads `r` to its end or to `cap` bytes, whichever comes first.
fn read_capped<R: Read>(r: R, cap: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(cap.min(1 << 30));
    r.take(cap as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// An error for data a decoder found malformed.
pub(crate) fn invalid(detail: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, detail.into())
}

#[cfg(test)]
mod tests;
