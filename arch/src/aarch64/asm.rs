//! A tiny AArch64 assembler for granule's built-in guest programs: fixed 32-bit
//! encodings, each pinned by a unit test against `llvm-mc -triple=aarch64
//! -show-encoding` (LLVM 14); branch offsets were checked with `llvm-mc --disassemble`.

use crate::x86_64::asm::UnboundLabel;

/// A general-purpose register x0..x30 (31 encodes xzr where an instruction allows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X(pub u32);

pub const XZR: X = X(31);

/// A branch target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Condition codes for [`A64::b_cond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq = 0,
    Ne = 1,
    /// Unsigned higher or same (carry set).
    Hs = 2,
    /// Unsigned lower.
    Lo = 3,
}

#[derive(Debug, Clone, Copy)]
enum Fixup {
    /// imm19 at bits 5..23 (b.cond, cbz).
    B19,
    /// imm26 at bits 0..25 (b).
    B26,
}

#[derive(Debug)]
pub struct A64 {
    base: u64,
    words: Vec<u32>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label, Fixup)>,
}

impl A64 {
    pub fn new(base: u64) -> Self {
        Self {
            base,
            words: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }

    pub fn here(&self) -> u64 {
        self.base + 4 * self.words.len() as u64
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.words.len());
    }

    fn emit(&mut self, w: u32) -> &mut Self {
        self.words.push(w);
        self
    }

    pub fn finish(mut self) -> Result<Vec<u8>, UnboundLabel> {
        for &(at, label, kind) in &self.fixups {
            let target = self.labels[label.0].ok_or(UnboundLabel(label.0))?;
            let delta = target as i64 - at as i64; // in instructions
            self.words[at] |= match kind {
                Fixup::B19 => ((delta as u32) & 0x7ffff) << 5,
                Fixup::B26 => (delta as u32) & 0x3ff_ffff,
            };
        }
        Ok(self.words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    /// `movz xd, #imm16, lsl #(16*hw)`.
    pub fn movz(&mut self, d: X, imm16: u16, hw: u32) -> &mut Self {
        self.emit(0xd280_0000 | (hw << 21) | (u32::from(imm16) << 5) | d.0)
    }

    /// `movk xd, #imm16, lsl #(16*hw)`.
    pub fn movk(&mut self, d: X, imm16: u16, hw: u32) -> &mut Self {
        self.emit(0xf280_0000 | (hw << 21) | (u32::from(imm16) << 5) | d.0)
    }

    /// Loads any 64-bit constant with movz plus the movk needed.
    pub fn mov_imm(&mut self, d: X, v: u64) -> &mut Self {
        let parts = [0, 1, 2, 3].map(|hw| (hw, (v >> (16 * hw)) as u16));
        let first = parts.iter().find(|p| p.1 != 0).copied().unwrap_or((0, 0));
        self.movz(d, first.1, first.0);
        for &(hw, part) in &parts {
            if part != 0 && hw != first.0 {
                self.movk(d, part, hw);
            }
        }
        self
    }

    /// `mov xd, xm` (orr xd, xzr, xm).
    pub fn mov(&mut self, d: X, m: X) -> &mut Self {
        self.emit(0xaa00_03e0 | (m.0 << 16) | d.0)
    }

    /// `add xd, xn, xm`.
    pub fn add(&mut self, d: X, n: X, m: X) -> &mut Self {
        self.emit(0x8b00_0000 | (m.0 << 16) | (n.0 << 5) | d.0)
    }

    /// `cmp xn, xm` (subs xzr, xn, xm).
    pub fn cmp(&mut self, n: X, m: X) -> &mut Self {
        self.emit(0xeb00_001f | (m.0 << 16) | (n.0 << 5))
    }

    /// `str xt, [xn]`.
    pub fn str(&mut self, t: X, n: X) -> &mut Self {
        self.emit(0xf900_0000 | (n.0 << 5) | t.0)
    }

    /// `ldr xt, [xn]`.
    pub fn ldr(&mut self, t: X, n: X) -> &mut Self {
        self.emit(0xf940_0000 | (n.0 << 5) | t.0)
    }

    /// `str wt, [xn]` (32-bit store).
    pub fn str_w(&mut self, t: X, n: X) -> &mut Self {
        self.emit(0xb900_0000 | (n.0 << 5) | t.0)
    }

    /// `ldrb wt, [xn]`.
    pub fn ldrb(&mut self, t: X, n: X) -> &mut Self {
        self.emit(0x3940_0000 | (n.0 << 5) | t.0)
    }

    /// `strb wt, [xn]`.
    pub fn strb(&mut self, t: X, n: X) -> &mut Self {
        self.emit(0x3900_0000 | (n.0 << 5) | t.0)
    }

    /// `ldr xt, [xn, #offset]`; `offset` is a multiple of 8 below 32 KiB.
    pub fn ldr_at(&mut self, t: X, n: X, offset: u32) -> &mut Self {
        debug_assert!(offset.is_multiple_of(8) && offset < 0x8000);
        self.emit(0xf940_0000 | ((offset / 8) << 10) | (n.0 << 5) | t.0)
    }

    /// `add xd, xn, #imm12` (with `lsl #12` when `shift12`).
    pub fn add_imm(&mut self, d: X, n: X, imm12: u32, shift12: bool) -> &mut Self {
        debug_assert!(imm12 < 0x1000);
        self.emit(0x9100_0000 | (u32::from(shift12) << 22) | (imm12 << 10) | (n.0 << 5) | d.0)
    }

    /// `sub xd, xn, #imm12`.
    pub fn sub_imm(&mut self, d: X, n: X, imm12: u32) -> &mut Self {
        debug_assert!(imm12 < 0x1000);
        self.emit(0xd100_0000 | (imm12 << 10) | (n.0 << 5) | d.0)
    }

    /// `mrs xt, <sysreg>` for a register given as (op0, op1, CRn, CRm, op2).
    pub fn mrs(&mut self, t: X, sysreg: (u32, u32, u32, u32, u32)) -> &mut Self {
        let (op0, op1, crn, crm, op2) = sysreg;
        self.emit(
            0xd520_0000 | (op0 << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5) | t.0,
        )
    }

    /// `udf #0`: an undefined instruction.
    pub fn udf(&mut self) -> &mut Self {
        self.emit(0)
    }

    pub fn b(&mut self, l: Label) -> &mut Self {
        self.fixups.push((self.words.len(), l, Fixup::B26));
        self.emit(0x1400_0000)
    }

    pub fn b_cond(&mut self, c: Cond, l: Label) -> &mut Self {
        self.fixups.push((self.words.len(), l, Fixup::B19));
        self.emit(0x5400_0000 | c as u32)
    }

    pub fn cbz(&mut self, t: X, l: Label) -> &mut Self {
        self.fixups.push((self.words.len(), l, Fixup::B19));
        self.emit(0xb400_0000 | t.0)
    }

    pub fn cbnz(&mut self, t: X, l: Label) -> &mut Self {
        self.fixups.push((self.words.len(), l, Fixup::B19));
        self.emit(0xb500_0000 | t.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut A64) -> &mut A64) -> Vec<u8> {
        let mut a = A64::new(0);
        f(&mut a);
        a.finish().unwrap()
    }

    #[test]
    fn encodings_match_llvm_mc() {
        let cases: [(Vec<u8>, [u8; 4], &str); 15] = [
            (
                enc(|a| a.movz(X(0), 0x1234, 1)),
                [0x80, 0x46, 0xa2, 0xd2],
                "movz x0, #0x1234, lsl #16",
            ),
            (
                enc(|a| a.movk(X(0), 0xbeef, 3)),
                [0xe0, 0xdd, 0xf7, 0xf2],
                "movk x0, #0xbeef, lsl #48",
            ),
            (
                enc(|a| a.movz(X(17), 0xc000, 1)),
                [0x11, 0x00, 0xb8, 0xd2],
                "movz x17, #0xc000, lsl #16",
            ),
            (
                enc(|a| a.mov(X(19), X(0))),
                [0xf3, 0x03, 0x00, 0xaa],
                "mov x19, x0",
            ),
            (
                enc(|a| a.mov(X(0), X(19))),
                [0xe0, 0x03, 0x13, 0xaa],
                "mov x0, x19",
            ),
            (
                enc(|a| a.add(X(0), X(0), X(21))),
                [0x00, 0x00, 0x15, 0x8b],
                "add x0, x0, x21",
            ),
            (
                enc(|a| a.cmp(X(0), X(20))),
                [0x1f, 0x00, 0x14, 0xeb],
                "cmp x0, x20",
            ),
            (
                enc(|a| a.str(X(0), X(0))),
                [0x00, 0x00, 0x00, 0xf9],
                "str x0, [x0]",
            ),
            (
                enc(|a| a.ldr(X(1), X(0))),
                [0x01, 0x00, 0x40, 0xf9],
                "ldr x1, [x0]",
            ),
            (
                enc(|a| a.ldr(X(1), X(22))),
                [0xc1, 0x02, 0x40, 0xf9],
                "ldr x1, [x22]",
            ),
            (
                enc(|a| a.str_w(X(16), X(17))),
                [0x30, 0x02, 0x00, 0xb9],
                "str w16, [x17]",
            ),
            (enc(|a| a.udf()), [0, 0, 0, 0], "udf #0"),
            (
                enc(|a| a.movz(X(1), 3, 0)),
                [0x61, 0x00, 0x80, 0xd2],
                "mov x1, #3",
            ),
            (
                enc(|a| a.mov(X(1), XZR)),
                [0xe1, 0x03, 0x1f, 0xaa],
                "mov x1, xzr",
            ),
            (
                enc(|a| a.movz(X(16), 4, 0)),
                [0x90, 0x00, 0x80, 0xd2],
                "mov x16, #4",
            ),
        ];
        for (got, want, insn) in cases {
            assert_eq!(got, want, "{insn}");
        }
    }

    #[test]
    fn loads_stores_immediates_and_system_reads_match_llvm_mc() {
        let cases: [(Vec<u8>, [u8; 4], &str); 10] = [
            (
                enc(|a| a.ldrb(X(2), X(0))),
                [0x02, 0x00, 0x40, 0x39],
                "ldrb w2, [x0]",
            ),
            (
                enc(|a| a.strb(X(2), X(18))),
                [0x42, 0x02, 0x00, 0x39],
                "strb w2, [x18]",
            ),
            (
                enc(|a| a.add_imm(X(0), X(0), 1, false)),
                [0x00, 0x04, 0x00, 0x91],
                "add x0, x0, #1",
            ),
            (
                enc(|a| a.sub_imm(X(1), X(1), 1)),
                [0x21, 0x04, 0x00, 0xd1],
                "sub x1, x1, #1",
            ),
            (
                enc(|a| a.add_imm(X(9), X(9), 1, true)),
                [0x29, 0x05, 0x40, 0x91],
                "add x9, x9, #1, lsl #12",
            ),
            (
                enc(|a| a.add_imm(X(19), X(19), 16, false)),
                [0x73, 0x42, 0x00, 0x91],
                "add x19, x19, #16",
            ),
            (
                enc(|a| a.ldr_at(X(10), X(19), 8)),
                [0x6a, 0x06, 0x40, 0xf9],
                "ldr x10, [x19, #8]",
            ),
            (
                enc(|a| a.mrs(X(1), (3, 0, 5, 2, 0))),
                [0x01, 0x52, 0x38, 0xd5],
                "mrs x1, esr_el1",
            ),
            (
                enc(|a| a.mrs(X(2), (3, 0, 4, 0, 1))),
                [0x22, 0x40, 0x38, 0xd5],
                "mrs x2, elr_el1",
            ),
            (
                enc(|a| a.mrs(X(3), (3, 0, 6, 0, 0))),
                [0x03, 0x60, 0x38, 0xd5],
                "mrs x3, far_el1",
            ),
        ];
        for (got, want, insn) in cases {
            assert_eq!(got, want, "{insn}");
        }
    }

    #[test]
    fn constants_take_as_few_instructions_as_needed() {
        assert_eq!(enc(|a| a.mov_imm(X(0), 0)).len(), 4);
        assert_eq!(
            enc(|a| a.mov_imm(X(17), 0xc000_0000)),
            [0x11, 0x00, 0xb8, 0xd2]
        );
        assert_eq!(enc(|a| a.mov_imm(X(0), 0x1_0000_0001)).len(), 8);
        assert_eq!(enc(|a| a.mov_imm(X(0), u64::MAX)).len(), 16);
    }

    #[test]
    fn branches_resolve() {
        // b.hs +8 ; b.eq +8 ; b.ne -8 ; b -16 ; cbz x1, +12: as llvm-mc's fixups give.
        let mut a = A64::new(0);
        let l: Vec<Label> = (0..8).map(|_| a.label()).collect();
        a.bind(l[0]); // word 0
        a.b_cond(Cond::Hs, l[2]); // 0 -> 2
        a.b_cond(Cond::Eq, l[3]); // 1 -> 3
        a.bind(l[2]);
        a.b_cond(Cond::Ne, l[0]); // 2 -> 0
        a.bind(l[3]);
        a.b(l[0]).cbz(X(1), l[4]).udf().udf(); // 3 -> 0 ; 4 -> 7
        a.bind(l[4]);
        a.cbnz(X(12), l[5]).udf(); // 7 -> 9
        a.bind(l[5]);
        let w: Vec<u32> = a
            .finish()
            .unwrap()
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(w[0], 0x5400_0042); // b.hs .+8
        assert_eq!(w[1], 0x5400_0040); // b.eq .+8
        assert_eq!(w[2], 0x54ff_ffc1); // b.ne .-8
        assert_eq!(w[3], 0x17ff_fffd); // b .-12
        assert_eq!(w[4], 0xb400_0061); // cbz x1, .+12
        assert_eq!(w[7], 0xb500_004c); // cbnz x12, .+8
    }
}
