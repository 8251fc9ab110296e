//! Machine code of each workload, written with the tiny assembler.

use crate::report::{ReportKind, PROGRESS_EVERY_PAGES, SPIN_REPORT_EVERY};
use crate::x86_64::asm::{Asm, Cond, Reg, UnboundLabel};
use crate::x86_64::gdt::{USER_CS, USER_DS};
use crate::x86_64::layout::{COM1_PORT, REPORT_PORT};
use crate::x86_64::regs::{RFLAGS_IOPL3, RFLAGS_RESERVED};
use crate::Program;

/// CPL0 prologue: build an `iretq` frame for the CPL3 workload at `workload` on the
/// user stack (r15), with IOPL=3 and interrupts off. Clobbers only rax.
fn prologue(a: &mut Asm, workload: u64) {
    a.push_imm(i32::from(USER_DS))
        .push(Reg::R15)
        .push_imm((RFLAGS_IOPL3 | RFLAGS_RESERVED) as i32)
        .push_imm(i32::from(USER_CS))
        .mov_imm64(Reg::Rax, workload)
        .push(Reg::Rax)
        .iretq();
}

/// Report `kind` with the argument already in rbx. Clobbers rax and rdx.
fn report(a: &mut Asm, kind: ReportKind) {
    a.mov_imm32(Reg::Rdx, u32::from(REPORT_PORT))
        .mov_imm32(Reg::Rax, kind as u32)
        .out_dx_eax();
}

/// Report success and stop. The VMM never resumes a vCPU that reported `Done`; the
/// `ud2` after it turns a VMM bug into a loud guest crash instead of a silent spin.
fn done(a: &mut Asm) {
    a.zero(Reg::Rbx);
    report(a, ReportKind::Done);
    a.ud2();
}

/// Arguments: rsi = text, rcx = length.
fn hello(a: &mut Asm) {
    let (top, end) = (a.label(), a.label());
    a.mov_imm32(Reg::Rdx, u32::from(COM1_PORT));
    a.bind(top);
    a.test_rr(Reg::Rcx, Reg::Rcx).jcc(Cond::Z, end);
    a.load_byte_al(Reg::Rsi)
        .out_dx_al()
        .inc(Reg::Rsi)
        .dec(Reg::Rcx)
        .jmp(top);
    a.bind(end);
    done(a);
}

/// Arguments: rdi = table of (start, end) pairs, rsi = number of pairs.
/// Stores each page's address into the page; counts pages in r8 for progress.
fn touch(a: &mut Asm) {
    let (outer, inner, next, finished) = (a.label(), a.label(), a.label(), a.label());
    a.zero(Reg::R8);
    a.bind(outer);
    a.test_rr(Reg::Rsi, Reg::Rsi).jcc(Cond::Z, finished);
    a.load(Reg::Rax, Reg::Rdi, 0).load(Reg::Rcx, Reg::Rdi, 8);
    a.bind(inner);
    a.cmp_rr(Reg::Rax, Reg::Rcx).jcc(Cond::Ae, next);
    a.store(Reg::Rax, 0, Reg::Rax)
        .add_imm(Reg::Rax, 4096)
        .inc(Reg::R8)
        .test_imm32(Reg::R8, PROGRESS_EVERY_PAGES - 1)
        .jcc(Cond::Nz, inner);
    a.mov_rr(Reg::R9, Reg::Rax).mov_rr(Reg::Rbx, Reg::R8);
    report(a, ReportKind::Progress);
    a.mov_rr(Reg::Rax, Reg::R9).jmp(inner);
    a.bind(next);
    a.add_imm(Reg::Rdi, 16).dec(Reg::Rsi).jmp(outer);
    a.bind(finished);
    done(a);
}

fn port_probe(a: &mut Asm, port: u16) {
    a.mov_imm32(Reg::Rdx, u32::from(port))
        .in_eax_dx()
        .mov_rr(Reg::Rbx, Reg::Rax);
    report(a, ReportKind::Value);
    done(a);
}

fn pci_config_read(a: &mut Asm, address: u32) {
    a.mov_imm32(Reg::Rdx, 0xcf8)
        .mov_imm32(Reg::Rax, address)
        .out_dx_eax()
        .mov_imm32(Reg::Rdx, 0xcfc)
        .in_eax_dx()
        .mov_rr(Reg::Rbx, Reg::Rax);
    report(a, ReportKind::Value);
    done(a);
}

fn mmio_probe(a: &mut Asm, gpa: u64) {
    a.mov_imm64(Reg::Rax, gpa)
        .mov_imm64(Reg::Rbx, 0x0123_4567_89ab_cdef)
        .store(Reg::Rax, 0, Reg::Rbx)
        .load(Reg::Rbx, Reg::Rax, 0);
    report(a, ReportKind::Value);
    done(a);
}

/// A configuration address no PCI function answers: bus 0, device 31, function 7.
pub const ABSENT_PCI_FUNCTION: u32 = 0x8000_ff00;

/// `count` rounds of: a serial byte, an absent function's configuration read, a write
/// and a read of the unbacked `gpa`.
fn hammer(a: &mut Asm, count: u32, gpa: u64) {
    let (top, end) = (a.label(), a.label());
    a.mov_imm32(Reg::Rcx, count).mov_imm64(Reg::Rdi, gpa);
    a.bind(top);
    a.test_rr(Reg::Rcx, Reg::Rcx).jcc(Cond::Z, end);
    a.mov_imm32(Reg::Rdx, u32::from(COM1_PORT))
        .mov_imm32(Reg::Rax, u32::from(b'.'))
        .out_dx_al();
    a.mov_imm32(Reg::Rdx, 0xcf8)
        .mov_imm32(Reg::Rax, ABSENT_PCI_FUNCTION)
        .out_dx_eax()
        .mov_imm32(Reg::Rdx, 0xcfc)
        .in_eax_dx();
    a.store(Reg::Rdi, 0, Reg::Rax).load(Reg::Rbx, Reg::Rdi, 0);
    a.dec(Reg::Rcx).jmp(top);
    a.bind(end);
    done(a);
}

/// Counts in rbx forever; reports every 2^24 iterations.
fn spin(a: &mut Asm) {
    let top = a.label();
    a.zero(Reg::Rbx);
    a.bind(top);
    a.inc(Reg::Rbx)
        .test_imm32(Reg::Rbx, SPIN_REPORT_EVERY - 1)
        .jcc(Cond::Nz, top);
    report(a, ReportKind::Progress);
    a.jmp(top);
}

/// One pass over [r12, r13) with stride r14; `body` is emitted with the address in rax.
fn pass(a: &mut Asm, body: impl Fn(&mut Asm)) {
    let (top, done) = (a.label(), a.label());
    a.mov_rr(Reg::Rax, Reg::R12);
    a.bind(top);
    a.cmp_rr(Reg::Rax, Reg::R13).jcc(Cond::Ae, done);
    body(a);
    a.add_rr(Reg::Rax, Reg::R14).jmp(top);
    a.bind(done);
}

fn stage(a: &mut Asm, n: u32) {
    a.mov_imm32(Reg::Rbx, n);
    report(a, ReportKind::Stage);
}

/// mmu_stress_test's guest_code. Arguments: rdi = start, rsi = end, rdx = stride,
/// rcx = address of the read-only flag; kept in r12, r13, r14, r10 because reports
/// clobber rax, rbx and rdx.
fn stress(a: &mut Asm, crash: bool) {
    if crash {
        a.ud2();
        return;
    }
    a.mov_rr(Reg::R12, Reg::Rdi)
        .mov_rr(Reg::R13, Reg::Rsi)
        .mov_rr(Reg::R14, Reg::Rdx)
        .mov_rr(Reg::R10, Reg::Rcx);
    let write = |a: &mut Asm| {
        a.store(Reg::Rax, 0, Reg::Rax);
    };
    pass(a, write);
    stage(a, 0);
    pass(a, write);
    stage(a, 1);
    pass(a, |a| {
        a.load(Reg::Rbx, Reg::Rax, 0);
    });
    stage(a, 2);
    // Stage 3: store until the host says memory is read-only. The store is exactly
    // `mov %rax,(%rax)` (48 89 00): the host skips a faulting one with RIP += 3.
    let again = a.label();
    a.bind(again);
    pass(a, write);
    a.load(Reg::Rbx, Reg::R10, 0)
        .test_rr(Reg::Rbx, Reg::Rbx)
        .jcc(Cond::Z, again);
    stage(a, 3);
    pass(a, write);
    stage(a, 4);
    // GUEST_ASSERT(0): the host never resumes a vCPU after stage 4.
    a.ud2();
}

/// Length of the stage-3 store the host skips on EFAULT.
pub const STRESS_STORE_LEN: u64 = 3;

/// Encodes `program` at guest address `base` for vCPU `vcpu`: prologue first (the entry
/// point), then the workload. Returns the code.
pub fn encode_for(program: &Program, base: u64, vcpu: usize) -> Result<Vec<u8>, UnboundLabel> {
    // The prologue has a fixed length, so the workload's address is known up front.
    let mut probe = Asm::new(base);
    prologue(&mut probe, 0);
    let workload = probe.here();

    let mut a = Asm::new(base);
    prologue(&mut a, workload);
    debug_assert_eq!(a.here(), workload);
    match program {
        Program::Hello { .. } => hello(&mut a),
        Program::Touch => touch(&mut a),
        Program::TripleFault => {
            a.ud2();
        }
        Program::PortProbe { port } => port_probe(&mut a, *port),
        Program::PciConfigRead { address } => pci_config_read(&mut a, *address),
        Program::MmioProbe { gpa } => mmio_probe(&mut a, *gpa),
        Program::Spin => spin(&mut a),
        Program::Hammer { count, gpa } => hammer(&mut a, *count, *gpa),
        Program::Stress { crash_vcpu, .. } => stress(&mut a, *crash_vcpu == Some(vcpu)),
    }
    a.finish()
}

/// Encodes `program` for vCPU 0.
pub fn encode(program: &Program, base: u64) -> Result<Vec<u8>, UnboundLabel> {
    encode_for(program, base, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologue_builds_a_cpl3_iret_frame() {
        let code = encode(&Program::TripleFault, 0x2000).unwrap();
        // push 0x1b; push r15; push 0x3002; push 0x23; movabs rax, W; push rax; iretq; ud2
        let workload: u64 = 0x2000 + 2 + 2 + 5 + 2 + 10 + 1 + 2;
        let mut want = vec![0x6a, 0x1b, 0x41, 0x57, 0x68, 0x02, 0x30, 0, 0, 0x6a, 0x23];
        want.extend_from_slice(&[0x48, 0xb8]);
        want.extend_from_slice(&workload.to_le_bytes());
        want.extend_from_slice(&[0x50, 0x48, 0xcf, 0x0f, 0x0b]);
        assert_eq!(code, want);
    }

    #[test]
    fn touch_stores_with_the_three_byte_mov() {
        let code = encode(&Program::Touch, 0x2000).unwrap();
        assert!(code.windows(3).any(|w| w == [0x48, 0x89, 0x00]));
    }

    #[test]
    fn stress_has_the_three_byte_store_and_five_stage_reports() {
        let p = Program::Stress {
            start: 1 << 32,
            end: 2 << 32,
            crash_vcpu: None,
        };
        let code = encode(&p, 0x2000).unwrap();
        assert!(code.windows(3).any(|w| w == [0x48, 0x89, 0x00]));
        // `mov ebx, n` before each of the five stage reports.
        for n in 0u8..5 {
            assert!(
                code.windows(5).any(|w| w == [0xbb, n, 0, 0, 0]),
                "stage {n}"
            );
        }
        // The debug crash variant is just the trap.
        let c = Program::Stress {
            start: 1 << 32,
            end: 2 << 32,
            crash_vcpu: Some(1),
        };
        assert_eq!(encode_for(&c, 0x2000, 0).unwrap(), code);
        let crashed = encode_for(&c, 0x2000, 1).unwrap();
        assert_eq!(&crashed[crashed.len() - 2..], &[0x0f, 0x0b]);
        assert!(crashed.len() < code.len());
    }

    #[test]
    fn spin_loops_back_and_never_falls_through() {
        let code = encode(&Program::Spin, 0x2000).unwrap();
        // Last instruction: jmp rel32 back into the loop.
        let n = code.len();
        assert_eq!(code[n - 5], 0xe9);
        let rel = i32::from_le_bytes(code[n - 4..].try_into().unwrap());
        assert!(rel < 0);
    }

    #[test]
    fn every_program_ends_in_a_trap_not_a_fallthrough() {
        for p in [
            Program::Hello { text: "x".into() },
            Program::Touch,
            Program::TripleFault,
            Program::PortProbe { port: 0x80 },
            Program::MmioProbe { gpa: 0xd000_0000 },
            Program::Hammer {
                count: 3,
                gpa: 0xd000_0000,
            },
        ] {
            let code = encode(&p, 0x2000).unwrap();
            assert_eq!(&code[code.len() - 2..], &[0x0f, 0x0b], "{p:?}");
        }
    }
}
