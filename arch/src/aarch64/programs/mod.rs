//! The built-in programs for aarch64 and their image. Every program but stress is laid
//! out in low guest memory like this (RAM starts at 0 for built-in programs):
//!
//! ```text
//! VECTORS (0x800)     exception vectors: every entry reports the exception
//! IMAGE_BASE          code: the workload
//! page aligned        identity page tables (TTBR0_EL1)
//! page aligned        data: the text to print / per-vCPU touch tables
//! reserved_end        (2 MiB aligned) free RAM: what `touch` writes
//! ```

mod stress;
mod workloads;

pub use stress::STRESS_STORE_LEN;
pub use workloads::PROBE_PATTERN;

use super::layout::{IMAGE_BASE, MMIO_HOLE_END, VECTORS};
use super::paging::{identity_map, PAGE};
use crate::image::{hello_text, page_up};
use crate::{touch_shares, GuestImage, ImageError, Program, RamRange, VcpuEntry};

/// Longest text `hello` prints.
pub const MAX_TEXT: usize = 4096;
/// The highest guest-physical address an arm64 guest reaches (KVM's default 40-bit
/// IPA space).
const IPA_LIMIT: u64 = 1 << 40;
const MIB2: u64 = 2 << 20;

/// Builds the image of `program` over `ram` for `vcpus` vCPUs, the stage-1 identity map
/// made of `guest_page` leaves (4 KiB, 2 MiB or 1 GiB).
pub fn build(
    program: &Program,
    ram: &[RamRange],
    vcpus: usize,
    guest_page: u64,
) -> Result<GuestImage, ImageError> {
    if let Program::Stress { .. } = program {
        return stress::build(program, ram, vcpus, guest_page);
    }
    if vcpus == 0 {
        return Err(ImageError::NoVcpus);
    }
    let first = *ram.first().ok_or(ImageError::NoRam)?;
    let ram_top = ram.iter().map(RamRange::end).max().unwrap_or(0);
    let mut top = ram_top.max(MMIO_HOLE_END);
    if let Program::MmioProbe { gpa } | Program::Hammer { gpa, .. } = program {
        if ram.iter().any(|r| (r.gpa..r.end()).contains(gpa)) {
            return Err(ImageError::ProbeInRam { gpa: *gpa });
        }
        if *gpa >= IPA_LIMIT - 8 {
            return Err(ImageError::ProbeUnmapped {
                gpa: *gpa,
                top: IPA_LIMIT,
            });
        }
        top = top.max(gpa + 8);
    }
    let vectors = workloads::vectors(VECTORS)?;
    let code = workloads::encode(program, IMAGE_BASE)?;
    let tables_base = page_up(IMAGE_BASE + code.len() as u64);
    let tables = identity_map(tables_base, top, guest_page)
        .map_err(|e| ImageError::Paging(e.to_string()))?;
    let data_base = page_up(tables_base + tables.len() as u64);
    // Room for the data before knowing the touch shares: one page of text, or up to
    // one (start, end) pair per RAM range and vCPU.
    let data_room = (MAX_TEXT as u64).max(16 * (ram.len() as u64 + 1) * vcpus as u64);
    let reserved_end = (data_base + data_room).next_multiple_of(MIB2);
    if first.gpa != 0 || reserved_end > first.end() {
        return Err(ImageError::RamTooSmall {
            need: reserved_end,
            limit: first.end(),
        });
    }
    let (data, args, pages_per_vcpu) = data_and_args(program, ram, vcpus, data_base, reserved_end)?;
    let vcpu_entries = args
        .into_iter()
        .map(|args| VcpuEntry {
            entry: IMAGE_BASE,
            kernel_stack: 0,
            user_stack: 0,
            args,
        })
        .collect();
    Ok(GuestImage {
        writes: vec![
            (VECTORS, vectors),
            (IMAGE_BASE, code),
            (tables_base, tables.clone()),
            (data_base, data),
        ],
        page_table_root: tables_base,
        guest_page_size: guest_page,
        vcpus: vcpu_entries,
        reserved_end,
        page_tables: (tables_base, tables_base + tables.len() as u64),
        pages_per_vcpu,
        ro_flag: 0,
        vectors: Some(VECTORS),
    })
}

type Data = (Vec<u8>, Vec<[u64; 4]>, Vec<u64>);

/// The data block at `data_base`, each vCPU's x0..x3 and each vCPU's pages of work.
fn data_and_args(
    program: &Program,
    ram: &[RamRange],
    vcpus: usize,
    data_base: u64,
    reserved_end: u64,
) -> Result<Data, ImageError> {
    let mut args = vec![[0u64; 4]; vcpus];
    let mut pages = vec![0u64; vcpus];
    let mut data = Vec::new();
    match program {
        Program::Hello { text } => {
            data.extend_from_slice(hello_text(text, MAX_TEXT)?);
            args.fill([data_base, text.len() as u64, 0, 0]);
        }
        Program::Touch => {
            for (i, share) in touch_shares(ram, reserved_end, vcpus).iter().enumerate() {
                let at = data_base + data.len() as u64;
                for &(s, e) in share {
                    data.extend_from_slice(&s.to_le_bytes());
                    data.extend_from_slice(&e.to_le_bytes());
                    pages[i] += (e - s) / PAGE;
                }
                args[i] = [at, share.len() as u64, 0, 0];
            }
        }
        _ => {}
    }
    Ok((data, args, pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn touch_gives_each_vcpu_its_table_and_all_free_ram_once() {
        let ram = [
            RamRange { gpa: 0, size: GIB },
            RamRange {
                gpa: 4 * GIB,
                size: GIB,
            },
        ];
        let img = build(&Program::Touch, &ram, 2, GIB).unwrap();
        assert_eq!(img.vectors, Some(VECTORS));
        assert_eq!(img.reserved_end % MIB2, 0);
        let total: u64 = img.pages_per_vcpu.iter().sum();
        assert_eq!(total, (2 * GIB - img.reserved_end) / PAGE);
        let data = &img.writes[3];
        for v in &img.vcpus {
            let [table, pairs, ..] = v.args;
            assert!(pairs >= 1);
            let off = (table - data.0) as usize;
            let start = u64::from_le_bytes(data.1[off..off + 8].try_into().unwrap());
            assert!(start >= img.reserved_end);
        }
    }

    #[test]
    fn hello_passes_its_text_and_bad_requests_are_errors() {
        let ram = [RamRange { gpa: 0, size: GIB }];
        let img = build(&Program::Hello { text: "hi".into() }, &ram, 1, GIB).unwrap();
        let [text, len, ..] = img.vcpus[0].args;
        assert_eq!(len, 2);
        assert!(img.writes.iter().any(|(at, b)| *at == text && b == b"hi"));
        assert!(matches!(
            build(
                &Program::Hello {
                    text: "x".repeat(5000)
                },
                &ram,
                1,
                GIB
            ),
            Err(ImageError::TextTooLong { .. })
        ));
        let err = |p: Program, vcpus| build(&p, &ram, vcpus, GIB).err();
        assert_eq!(
            err(Program::MmioProbe { gpa: 0x1000 }, 1),
            Some(ImageError::ProbeInRam { gpa: 0x1000 })
        );
        assert!(matches!(
            build(
                &Program::Spin,
                &[RamRange {
                    gpa: 0,
                    size: MIB2 / 2
                }],
                1,
                GIB
            ),
            Err(ImageError::RamTooSmall { .. })
        ));
        assert_eq!(err(Program::Spin, 0), Some(ImageError::NoVcpus));
        assert_eq!(
            err(Program::PortProbe { port: 1 }, 1),
            Some(ImageError::X86Only("port-probe"))
        );
    }
}
