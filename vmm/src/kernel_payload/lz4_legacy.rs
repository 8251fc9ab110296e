//! LZ4's legacy frame, the one the kernel's build writes (`lz4 -l`): a magic number,
//! then blocks of at most 8 MiB of output, each a 32-bit little-endian compressed
//! length and an LZ4 block; no end mark, no checksums. (A magic number may repeat
//! where several frames were concatenated.)

use super::invalid;

const MAGIC: u32 = 0x184c_2102;
/// The most one legacy block decompresses to.
const BLOCK_MAX: usize = 8 << 20;

fn u32_at(s: &[u8], at: usize) -> Option<u32> {
    let b = s.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decompresses a legacy-frame stream, to at most `cap` bytes.
pub fn decompress(stream: &[u8], cap: usize) -> std::io::Result<Vec<u8>> {
    if u32_at(stream, 0) != Some(MAGIC) {
        return Err(invalid("no LZ4 legacy magic number"));
    }
    let mut out = Vec::new();
    let mut at = 4;
    while at < stream.len() {
        let len = u32_at(stream, at)
            .ok_or_else(|| invalid(format!("a block length at byte {at} is cut off")))?;
        at += 4;
        if len == MAGIC {
            continue;
        }
        let block = at
            .checked_add(len as usize)
            .and_then(|end| stream.get(at..end))
            .ok_or_else(|| {
                invalid(format!(
                    "the block at byte {} says {len} bytes, past the stream's end at {}",
                    at - 4,
                    stream.len()
                ))
            })?;
        at += block.len();
        let start = out.len();
        out.resize(start + BLOCK_MAX, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[start..])
            .map_err(|e| invalid(format!("the block at byte {}: {e}", at - block.len() - 4)))?;
        out.truncate(start + n);
        if out.len() >= cap {
            out.truncate(cap);
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(blocks: &[&[u8]]) -> Vec<u8> {
        let mut s = MAGIC.to_le_bytes().to_vec();
        for b in blocks {
            let c = lz4_flex::block::compress(b);
            s.extend_from_slice(&(c.len() as u32).to_le_bytes());
            s.extend_from_slice(&c);
        }
        s
    }

    #[test]
    fn blocks_are_joined_and_a_repeated_magic_is_skipped() {
        let mut s = frame(&[b"hello hello hello ", b"world"]);
        s.extend_from_slice(&frame(&[b"!"]));
        assert_eq!(decompress(&s, 100).unwrap(), b"hello hello hello world!");
    }

    #[test]
    fn a_cut_block_or_length_is_an_error_naming_the_byte() {
        let s = frame(&[&[7u8; 5000]]);
        let e = decompress(&s[..s.len() - 1], 10_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("past the stream's end"), "{e}");
        let e = decompress(&s[..6], 10_000).unwrap_err().to_string();
        assert!(e.contains("cut off"), "{e}");
        assert!(decompress(b"\x02\x21\x4c", 10).is_err());
    }
}
