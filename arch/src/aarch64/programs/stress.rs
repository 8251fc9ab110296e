//! The stress workload (mmu_stress_test's guest_code) and its image: the code, a
//! second copy that crashes (for the debug option), the read-only flag and the
//! identity tables, then the range the vCPUs hammer.

use super::super::asm::{Cond, A64, X};
use super::super::layout::{IMAGE_BASE, MMIO_HOLE_END, REPORT_MMIO};
use super::super::paging::{identity_map, PAGE};
use super::workloads::report;
use crate::report::ReportKind;
use crate::{GuestImage, ImageError, Program, RamRange, VcpuEntry};

/// Length of the stage-3 store (`str x0, [x0]`) the host skips on EFAULT.
pub const STRESS_STORE_LEN: u64 = 4;

fn stage(a: &mut A64, n: u16) {
    a.movz(X(1), n, 0);
    report(a, ReportKind::Stage);
}

/// One pass over [x19, x20) with stride x21, the address in x0.
fn pass(a: &mut A64, body: impl Fn(&mut A64)) {
    let (top, done) = (a.label(), a.label());
    a.mov(X(0), X(19));
    a.bind(top);
    a.cmp(X(0), X(20)).b_cond(Cond::Hs, done);
    body(a);
    a.add(X(0), X(0), X(21)).b(top);
    a.bind(done);
}

/// mmu_stress_test's guest_code; x0 = start, x1 = end, x2 = stride, x3 = flag address.
fn stress(a: &mut A64, crash: bool) {
    if crash {
        a.udf();
        return;
    }
    a.mov(X(19), X(0))
        .mov(X(20), X(1))
        .mov(X(21), X(2))
        .mov(X(22), X(3));
    a.mov_imm(X(17), REPORT_MMIO);
    let write = |a: &mut A64| {
        a.str(X(0), X(0));
    };
    pass(a, write);
    stage(a, 0);
    pass(a, write);
    stage(a, 1);
    pass(a, |a| {
        a.ldr(X(1), X(0));
    });
    stage(a, 2);
    let again = a.label();
    a.bind(again);
    pass(a, write); // `str x0, [x0]`: the host skips a faulting one with PC += 4
    a.ldr(X(1), X(22)).cbz(X(1), again);
    stage(a, 3);
    pass(a, write);
    stage(a, 4);
    a.udf();
}

/// Builds the stress image over `ram` for `vcpus` vCPUs, stage 1 in `guest_page` leaves
/// (upstream maps every 4 KiB page).
pub fn build(
    program: &Program,
    ram: &[RamRange],
    vcpus: usize,
    guest_page: u64,
) -> Result<GuestImage, ImageError> {
    let Program::Stress {
        start,
        end,
        crash_vcpu,
    } = program
    else {
        return Err(ImageError::Encode("not the stress program".into()));
    };
    if vcpus == 0 {
        return Err(ImageError::NoVcpus);
    }
    let first = ram.first().ok_or(ImageError::NoRam)?;
    let share = (end.saturating_sub(*start) / vcpus as u64) & !(PAGE - 1);
    if share == 0 {
        return Err(ImageError::StressRange {
            start: *start,
            end: *end,
            vcpus,
        });
    }
    let encode = |base: u64, crash: bool| {
        let mut a = A64::new(base);
        stress(&mut a, crash);
        a.finish().map_err(|e| ImageError::Encode(e.to_string()))
    };
    let code = encode(IMAGE_BASE, false)?;
    let crash_base = (IMAGE_BASE + code.len() as u64).next_multiple_of(PAGE);
    let crash_code = encode(crash_base, true)?;
    let flag = (crash_base + crash_code.len() as u64).next_multiple_of(PAGE);
    let tables_base = flag + PAGE;
    let top = ram
        .iter()
        .map(RamRange::end)
        .max()
        .unwrap_or(0)
        .max(*end)
        .max(MMIO_HOLE_END);
    let tables = identity_map(tables_base, top, guest_page)
        .map_err(|e| ImageError::Paging(e.to_string()))?;
    let reserved_end = (tables_base + tables.len() as u64).next_multiple_of(2 << 20);
    if first.gpa != 0 || reserved_end > first.end() {
        return Err(ImageError::RamTooSmall {
            need: reserved_end,
            limit: first.end(),
        });
    }
    let vcpu_entries = (0..vcpus)
        .map(|i| VcpuEntry {
            entry: if *crash_vcpu == Some(i) {
                crash_base
            } else {
                IMAGE_BASE
            },
            kernel_stack: 0,
            user_stack: 0,
            args: [
                start + share * i as u64,
                start + share * (i as u64 + 1),
                PAGE,
                flag,
            ],
        })
        .collect();
    let tables_end = tables_base + tables.len() as u64;
    Ok(GuestImage {
        writes: vec![
            (IMAGE_BASE, code),
            (crash_base, crash_code),
            (flag, vec![0; 8]),
            (tables_base, tables),
        ],
        page_table_root: tables_base,
        guest_page_size: guest_page,
        vcpus: vcpu_entries,
        reserved_end,
        page_tables: (tables_base, tables_end),
        pages_per_vcpu: vec![share / PAGE; vcpus],
        ro_flag: flag,
        vectors: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stress_image_has_the_four_byte_store_and_per_vcpu_shares() {
        let ram = [RamRange {
            gpa: 0,
            size: 64 << 20,
        }];
        let p = Program::Stress {
            start: 4 << 30,
            end: 8 << 30,
            crash_vcpu: Some(1),
        };
        let img = build(&p, &ram, 2, 1 << 30).unwrap();
        let code = &img.writes[0].1;
        assert!(
            code.chunks(4).any(|w| w == [0x00, 0x00, 0x00, 0xf9]),
            "str x0, [x0]"
        );
        // Five stage reports: `movz x1, #n` then `str w16, [x17]`.
        for n in 0u32..5 {
            let movz = (0xd280_0001u32 | (n << 5)).to_le_bytes();
            assert!(code.chunks(4).any(|w| w == movz), "stage {n}");
        }
        assert_eq!(img.vcpus[0].args, [4 << 30, 6 << 30, 4096, img.ro_flag]);
        assert_eq!(img.vcpus[1].args[0], 6 << 30);
        assert_ne!(
            img.vcpus[1].entry, img.vcpus[0].entry,
            "the debug-crash vCPU"
        );
    }

    #[test]
    fn four_kib_stage1_pages_need_their_tables_in_low_ram() {
        let p = Program::Stress {
            start: 4 << 30,
            end: 8 << 30,
            crash_vcpu: None,
        };
        let ram = |size| [RamRange { gpa: 0, size }];
        let img = build(&p, &ram(64 << 20), 2, PAGE).unwrap();
        assert_eq!(img.guest_page_size, PAGE);
        let (from, to) = img.page_tables;
        assert!(to - from > 16 << 20, "one 8-byte entry per 4 KiB of 8 GiB");
        assert!(matches!(
            build(&p, &ram(16 << 20), 2, PAGE),
            Err(ImageError::RamTooSmall { .. })
        ));
        assert!(matches!(
            build(&p, &ram(64 << 20), 2, 64 << 10),
            Err(ImageError::Paging(_))
        ));
    }
}
