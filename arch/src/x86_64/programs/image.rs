//! Lays a built-in program out in low guest memory:
//!
//! ```text
//! IMAGE_BASE          GDT (56 bytes), TSS with I/O bitmap at +0x100 (8 KiB)
//! + 3 pages           code: prologue, then the workload
//! page aligned        data: the text to print / per-vCPU touch tables
//! page aligned        two stack pages per vCPU (kernel, user)
//! page aligned        identity page tables (CR3)
//! reserved_end        free RAM: what `touch` writes
//! ```

use super::workloads::{encode, encode_for};
use crate::image::{hello_text, page_up};
use crate::x86_64::gdt;
use crate::x86_64::layout::{IMAGE_BASE, MMIO_HOLE_END};
use crate::x86_64::paging::{self, PAGE_2M, PAGE_4K};
use crate::{touch_shares, GuestImage, ImageError, Program, RamRange, VcpuEntry};

/// Longest text `hello` prints.
pub const MAX_TEXT: usize = 4096;

/// Builds the image of `program` for `vcpus` vCPUs over `ram`, with identity page
/// tables of `guest_page_size` leaves.
pub fn build(
    program: &Program,
    ram: &[RamRange],
    vcpus: usize,
    guest_page_size: u64,
) -> Result<GuestImage, ImageError> {
    if vcpus == 0 {
        return Err(ImageError::NoVcpus);
    }
    let first = ram.first().ok_or(ImageError::NoRam)?;
    let top = ram.iter().map(RamRange::end).max().unwrap_or(0);
    // Map the MMIO hole too, so programs can reach device addresses, and the stress
    // range, which lies in memslots outside `ram`.
    let stress_end = match program {
        Program::Stress { end, .. } => *end,
        _ => 0,
    };
    let mapped_top = top.max(MMIO_HOLE_END).max(stress_end);

    let gdt_base = IMAGE_BASE;
    let tss_base = IMAGE_BASE + 0x100;
    let code_base = IMAGE_BASE + 3 * PAGE_4K;
    let code = encode(program, code_base).map_err(|e| ImageError::Encode(e.to_string()))?;
    // A debug-crash stress vCPU gets its own code block right after the shared one.
    let crash = match program {
        Program::Stress {
            crash_vcpu: Some(v),
            ..
        } if *v < vcpus => Some(*v),
        _ => None,
    };
    let crash_base = page_up(code_base + code.len() as u64);
    let crash_code = match crash {
        Some(v) => {
            encode_for(program, crash_base, v).map_err(|e| ImageError::Encode(e.to_string()))?
        }
        None => Vec::new(),
    };
    let data_base = page_up(crash_base + crash_code.len() as u64);
    let mut ro_flag = 0;

    let mut writes = Vec::new();
    let mut args = vec![[0u64; 4]; vcpus];
    let mut pages_per_vcpu = vec![0u64; vcpus];
    let data: Vec<u8>;
    let mut touch_tables = None;
    match program {
        Program::Hello { text } => {
            data = hello_text(text, MAX_TEXT)?.to_vec();
            args[0] = [0, data_base, 0, data.len() as u64];
        }
        Program::Touch => {
            // Tables hold at most one pair per RAM range per vCPU.
            let per_vcpu = ram.len() as u64 * 16;
            data = vec![0; (per_vcpu * vcpus as u64) as usize];
            touch_tables = Some(per_vcpu);
        }
        Program::MmioProbe { gpa } | Program::Hammer { gpa, .. } => {
            if ram.iter().any(|r| (r.gpa..r.end()).contains(gpa)) {
                return Err(ImageError::ProbeInRam { gpa: *gpa });
            }
            let mapped = paging::identity_map(0, mapped_top, guest_page_size)
                .map_err(|e| ImageError::Paging(e.to_string()))?
                .mapped;
            if gpa.saturating_add(8) > mapped {
                return Err(ImageError::ProbeUnmapped {
                    gpa: *gpa,
                    top: mapped,
                });
            }
            data = Vec::new();
        }
        Program::TripleFault
        | Program::PortProbe { .. }
        | Program::PciConfigRead { .. }
        | Program::Spin => data = Vec::new(),
        Program::Stress { start, end, .. } => {
            // As upstream: equal shares, each a whole number of pages.
            let share = (end.saturating_sub(*start) / vcpus as u64) & !(PAGE_4K - 1);
            if share == 0 {
                return Err(ImageError::StressRange {
                    start: *start,
                    end: *end,
                    vcpus,
                });
            }
            ro_flag = data_base;
            data = vec![0; 8];
            for (i, a) in args.iter_mut().enumerate() {
                let s = start + share * i as u64;
                *a = [s, s + share, PAGE_4K, ro_flag];
                pages_per_vcpu[i] = share / PAGE_4K;
            }
        }
    }
    let stacks_base = page_up(data_base + data.len() as u64);
    let tables_base = stacks_base + 2 * PAGE_4K * vcpus as u64;
    let tables = paging::identity_map(tables_base, mapped_top, guest_page_size)
        .map_err(|e| ImageError::Paging(e.to_string()))?;
    let tables_end = tables_base + tables.bytes.len() as u64;
    // Free RAM starts on a 2 MiB boundary: the image's block (whose page tables shadow
    // paging write-protects) never shares a huge page with the workload's memory.
    let reserved_end = tables_end.next_multiple_of(PAGE_2M);
    if first.gpa != 0 || reserved_end > first.end() {
        return Err(ImageError::RamTooSmall {
            need: reserved_end,
            limit: first.end(),
        });
    }

    let mut data = data;
    if let Some(per_vcpu) = touch_tables {
        for (i, share) in touch_shares(ram, reserved_end, vcpus).iter().enumerate() {
            let at = (per_vcpu * i as u64) as usize;
            for (j, (s, e)) in share.iter().enumerate() {
                data[at + j * 16..at + j * 16 + 8].copy_from_slice(&s.to_le_bytes());
                data[at + j * 16 + 8..at + j * 16 + 16].copy_from_slice(&e.to_le_bytes());
            }
            args[i] = [data_base + at as u64, share.len() as u64, 0, 0];
            pages_per_vcpu[i] = share.iter().map(|(s, e)| (e - s) / PAGE_4K).sum();
        }
    }

    let gdt_entries = gdt::table(tss_base);
    let first_kernel_stack = stacks_base + PAGE_4K;
    writes.push((gdt_base, gdt::to_bytes(&gdt_entries)));
    writes.push((tss_base, gdt::tss(first_kernel_stack)));
    writes.push((code_base, code));
    if !crash_code.is_empty() {
        writes.push((crash_base, crash_code));
    }
    if !data.is_empty() {
        writes.push((data_base, data));
    }
    writes.push((tables_base, tables.bytes));

    let vcpu_entries = (0..vcpus as u64)
        .map(|i| VcpuEntry {
            entry: if crash == Some(i as usize) {
                crash_base
            } else {
                code_base
            },
            kernel_stack: stacks_base + (2 * i + 1) * PAGE_4K,
            user_stack: stacks_base + (2 * i + 2) * PAGE_4K,
            args: args[i as usize],
        })
        .collect();
    Ok(GuestImage {
        writes,
        page_table_root: tables_base,
        guest_page_size,
        vcpus: vcpu_entries,
        reserved_end,
        page_tables: (tables_base, tables_end),
        pages_per_vcpu,
        ro_flag,
        vectors: None,
    })
}

/// GDT limit for KVM_SET_SREGS, matching what [`build`] writes.
pub const GDT_LIMIT: u16 = (7 * 8 - 1) as u16;
/// TSS location inside the image.
pub const TSS_BASE: u64 = IMAGE_BASE + 0x100;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86_64::layout::ram_ranges;
    use crate::x86_64::paging::PAGE_1G;

    #[test]
    fn shares_cover_free_ram_exactly_once_even_across_the_hole() {
        let ram = ram_ranges(5 * PAGE_1G);
        for vcpus in [1, 2, 3, 7] {
            let shares = touch_shares(&ram, 0x10_0000, vcpus);
            assert_eq!(shares.len(), vcpus);
            let mut all: Vec<(u64, u64)> = shares.concat();
            all.sort();
            let pages: u64 = all.iter().map(|(s, e)| (e - s) / PAGE_4K).sum();
            assert_eq!(pages, (5 * PAGE_1G - 0x10_0000) / PAGE_4K);
            for w in all.windows(2) {
                assert!(w[0].1 <= w[1].0, "overlap {w:?}");
            }
            let sizes: Vec<u64> = shares
                .iter()
                .map(|s| s.iter().map(|(a, b)| b - a).sum())
                .collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= PAGE_4K, "{sizes:?}");
        }
    }

    #[test]
    fn touch_image_passes_each_vcpu_its_table() {
        let ram = ram_ranges(PAGE_1G);
        let img = build(&Program::Touch, &ram, 2, PAGE_2M).unwrap();
        assert_eq!(img.vcpus.len(), 2);
        let total: u64 = img.pages_per_vcpu.iter().sum();
        assert_eq!(total, (PAGE_1G - img.reserved_end) / PAGE_4K);
        let (data_gpa, data) = img
            .writes
            .iter()
            .find(|(g, _)| *g == img.vcpus[1].args[0] - 16)
            .unwrap();
        assert_eq!(*data_gpa + 16, img.vcpus[1].args[0]);
        let start = u64::from_le_bytes(data[16..24].try_into().unwrap());
        let end0 = u64::from_le_bytes(data[8..16].try_into().unwrap());
        assert_eq!(start, end0, "vCPU 1 starts where vCPU 0 ends");
        assert_eq!(img.vcpus[0].args[1], 1);
        assert_ne!(img.vcpus[0].kernel_stack, img.vcpus[1].kernel_stack);
    }

    #[test]
    fn stress_splits_like_upstream_and_maps_the_whole_range() {
        let ram = ram_ranges(64 << 20);
        let p = Program::Stress {
            start: 4 * PAGE_1G,
            end: 8 * PAGE_1G,
            crash_vcpu: Some(2),
        };
        let img = build(&p, &ram, 3, PAGE_2M).unwrap();
        let share = (4 * PAGE_1G / 3) & !(PAGE_4K - 1);
        for (i, v) in img.vcpus.iter().enumerate() {
            let s = 4 * PAGE_1G + share * i as u64;
            assert_eq!(v.args, [s, s + share, PAGE_4K, img.ro_flag]);
        }
        assert_ne!(img.ro_flag, 0);
        assert_ne!(
            img.vcpus[2].entry, img.vcpus[0].entry,
            "the crashing vCPU has its own code"
        );
        assert_eq!(img.vcpus[1].entry, img.vcpus[0].entry);
        let tiny = Program::Stress {
            start: 4 * PAGE_1G,
            end: 4 * PAGE_1G + PAGE_4K,
            crash_vcpu: None,
        };
        assert!(matches!(
            build(&tiny, &ram, 2, PAGE_2M),
            Err(ImageError::StressRange { .. })
        ));
    }

    #[test]
    fn bad_requests_are_errors() {
        let ram = ram_ranges(PAGE_1G);
        assert_eq!(
            build(&Program::Touch, &ram, 0, PAGE_2M).unwrap_err(),
            ImageError::NoVcpus
        );
        assert_eq!(
            build(&Program::Touch, &[], 1, PAGE_2M).unwrap_err(),
            ImageError::NoRam
        );
        let long = Program::Hello {
            text: "x".repeat(MAX_TEXT + 1),
        };
        assert!(matches!(
            build(&long, &ram, 1, PAGE_2M),
            Err(ImageError::TextTooLong { .. })
        ));
        let in_ram = Program::MmioProbe { gpa: 0x10_0000 };
        assert!(matches!(
            build(&in_ram, &ram, 1, PAGE_2M),
            Err(ImageError::ProbeInRam { .. })
        ));
        let far = Program::MmioProbe { gpa: 1 << 40 };
        assert!(matches!(
            build(&far, &ram, 1, PAGE_2M),
            Err(ImageError::ProbeUnmapped { .. })
        ));
        let tiny = [RamRange {
            gpa: 0,
            size: 0x4000,
        }];
        assert!(matches!(
            build(&Program::Touch, &tiny, 1, PAGE_2M),
            Err(ImageError::RamTooSmall { .. })
        ));
    }
}
