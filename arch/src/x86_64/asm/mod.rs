//! A tiny x86_64 assembler for granule's built-in guest programs.
//!
//! Only the instructions the programs need, each a small function whose bytes are pinned
//! by unit tests (the expected bytes came from `llvm-mc -show-encoding`, see the tests).
//! Hand-encoding keeps the build free of an assembler toolchain and keeps the guest code
//! reviewable next to the VMM that runs it.

mod reg;
#[cfg(test)]
mod tests;

pub use reg::Reg;

/// A jump target, bound once with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Conditions for [`Asm::jcc`] (the low nibble of the `0f 8x` opcode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Below (unsigned <), CF=1.
    B = 0x2,
    /// Above or equal (unsigned >=), CF=0.
    Ae = 0x3,
    /// Zero / equal.
    Z = 0x4,
    /// Not zero / not equal.
    Nz = 0x5,
}

/// Accumulates machine code for a program loaded at a fixed guest address.
#[derive(Debug)]
pub struct Asm {
    base: u64,
    code: Vec<u8>,
    labels: Vec<Option<usize>>,
    /// (offset of the rel32 field, label)
    fixups: Vec<(usize, Label)>,
}

/// A label was used but never bound: a bug in a program builder, reported instead of
/// emitting a jump into nowhere.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("label {0} used but never bound")]
pub struct UnboundLabel(pub usize);

impl Asm {
    /// Starts a program that will be loaded at guest address `base`.
    pub fn new(base: u64) -> Self {
        Self {
            base,
            code: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }

    /// Guest address of the next instruction.
    pub fn here(&self) -> u64 {
        self.base + self.code.len() as u64
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.code.len());
    }

    /// Resolves every jump and returns the code.
    pub fn finish(mut self) -> Result<Vec<u8>, UnboundLabel> {
        for &(at, label) in &self.fixups {
            let target = self.labels[label.0].ok_or(UnboundLabel(label.0))?;
            let rel = target as i64 - (at as i64 + 4);
            let rel = rel as i32; // programs are far smaller than 2 GiB
            self.code[at..at + 4].copy_from_slice(&rel.to_le_bytes());
        }
        Ok(self.code)
    }

    fn emit(&mut self, bytes: &[u8]) -> &mut Self {
        self.code.extend_from_slice(bytes);
        self
    }

    fn rel32(&mut self, label: Label) {
        self.fixups.push((self.code.len(), label));
        self.code.extend_from_slice(&[0; 4]);
    }

    /// REX prefix with W set and the R/B extension bits of `reg` (ModRM.reg) and `rm`.
    fn rex_w(reg: Reg, rm: Reg) -> u8 {
        0x48 | (reg.ext() << 2) | rm.ext()
    }

    /// ModRM + SIB + displacement for a `[base + disp]` memory operand.
    fn mem(&mut self, reg: Reg, base: Reg, disp: i32) {
        let needs_sib = base.low() == 4; // rsp, r12
        let force_disp = base.low() == 5; // rbp, r13 have no disp-less form
        let (md, disp_bytes): (u8, Vec<u8>) = if disp == 0 && !force_disp {
            (0b00, vec![])
        } else if let Ok(d8) = i8::try_from(disp) {
            (0b01, vec![d8 as u8])
        } else {
            (0b10, disp.to_le_bytes().to_vec())
        };
        let rm = if needs_sib { 4 } else { base.low() };
        self.code.push((md << 6) | (reg.low() << 3) | rm);
        if needs_sib {
            self.code.push(0x24);
        }
        self.code.extend_from_slice(&disp_bytes);
    }

    /// `mov reg, imm64` (movabs).
    pub fn mov_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.emit(&[0x48 | dst.ext(), 0xb8 + dst.low()]);
        self.emit(&imm.to_le_bytes())
    }

    /// `mov reg32, imm32`; zero-extends into the full register.
    pub fn mov_imm32(&mut self, dst: Reg, imm: u32) -> &mut Self {
        if dst.ext() != 0 {
            self.emit(&[0x41]);
        }
        self.emit(&[0xb8 + dst.low()]);
        self.emit(&imm.to_le_bytes())
    }

    /// A 64-bit register-register instruction `opcode /r` with ModRM.rm = `rm`.
    fn op_rr(&mut self, opcode: u8, rm: Reg, reg: Reg) -> &mut Self {
        let b = [
            Self::rex_w(reg, rm),
            opcode,
            0xc0 | (reg.low() << 3) | rm.low(),
        ];
        self.emit(&b)
    }

    /// `mov dst, src` (64-bit).
    pub fn mov_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.op_rr(0x89, dst, src)
    }

    /// `mov qword ptr [base + disp], src`.
    pub fn store(&mut self, base: Reg, disp: i32, src: Reg) -> &mut Self {
        self.emit(&[Self::rex_w(src, base), 0x89]);
        self.mem(src, base, disp);
        self
    }

    /// `mov dst, qword ptr [base + disp]`.
    pub fn load(&mut self, dst: Reg, base: Reg, disp: i32) -> &mut Self {
        self.emit(&[Self::rex_w(dst, base), 0x8b]);
        self.mem(dst, base, disp);
        self
    }

    /// `mov al, byte ptr [base]`.
    pub fn load_byte_al(&mut self, base: Reg) -> &mut Self {
        if base.ext() != 0 {
            self.emit(&[0x41]);
        }
        self.emit(&[0x8a]);
        self.mem(Reg::Rax, base, 0);
        self
    }

    /// `add reg, imm32` (sign-extended), in the shortest form.
    pub fn add_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        let rex = 0x48 | dst.ext();
        if let Ok(i8v) = i8::try_from(imm) {
            self.emit(&[rex, 0x83, 0xc0 | dst.low(), i8v as u8])
        } else if dst == Reg::Rax {
            self.emit(&[rex, 0x05]);
            self.emit(&imm.to_le_bytes())
        } else {
            self.emit(&[rex, 0x81, 0xc0 | dst.low()]);
            self.emit(&imm.to_le_bytes())
        }
    }

    /// `add dst, src` (64-bit).
    pub fn add_rr(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.op_rr(0x01, dst, src)
    }

    /// `cmp a, b` (64-bit): flags from `a - b`.
    pub fn cmp_rr(&mut self, a: Reg, b: Reg) -> &mut Self {
        self.op_rr(0x39, a, b)
    }

    /// `test r, r` (64-bit).
    pub fn test_rr(&mut self, a: Reg, b: Reg) -> &mut Self {
        self.op_rr(0x85, a, b)
    }

    /// `test r32, imm32`.
    pub fn test_imm32(&mut self, r: Reg, imm: u32) -> &mut Self {
        if r.ext() != 0 {
            self.emit(&[0x41]);
        }
        self.emit(&[0xf7, 0xc0 | r.low()]);
        self.emit(&imm.to_le_bytes())
    }

    /// `inc r` (64-bit).
    pub fn inc(&mut self, r: Reg) -> &mut Self {
        self.emit(&[0x48 | r.ext(), 0xff, 0xc0 | r.low()])
    }

    /// `dec r` (64-bit).
    pub fn dec(&mut self, r: Reg) -> &mut Self {
        self.emit(&[0x48 | r.ext(), 0xff, 0xc8 | r.low()])
    }

    /// `xor r32, r32`: zeroes the full register.
    pub fn zero(&mut self, r: Reg) -> &mut Self {
        let rex = 0x40 | (r.ext() << 2) | r.ext();
        if rex != 0x40 {
            self.emit(&[rex]);
        }
        self.emit(&[0x31, 0xc0 | (r.low() << 3) | r.low()])
    }

    /// `push r`.
    pub fn push(&mut self, r: Reg) -> &mut Self {
        if r.ext() != 0 {
            self.emit(&[0x41]);
        }
        self.emit(&[0x50 + r.low()])
    }

    /// `push imm32` (sign-extended to 64 bits), short form when it fits in a byte.
    pub fn push_imm(&mut self, imm: i32) -> &mut Self {
        if let Ok(i8v) = i8::try_from(imm) {
            self.emit(&[0x6a, i8v as u8])
        } else {
            self.emit(&[0x68]);
            self.emit(&imm.to_le_bytes())
        }
    }

    /// `iretq`.
    pub fn iretq(&mut self) -> &mut Self {
        self.emit(&[0x48, 0xcf])
    }

    /// `out dx, al`.
    pub fn out_dx_al(&mut self) -> &mut Self {
        self.emit(&[0xee])
    }

    /// `out dx, eax`.
    pub fn out_dx_eax(&mut self) -> &mut Self {
        self.emit(&[0xef])
    }

    /// `in eax, dx`.
    pub fn in_eax_dx(&mut self) -> &mut Self {
        self.emit(&[0xed])
    }

    /// `ud2`: raises #UD.
    pub fn ud2(&mut self) -> &mut Self {
        self.emit(&[0x0f, 0x0b])
    }

    /// `hlt` (privileged).
    pub fn hlt(&mut self) -> &mut Self {
        self.emit(&[0xf4])
    }

    /// `jmp rel32` to `label`.
    pub fn jmp(&mut self, label: Label) -> &mut Self {
        self.emit(&[0xe9]);
        self.rel32(label);
        self
    }

    /// `jcc rel32` to `label`.
    pub fn jcc(&mut self, cond: Cond, label: Label) -> &mut Self {
        self.emit(&[0x0f, 0x80 | cond as u8]);
        self.rel32(label);
        self
    }
}
