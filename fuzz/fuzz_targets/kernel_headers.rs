//! The checks on a kernel file's first bytes, before anything is loaded: bzImage setup
//! header, ELF and program headers (x86_64), arm64 Image header. The file's length comes
//! from the input too, since a header may claim more than the file holds.
#![no_main]

use granule_arch::aarch64::boot::ImageHeader;
use granule_arch::x86_64::boot::{bzimage, elf};
use granule_fuzz::Ops;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data);
    let slack = u64::from(ops.u16());
    let head = ops.bytes(usize::MAX);
    for file_len in [head.len() as u64, head.len() as u64 + slack, u64::MAX] {
        let _ = bzimage::parse(head, file_len);
        let _ = elf::parse(head, file_len);
        let _ = ImageHeader::parse(head, file_len);
    }
    let _ = granule_arch::aarch64::boot::image::is_gzip(head);
});
