//! lzop's file format, the one the kernel's build writes for LZO (`lzop -9`): a header
//! (magic, versions, method, flags, mode, times, name, header checksum), then blocks
//! of a 32-bit big-endian uncompressed and compressed length, optional checksums and
//! LZO1X data (or the bytes as they are when compressing did not shrink them), ended
//! by a zero length. The uncompressed data's Adler-32, when present, is checked.

use super::invalid;

const MAGIC: &[u8] = b"\x89LZO\x00\r\n\x1a\n";
const F_ADLER32_D: u32 = 0x1;
const F_ADLER32_C: u32 = 0x2;
const F_H_EXTRA_FIELD: u32 = 0x40;
const F_CRC32_D: u32 = 0x100;
const F_CRC32_C: u32 = 0x200;
const F_H_FILTER: u32 = 0x800;
/// lzop never writes larger blocks.
const BLOCK_MAX: u32 = 64 << 20;

/// A cursor over the stream that names what was cut off.
struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::io::Result<&'a [u8]> {
        let b = self
            .at
            .checked_add(n)
            .and_then(|end| self.s.get(self.at..end))
            .ok_or_else(|| {
                invalid(format!(
                    "{what} at byte {} is cut off (the stream has {} bytes)",
                    self.at,
                    self.s.len()
                ))
            })?;
        self.at += n;
        Ok(b)
    }

    fn u8(&mut self, what: &str) -> std::io::Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> std::io::Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> std::io::Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Reads the header; returns its flags.
fn header(r: &mut Reader) -> std::io::Result<u32> {
    if r.take(MAGIC.len(), "the lzop magic number")? != MAGIC {
        return Err(invalid("no lzop magic number"));
    }
    let version = r.u16("the version")?;
    r.u16("the library version")?;
    if version >= 0x0940 {
        r.u16("the version needed to extract")?;
    }
    r.u8("the method")?;
    if version >= 0x0940 {
        r.u8("the level")?;
    }
    let flags = r.u32("the flags")?;
    if flags & F_H_FILTER != 0 {
        r.u32("the filter")?;
    }
    r.u32("the mode")?;
    r.u32("the modification time")?;
    if version >= 0x0940 {
        r.u32("the modification time's high half")?;
    }
    let name = r.u8("the name's length")?;
    r.take(usize::from(name), "the name")?;
    r.u32("the header checksum")?;
    if flags & F_H_EXTRA_FIELD != 0 {
        let n = r.u32("the extra field's length")?;
        r.take(n as usize, "the extra field")?;
        r.u32("the extra field's checksum")?;
    }
    Ok(flags)
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before the 32-bit sums could overflow.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Decompresses an lzop stream, to at most `cap` bytes.
pub fn decompress(stream: &[u8], cap: usize) -> std::io::Result<Vec<u8>> {
    let mut r = Reader { s: stream, at: 0 };
    let flags = header(&mut r)?;
    let mut out = Vec::new();
    loop {
        let start = r.at;
        let dst_len = r.u32("a block's uncompressed length")?;
        if dst_len == 0 {
            return Ok(out);
        }
        if dst_len > BLOCK_MAX {
            return Err(invalid(format!(
                "the block at byte {start} says {dst_len} bytes, more than lzop writes"
            )));
        }
        let src_len = r.u32("a block's compressed length")?;
        if src_len == 0 || src_len > dst_len {
            return Err(invalid(format!(
                "the block at byte {start} has compressed length {src_len} for {dst_len} bytes"
            )));
        }
        let adler = match flags & F_ADLER32_D {
            0 => None,
            _ => Some(r.u32("a block's checksum")?),
        };
        if flags & F_CRC32_D != 0 {
            r.u32("a block's CRC")?;
        }
        if src_len < dst_len {
            for flag in [F_ADLER32_C, F_CRC32_C] {
                if flags & flag != 0 {
                    r.u32("a block's compressed checksum")?;
                }
            }
        }
        let data = r.take(src_len as usize, "a block's data")?;
        let from = out.len();
        if src_len == dst_len {
            out.extend_from_slice(data);
        } else {
            out.resize(from + dst_len as usize, 0);
            lzo1x::decompress(data, &mut out[from..])
                .map_err(|e| invalid(format!("the block at byte {start}: {e:?}")))?;
        }
        if adler.is_some_and(|sum| sum != adler32(&out[from..])) {
            return Err(invalid(format!(
                "the block at byte {start} fails its Adler-32 checksum"
            )));
        }
        if out.len() >= cap {
            out.truncate(cap);
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_known_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        // Long enough to need the modular reductions.
        assert_eq!(adler32(&vec![0xffu8; 100_000]), 0x149a_302c);
    }

    #[test]
    fn a_header_alone_is_cut_off_at_its_first_block() {
        let e = decompress(MAGIC, 10).unwrap_err().to_string();
        assert!(e.contains("the version") && e.contains("cut off"), "{e}");
        assert!(decompress(b"\x89LZO\x00\r\n\x1a\x0b", 10).is_err());
    }
}
