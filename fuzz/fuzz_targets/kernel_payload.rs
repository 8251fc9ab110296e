//! A bzImage's compressed kernel, as granule decompresses it on the host: the payload's
//! framing (size trailer, magic numbers) and granule's own readers of lzop files and
//! LZ4 legacy frames, with every decoder behind them. The first byte picks a format
//! whose magic number is put in front, so each decoder sees inputs it accepts; the
//! output limit is small so one input cannot take long.
#![no_main]

use granule_fuzz::Ops;
use granule_vmm::kernel_payload::Payload;
use libfuzzer_sys::fuzz_target;

const MAGICS: [&[u8]; 8] = [
    b"\x1f\x8b",
    b"BZh",
    b"\x5d\x00\x00",
    b"\xfd7zXZ\x00",
    b"\x89LZO\x00\r\n\x1a\n",
    b"\x02\x21\x4c\x18",
    b"\x28\xb5\x2f\xfd",
    b"",
];

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data);
    let magic = MAGICS[usize::from(ops.u8()) % MAGICS.len()];
    let mut payload = magic.to_vec();
    payload.extend_from_slice(ops.bytes(usize::MAX));
    if let Ok(p) = Payload::parse(&payload) {
        if let Ok(v) = p.decompress(1 << 20) {
            assert_eq!(v.len() as u64, p.size);
        }
    }
});
