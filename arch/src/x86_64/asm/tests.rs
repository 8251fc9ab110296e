//! Every expected byte string below was produced by
//! `llvm-mc -triple=x86_64 -x86-asm-syntax=intel -show-encoding` (LLVM 14, Debian 12)
//! for the instruction in the comment, and the jump encodings were checked by
//! disassembling the output with `llvm-mc --disassemble`.

use super::*;

/// The bytes one builder call emits.
fn enc(f: impl FnOnce(&mut Asm) -> &mut Asm) -> Vec<u8> {
    let mut a = Asm::new(0x1000);
    f(&mut a);
    a.finish().expect("no labels")
}

/// Each case: (what the encoder emits, what llvm-mc emits, the instruction).
fn check(cases: &[(Vec<u8>, &[u8], &str)]) {
    for (got, want, insn) in cases {
        assert_eq!(got.as_slice(), *want, "{insn}");
    }
}

#[test]
fn moves() {
    check(&[
        (
            enc(|a| a.mov_imm64(Reg::Rax, 0x1122_3344_5566_7788)),
            &[0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
            "movabs rax, 0x1122334455667788",
        ),
        (
            enc(|a| a.mov_imm32(Reg::Rax, 0x1122_3344)),
            &[0xb8, 0x44, 0x33, 0x22, 0x11],
            "mov eax, 0x11223344",
        ),
        (
            enc(|a| a.mov_imm32(Reg::Rbx, 0x1122_3344)),
            &[0xbb, 0x44, 0x33, 0x22, 0x11],
            "mov ebx, 0x11223344",
        ),
        (
            enc(|a| a.mov_imm32(Reg::Rdx, 0x510)),
            &[0xba, 0x10, 0x05, 0x00, 0x00],
            "mov edx, 0x510",
        ),
        (
            enc(|a| a.mov_rr(Reg::Rax, Reg::Rdi)),
            &[0x48, 0x89, 0xf8],
            "mov rax, rdi",
        ),
        (
            enc(|a| a.mov_rr(Reg::Rbx, Reg::Rax)),
            &[0x48, 0x89, 0xc3],
            "mov rbx, rax",
        ),
        (
            enc(|a| a.mov_rr(Reg::Rbx, Reg::R8)),
            &[0x4c, 0x89, 0xc3],
            "mov rbx, r8",
        ),
    ]);
}

#[test]
fn memory_operands() {
    check(&[
        // The mmu_stress store: exactly 3 bytes.
        (
            enc(|a| a.store(Reg::Rax, 0, Reg::Rax)),
            &[0x48, 0x89, 0x00],
            "mov qword ptr [rax], rax",
        ),
        (
            enc(|a| a.store(Reg::Rax, 0, Reg::Rbx)),
            &[0x48, 0x89, 0x18],
            "mov qword ptr [rax], rbx",
        ),
        (
            enc(|a| a.load(Reg::Rbx, Reg::Rax, 0)),
            &[0x48, 0x8b, 0x18],
            "mov rbx, qword ptr [rax]",
        ),
        (
            enc(|a| a.load(Reg::Rax, Reg::Rdi, 0)),
            &[0x48, 0x8b, 0x07],
            "mov rax, qword ptr [rdi]",
        ),
        (
            enc(|a| a.load(Reg::Rbx, Reg::Rdi, 8)),
            &[0x48, 0x8b, 0x5f, 0x08],
            "mov rbx, qword ptr [rdi + 8]",
        ),
        (
            enc(|a| a.load_byte_al(Reg::Rsi)),
            &[0x8a, 0x06],
            "mov al, byte ptr [rsi]",
        ),
        (
            enc(|a| a.store(Reg::Rsp, 0, Reg::Rax)),
            &[0x48, 0x89, 0x04, 0x24],
            "mov qword ptr [rsp], rax",
        ),
        (
            enc(|a| a.store(Reg::Rbp, 0, Reg::Rax)),
            &[0x48, 0x89, 0x45, 0x00],
            "mov qword ptr [rbp], rax",
        ),
        (
            enc(|a| a.store(Reg::R12, 0x1000, Reg::Rax)),
            &[0x49, 0x89, 0x84, 0x24, 0x00, 0x10, 0x00, 0x00],
            "mov qword ptr [r12 + 0x1000], rax",
        ),
    ]);
}

#[test]
fn arithmetic() {
    check(&[
        (
            enc(|a| a.add_imm(Reg::Rdi, 16)),
            &[0x48, 0x83, 0xc7, 0x10],
            "add rdi, 16",
        ),
        (
            enc(|a| a.add_imm(Reg::Rax, 0x1000)),
            &[0x48, 0x05, 0x00, 0x10, 0x00, 0x00],
            "add rax, 0x1000",
        ),
        (
            enc(|a| a.add_imm(Reg::Rcx, 0x1000)),
            &[0x48, 0x81, 0xc1, 0x00, 0x10, 0x00, 0x00],
            "add rcx, 0x1000",
        ),
        (
            enc(|a| a.add_rr(Reg::Rax, Reg::Rdx)),
            &[0x48, 0x01, 0xd0],
            "add rax, rdx",
        ),
        (
            enc(|a| a.cmp_rr(Reg::Rax, Reg::Rbx)),
            &[0x48, 0x39, 0xd8],
            "cmp rax, rbx",
        ),
        (
            enc(|a| a.test_rr(Reg::Rcx, Reg::Rcx)),
            &[0x48, 0x85, 0xc9],
            "test rcx, rcx",
        ),
        (
            enc(|a| a.test_rr(Reg::Rsi, Reg::Rsi)),
            &[0x48, 0x85, 0xf6],
            "test rsi, rsi",
        ),
        (
            enc(|a| a.test_imm32(Reg::R8, 0x3fff)),
            &[0x41, 0xf7, 0xc0, 0xff, 0x3f, 0x00, 0x00],
            "test r8d, 0x3fff",
        ),
        (enc(|a| a.inc(Reg::Rsi)), &[0x48, 0xff, 0xc6], "inc rsi"),
        (enc(|a| a.inc(Reg::R8)), &[0x49, 0xff, 0xc0], "inc r8"),
        (enc(|a| a.dec(Reg::Rcx)), &[0x48, 0xff, 0xc9], "dec rcx"),
        (enc(|a| a.dec(Reg::Rsi)), &[0x48, 0xff, 0xce], "dec rsi"),
        (enc(|a| a.zero(Reg::Rbx)), &[0x31, 0xdb], "xor ebx, ebx"),
        (
            enc(|a| a.zero(Reg::R8)),
            &[0x45, 0x31, 0xc0],
            "xor r8d, r8d",
        ),
    ]);
}

#[test]
fn stack_io_and_system() {
    check(&[
        (enc(|a| a.push_imm(0x1b)), &[0x6a, 0x1b], "push 0x1b"),
        (enc(|a| a.push(Reg::R15)), &[0x41, 0x57], "push r15"),
        (
            enc(|a| a.push_imm(0x3002)),
            &[0x68, 0x02, 0x30, 0x00, 0x00],
            "push 0x3002",
        ),
        (enc(|a| a.push(Reg::Rax)), &[0x50], "push rax"),
        (enc(|a| a.iretq()), &[0x48, 0xcf], "iretq"),
        (
            enc(|a| a.out_dx_al().out_dx_eax().in_eax_dx().ud2().hlt()),
            &[0xee, 0xef, 0xed, 0x0f, 0x0b, 0xf4],
            "out dx, al; out dx, eax; in eax, dx; ud2; hlt",
        ),
    ]);
}

#[test]
fn jumps_resolve_backwards_and_forwards() {
    let mut a = Asm::new(0x1000);
    let top = a.label();
    let out = a.label();
    a.bind(top);
    a.jcc(Cond::Z, out); // 0f 84 rel32: to offset 11 from end-of-insn 6 => 5
    a.jmp(top); // e9 rel32: to 0 from 11 => -11
    a.bind(out);
    a.jcc(Cond::Ae, top).jcc(Cond::B, top).jcc(Cond::Nz, top);
    let code = a.finish().unwrap();
    assert_eq!(&code[0..6], &[0x0f, 0x84, 5, 0, 0, 0]);
    assert_eq!(&code[6..11], &[0xe9, 0xf5, 0xff, 0xff, 0xff]);
    // jae/jb/jne back to 0 from 17, 23, 29
    assert_eq!(&code[11..17], &[0x0f, 0x83, 0xef, 0xff, 0xff, 0xff]);
    assert_eq!(&code[17..23], &[0x0f, 0x82, 0xe9, 0xff, 0xff, 0xff]);
    assert_eq!(&code[23..29], &[0x0f, 0x85, 0xe3, 0xff, 0xff, 0xff]);
}

#[test]
fn unbound_label_is_an_error_not_a_wild_jump() {
    let mut a = Asm::new(0);
    let l = a.label();
    a.jmp(l);
    assert_eq!(a.finish(), Err(UnboundLabel(0)));
}

#[test]
fn here_tracks_the_load_address() {
    let mut a = Asm::new(0x8000);
    assert_eq!(a.here(), 0x8000);
    a.hlt();
    assert_eq!(a.here(), 0x8001);
}
