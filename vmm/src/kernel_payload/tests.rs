//! The decompressors against payloads made by the tools the kernel's build uses
//! (tests/fixtures/kernel-payloads/make.sh), whole, truncated and damaged.

use super::*;

const FIXTURES: [(Compression, &[u8]); 7] = [
    (
        Compression::Gzip,
        include_bytes!("../../../tests/fixtures/kernel-payloads/vmlinux.gz"),
    ),
    (
        Compression::Bzip2,
        include_bytes!("../../../tests/fixtures/kernel-payloads/vmlinux.bz2"),
    ),
    (
        Compression::Lzma,
        include_bytes!("../../../tests/fixtures/kernel-payloads/vmlinux.lzma"),
    ),
    (
        Compression::Xz,
        include_bytes!("../../../tests/fixtures/kernel-payloads/vmlinux.xz"),
    ),
    (
        Compression::Lzo,
        include_bytes!("../../../tests/fixtures/kernel-payloads/vmlinux.lzo"),
    ),
    (
        Compression::Lz4,
        include_bytes!("../../../tests/fixtures/kernel-payloads/vmlinux.lz4"),
    ),
    (
        Compression::Zstd,
        include_bytes!("../../../tests/fixtures/kernel-payloads/vmlinux.zst"),
    ),
];

/// The fixture's vmlinux: the gzip file through flate2, a decoder independent of
/// granule's code.
fn reference() -> Vec<u8> {
    let mut v = Vec::new();
    flate2::read::GzDecoder::new(FIXTURES[0].1)
        .read_to_end(&mut v)
        .unwrap();
    assert!(v.starts_with(b"\x7fELF") && v.len() == 282_624);
    v
}

const LIMIT: u64 = 1 << 30;

#[test]
fn every_format_the_kernel_builds_decompresses_to_the_same_vmlinux() {
    let want = reference();
    for (format, payload) in FIXTURES {
        let p = Payload::parse(payload).unwrap();
        assert_eq!(p.format, format);
        assert_eq!(p.size, want.len() as u64, "{format}");
        let got = p
            .decompress(LIMIT)
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        assert!(got == want, "{format}: the output differs");
    }
}

#[test]
fn a_truncated_payload_is_an_error_naming_its_format() {
    for (format, payload) in FIXTURES {
        // Half the stream, then the original size trailer.
        let mut cut = payload[..payload.len() / 2].to_vec();
        cut.extend_from_slice(&payload[payload.len() - 4..]);
        let e = Payload::parse(&cut).unwrap().decompress(LIMIT).unwrap_err();
        assert!(
            matches!(&e, PayloadError::Corrupt { format: f, .. }
                | PayloadError::SizeMismatch { format: f, .. } if *f == format),
            "{format}: {e:?}"
        );
        assert!(e.to_string().contains(format.name()), "{e}");
    }
}

#[test]
fn a_damaged_payload_is_an_error_naming_its_format() {
    // 64 bytes overwritten a third of the way in: formats with checksums (gzip, bzip2,
    // xz, lzo, zstd) catch any change; lzma and lz4 have none and catch a change that
    // breaks their structure or the size, as this one does.
    for (format, payload) in FIXTURES {
        let mut bad = payload.to_vec();
        let at = bad.len() / 3;
        bad[at..at + 64].fill(0xff);
        let e = Payload::parse(&bad).unwrap().decompress(LIMIT).unwrap_err();
        assert!(
            matches!(&e, PayloadError::Corrupt { format: f, .. }
                | PayloadError::SizeMismatch { format: f, .. } if *f == format),
            "{format}: {e:?}"
        );
    }
}

#[test]
fn a_stream_longer_than_its_trailer_says_is_refused() {
    for (format, payload) in FIXTURES {
        let mut lying = payload.to_vec();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
        let e = Payload::parse(&lying)
            .unwrap()
            .decompress(LIMIT)
            .unwrap_err();
        assert!(
            matches!(
                e,
                PayloadError::SizeMismatch {
                    actual: 1001,
                    expected: 1000,
                    ..
                } | PayloadError::Corrupt { .. }
            ),
            "{format}: {e:?}"
        );
    }
}

#[test]
fn short_unknown_and_oversized_payloads_are_refused_before_decoding() {
    assert_eq!(
        Payload::parse(b"\x1f\x8b\x00\x00").unwrap_err(),
        PayloadError::TooShort { len: 4 }
    );
    let e = Payload::parse(b"MZ\x90\x00\x03\x00\x00\x00").unwrap_err();
    assert_eq!(
        e,
        PayloadError::UnknownCompression {
            head: "4d5a90000300".into()
        }
    );
    let p = Payload::parse(FIXTURES[6].1).unwrap();
    assert_eq!(
        p.decompress(4096).unwrap_err(),
        PayloadError::TooLarge {
            claimed: 282_624,
            limit: 4096
        }
    );
}

#[test]
fn a_stream_asking_for_a_huge_dictionary_is_refused_not_allocated() {
    // An lzma header with a 4 GiB dictionary (0xffff0000 bytes).
    let mut lzma = b"\x5d\x00\x00\xff\xff".to_vec();
    lzma.extend_from_slice(&u64::MAX.to_le_bytes());
    lzma.extend_from_slice(&[0u8; 64]);
    lzma.extend_from_slice(&1000u32.to_le_bytes());
    let e = Payload::parse(&lzma)
        .unwrap()
        .decompress(LIMIT)
        .unwrap_err();
    assert!(
        matches!(&e, PayloadError::Corrupt { format: Compression::Lzma, detail } if detail.contains("memory")),
        "{e:?}"
    );
    // An xz stream whose one block asks LZMA2 for a 4 GiB - 1 dictionary (its
    // dictionary byte is 40): stream header (CRC32 flags), block header with its CRC32.
    let mut xz = b"\xfd7zXZ\x00\x00\x01\x69\x22\xde\x36".to_vec();
    xz.extend_from_slice(b"\x02\x00\x21\x01\x28\x00\x00\x00\xe6\xa0\x11\xb3");
    xz.extend_from_slice(&[0u8; 64]);
    xz.extend_from_slice(&1000u32.to_le_bytes());
    let e = Payload::parse(&xz).unwrap().decompress(LIMIT).unwrap_err();
    assert!(
        matches!(&e, PayloadError::Corrupt { format: Compression::Xz, detail } if detail.contains("memory")),
        "{e:?}"
    );
    // A zstd frame header with a 2 GiB window (window descriptor exponent 21 + 10):
    // decoded in one pass, into the output alone, it allocates no window at all.
    let mut zstd = b"\x28\xb5\x2f\xfd\x00\xa8".to_vec();
    zstd.extend_from_slice(&[0u8; 32]);
    zstd.extend_from_slice(&1000u32.to_le_bytes());
    let e = Payload::parse(&zstd)
        .unwrap()
        .decompress(LIMIT)
        .unwrap_err();
    assert!(
        matches!(
            &e,
            PayloadError::Corrupt {
                format: Compression::Zstd,
                ..
            }
        ),
        "{e:?}"
    );
}
