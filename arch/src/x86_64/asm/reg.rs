/// The 64-bit general-purpose registers, numbered as the ISA encodes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Rax = 0,
    Rcx = 1,
    Rdx = 2,
    Rbx = 3,
    Rsp = 4,
    Rbp = 5,
    Rsi = 6,
    Rdi = 7,
    R8 = 8,
    R9 = 9,
    R10 = 10,
    R11 = 11,
    R12 = 12,
    R13 = 13,
    R14 = 14,
    R15 = 15,
}

impl Reg {
    /// The low three bits that go into ModRM / the opcode.
    pub(crate) fn low(self) -> u8 {
        self as u8 & 7
    }

    /// The REX extension bit (1 for r8..r15).
    pub(crate) fn ext(self) -> u8 {
        (self as u8 >> 3) & 1
    }
}
