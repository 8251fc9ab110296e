//! Register state at the kernel's 64-bit entry (boot protocol "64-bit boot protocol"):
//! long mode with paging on the identity map, flat __BOOT_CS/__BOOT_DS, interrupts off,
//! RSI pointing at the zero page.

use kvm_bindings::{kvm_regs, kvm_sregs};

use super::layout::{BOOT_STACK, PAGE_TABLES_ADDR, ZERO_PAGE_ADDR};
use super::tables::{gdt_bytes, BOOT_CS, BOOT_DS};
use crate::x86_64::gdt::{KERNEL_CODE64, KERNEL_DATA};
use crate::x86_64::regs::{
    segment, CR0_ET, CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME, RFLAGS_RESERVED,
};

/// Special registers for the boot CPU, from its reset state `s`.
pub fn boot_sregs(mut s: kvm_sregs) -> kvm_sregs {
    let (gdt_base, _, gdt_limit) = gdt_bytes();
    // The same access words as the boot GDT's descriptors (tables::gdt).
    let data = segment(BOOT_DS, KERNEL_DATA);
    s.cs = segment(BOOT_CS, KERNEL_CODE64);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.gdt.base = gdt_base;
    s.gdt.limit = gdt_limit;
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = CR0_PE | CR0_ET | CR0_PG;
    s.cr3 = PAGE_TABLES_ADDR;
    s.cr4 = CR4_PAE;
    s.efer = EFER_LME | EFER_LMA;
    s
}

/// General registers for the boot CPU entering at `entry`.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE_ADDR,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_state_follows_the_64bit_boot_protocol() {
        let s = boot_sregs(kvm_sregs::default());
        assert_eq!((s.cs.selector, s.cs.l, s.cs.db), (0x10, 1, 0));
        assert_eq!((s.ds.selector, s.ss.selector), (0x18, 0x18));
        assert_eq!(s.efer & EFER_LMA, EFER_LMA);
        assert_eq!(s.cr3, PAGE_TABLES_ADDR);
        let r = boot_regs(0x100_0200);
        assert_eq!((r.rip, r.rsi), (0x100_0200, ZERO_PAGE_ADDR));
        assert_eq!(r.rflags & (1 << 9), 0, "interrupts off");
    }
}
