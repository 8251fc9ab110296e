//! Initial vCPU register state for entering 64-bit mode directly.
//!
//! KVM validates EFER against the vCPU's CPUID, so the VMM must set CPUID before it
//! applies these special registers. The register constants are plain numbers usable
//! anywhere; the functions build kvm-bindings' x86 structs, which exist only when
//! building for an x86_64 host.

#[cfg(target_arch = "x86_64")]
pub use kvm_state::*;

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_MP: u64 = 1 << 1;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

/// RFLAGS bit 1 is reserved and always set.
pub const RFLAGS_RESERVED: u64 = 1 << 1;
/// RFLAGS with IOPL = 3: the CPL3 workload may use port I/O to report.
pub const RFLAGS_IOPL3: u64 = 3 << 12;

#[cfg(target_arch = "x86_64")]
mod kvm_state {
    use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

    use super::*;
    use crate::x86_64::gdt;
    use crate::VcpuEntry;

    /// Where the descriptor tables live, for [`long_mode_sregs`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Tables {
        pub gdt_base: u64,
        pub gdt_limit: u16,
        pub tss_base: u64,
        pub page_table_root: u64,
    }

    /// A flat segment's hidden state from the same access/flag word the GDT descriptor
    /// is built from, so the two cannot disagree.
    pub(crate) fn segment(selector: u16, flags: u16) -> kvm_segment {
        kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            type_: (flags & 0xf) as u8,
            present: ((flags >> 7) & 1) as u8,
            dpl: ((flags >> 5) & 3) as u8,
            db: ((flags >> 14) & 1) as u8,
            s: ((flags >> 4) & 1) as u8,
            l: ((flags >> 13) & 1) as u8,
            g: ((flags >> 15) & 1) as u8,
            avl: 0,
            unusable: 0,
            padding: 0,
        }
    }

    /// Turns the vCPU's reset-state special registers into flat 64-bit CPL0 state with
    /// paging on, the GDT/TSS of [`gdt::table`] loaded and no IDT (any exception
    /// escalates to a triple fault, which the VMM reports).
    pub fn long_mode_sregs(mut s: kvm_sregs, t: &Tables) -> kvm_sregs {
        let code = segment(gdt::KERNEL_CS, gdt::KERNEL_CODE64);
        let data = segment(gdt::KERNEL_DS, gdt::KERNEL_DATA);
        s.cs = code;
        s.ds = data;
        s.es = data;
        s.fs = data;
        s.gs = data;
        s.ss = data;
        s.tr = kvm_segment {
            base: t.tss_base,
            limit: (gdt::TSS_WITH_IOMAP - 1) as u32,
            selector: gdt::TSS_SEL,
            type_: 0xb, // busy 64-bit TSS, as after LTR
            present: 1,
            dpl: 0,
            db: 0,
            s: 0,
            l: 0,
            g: 0,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        s.gdt.base = t.gdt_base;
        s.gdt.limit = t.gdt_limit;
        s.idt.base = 0;
        s.idt.limit = 0;
        s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
        s.cr3 = t.page_table_root;
        s.cr4 = CR4_PAE;
        s.efer = EFER_LME | EFER_LMA;
        s
    }

    /// General registers for a vCPU entry: the prologue runs on the kernel stack, finds the
    /// user stack in r15 and passes the four program arguments through untouched.
    pub fn entry_regs(e: &VcpuEntry) -> kvm_regs {
        kvm_regs {
            rip: e.entry,
            rsp: e.kernel_stack,
            r15: e.user_stack,
            rdi: e.args[0],
            rsi: e.args[1],
            rdx: e.args[2],
            rcx: e.args[3],
            rflags: RFLAGS_RESERVED,
            ..Default::default()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sregs_are_64bit_flat_cpl0_with_paging() {
            let t = Tables {
                gdt_base: 0x1000,
                gdt_limit: 55,
                tss_base: 0x1100,
                page_table_root: 0x9000,
            };
            let s = long_mode_sregs(kvm_sregs::default(), &t);
            assert_eq!((s.cs.l, s.cs.db, s.cs.dpl, s.cs.present), (1, 0, 0, 1));
            assert_eq!(s.cs.type_, 0xb);
            assert_eq!((s.ss.dpl, s.ss.type_, s.ss.db), (0, 0x3, 1));
            assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
            assert_eq!(s.cr4 & CR4_PAE, CR4_PAE);
            assert_eq!(s.efer, EFER_LME | EFER_LMA);
            assert_eq!((s.cr3, s.gdt.base, s.tr.base), (0x9000, 0x1000, 0x1100));
            assert_eq!(s.idt.limit, 0);
            // The hidden state must match the in-memory descriptors.
            let table = gdt::table(0x1100);
            let desc = table[usize::from(gdt::KERNEL_CS >> 3)];
            assert_eq!(((desc >> 40) & 0xf) as u8, s.cs.type_);
        }

        #[test]
        fn entry_regs_carry_stacks_and_arguments() {
            let e = VcpuEntry {
                entry: 0x2000,
                kernel_stack: 0x5000,
                user_stack: 0x6000,
                args: [1, 2, 3, 4],
            };
            let r = entry_regs(&e);
            assert_eq!((r.rip, r.rsp, r.r15), (0x2000, 0x5000, 0x6000));
            assert_eq!((r.rdi, r.rsi, r.rdx, r.rcx), (1, 2, 3, 4));
            assert_eq!(r.rflags, 2);
        }
    }
}
