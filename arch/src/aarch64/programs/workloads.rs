//! Machine code of each aarch64 workload, written with the tiny assembler. Every
//! workload keeps the report address in x17 and the report's argument in x1, and ends
//! in a `Done` report followed by `udf` (never resumed: a VMM bug becomes a loud
//! exception report instead of a silent fall-through).

use crate::aarch64::asm::{Cond, A64, X, XZR};
use crate::aarch64::layout::{REPORT_MMIO, UART_MMIO};
use crate::report::{ReportKind, PROGRESS_EVERY_PAGES, SPIN_REPORT_EVERY};
use crate::{ImageError, Program};

/// Bytes per vector-table entry (the architecture's spacing) and entries per table.
pub const VECTOR_ENTRY: u64 = 0x80;
pub const VECTOR_ENTRIES: u64 = 16;
/// The value `mmio-probe` stores before reading back.
pub const PROBE_PATTERN: u64 = 0x0123_4567_89ab_cdef;

const ESR_EL1: (u32, u32, u32, u32, u32) = (3, 0, 5, 2, 0);
const ELR_EL1: (u32, u32, u32, u32, u32) = (3, 0, 4, 0, 1);
const FAR_EL1: (u32, u32, u32, u32, u32) = (3, 0, 6, 0, 0);

/// Report `kind` with the value already in x1: a 32-bit store of the kind to the
/// report address in x17.
pub fn report(a: &mut A64, kind: ReportKind) {
    a.movz(X(16), kind as u16, 0).str_w(X(16), X(17));
}

fn done(a: &mut A64) {
    a.mov(X(1), XZR);
    report(a, ReportKind::Done);
    a.udf();
}

/// Arguments: x0 = text, x1 = length.
fn hello(a: &mut A64) {
    let (top, end) = (a.label(), a.label());
    a.mov(X(19), X(0))
        .mov(X(20), X(1))
        .mov_imm(X(18), UART_MMIO);
    a.bind(top);
    a.cbz(X(20), end);
    a.ldrb(X(2), X(19))
        .strb(X(2), X(18))
        .add_imm(X(19), X(19), 1, false)
        .sub_imm(X(20), X(20), 1)
        .b(top);
    a.bind(end);
    done(a);
}

/// Arguments: x0 = table of (start, end) pairs, x1 = number of pairs. Stores each
/// page's address into the page; counts pages in x8, reports progress as x86 does.
fn touch(a: &mut A64) {
    let (outer, inner, next, finished) = (a.label(), a.label(), a.label(), a.label());
    a.mov(X(19), X(0)).mov(X(20), X(1)).mov(X(8), XZR);
    a.mov_imm(X(12), u64::from(PROGRESS_EVERY_PAGES));
    a.bind(outer);
    a.cbz(X(20), finished);
    a.ldr(X(9), X(19)).ldr_at(X(10), X(19), 8);
    a.bind(inner);
    a.cmp(X(9), X(10)).b_cond(Cond::Hs, next);
    a.str(X(9), X(9))
        .add_imm(X(9), X(9), 1, true)
        .add_imm(X(8), X(8), 1, false)
        .sub_imm(X(12), X(12), 1)
        .cbnz(X(12), inner);
    a.mov(X(1), X(8));
    report(a, ReportKind::Progress);
    a.mov_imm(X(12), u64::from(PROGRESS_EVERY_PAGES)).b(inner);
    a.bind(next);
    a.add_imm(X(19), X(19), 16, false)
        .sub_imm(X(20), X(20), 1)
        .b(outer);
    a.bind(finished);
    done(a);
}

/// Counts in x1 forever; reports every [`SPIN_REPORT_EVERY`] iterations.
fn spin(a: &mut A64) {
    let top = a.label();
    a.mov(X(1), XZR)
        .mov_imm(X(12), u64::from(SPIN_REPORT_EVERY));
    a.bind(top);
    a.add_imm(X(1), X(1), 1, false)
        .sub_imm(X(12), X(12), 1)
        .cbnz(X(12), top);
    report(a, ReportKind::Progress);
    a.mov_imm(X(12), u64::from(SPIN_REPORT_EVERY)).b(top);
}

fn mmio_probe(a: &mut A64, gpa: u64) {
    a.mov_imm(X(0), gpa)
        .mov_imm(X(1), PROBE_PATTERN)
        .str(X(1), X(0))
        .ldr(X(1), X(0));
    report(a, ReportKind::Value);
    done(a);
}

/// `count` rounds of: a byte to the UART, a write and a read of the unbacked `gpa`.
fn hammer(a: &mut A64, count: u32, gpa: u64) {
    let (top, end) = (a.label(), a.label());
    a.mov_imm(X(20), u64::from(count))
        .mov_imm(X(18), UART_MMIO)
        .mov_imm(X(19), gpa)
        .movz(X(2), u16::from(b'.'), 0);
    a.bind(top);
    a.cbz(X(20), end);
    a.strb(X(2), X(18))
        .str(X(2), X(19))
        .ldr(X(3), X(19))
        .sub_imm(X(20), X(20), 1)
        .b(top);
    a.bind(end);
    done(a);
}

/// The workload of `program` (not stress, which has its own image) at `base`.
pub fn encode(program: &Program, base: u64) -> Result<Vec<u8>, ImageError> {
    let mut a = A64::new(base);
    a.mov_imm(X(17), REPORT_MMIO);
    match program {
        Program::Hello { .. } => hello(&mut a),
        Program::Touch => touch(&mut a),
        Program::Spin => spin(&mut a),
        Program::MmioProbe { gpa } => mmio_probe(&mut a, *gpa),
        Program::Hammer { count, gpa } => hammer(&mut a, *count, *gpa),
        // An undefined instruction: the vector table reports it as an exception.
        Program::TripleFault => {
            a.udf();
        }
        Program::PortProbe { .. } => return Err(ImageError::X86Only("port-probe")),
        Program::PciConfigRead { .. } => return Err(ImageError::X86Only("pci-config-read")),
        Program::Stress { .. } => {
            return Err(ImageError::Encode("stress has its own image".into()))
        }
    }
    a.finish().map_err(|e| ImageError::Encode(e.to_string()))
}

/// The exception vector table at `base` (2 KiB-aligned): each of the 16 entries
/// reports [`ReportKind::Exception`] with ESR_EL1 in x1, ELR_EL1 in x2 and FAR_EL1 in
/// x3, then stops on `udf`. Any exception is unexpected in a built-in program.
pub fn vectors(base: u64) -> Result<Vec<u8>, ImageError> {
    let mut table = Vec::with_capacity((VECTOR_ENTRY * VECTOR_ENTRIES) as usize);
    for i in 0..VECTOR_ENTRIES {
        let mut a = A64::new(base + i * VECTOR_ENTRY);
        a.mov_imm(X(17), REPORT_MMIO)
            .mrs(X(1), ESR_EL1)
            .mrs(X(2), ELR_EL1)
            .mrs(X(3), FAR_EL1);
        report(&mut a, ReportKind::Exception);
        a.udf();
        let mut entry = a.finish().map_err(|e| ImageError::Encode(e.to_string()))?;
        entry.resize(VECTOR_ENTRY as usize, 0);
        table.extend(entry);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(b: &[u8]) -> Vec<u32> {
        b.chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn every_vector_reports_the_exception_and_stops() {
        let t = vectors(0x800).unwrap();
        assert_eq!(t.len(), 0x800);
        for entry in t.chunks(0x80) {
            let w = words(entry);
            assert!(w.contains(&0xd538_5201), "mrs x1, esr_el1");
            assert!(w.contains(&0xd538_4022), "mrs x2, elr_el1");
            assert!(w.contains(&(0xd280_0010 | (5 << 5))), "mov x16, #Exception");
            assert!(w.contains(&0xb900_0230), "str w16, [x17]");
        }
    }

    #[test]
    fn every_program_ends_in_a_trap_and_x86_only_ones_are_refused() {
        for p in [
            Program::Hello { text: "hi".into() },
            Program::Touch,
            Program::MmioProbe { gpa: 0xd000_0000 },
            Program::TripleFault,
        ] {
            let code = encode(&p, 0x1000).unwrap();
            assert_eq!(&code[code.len() - 4..], &[0, 0, 0, 0], "{p:?} ends in udf");
        }
        let spin = words(&encode(&Program::Spin, 0x1000).unwrap());
        assert_eq!(
            spin.last().map(|w| w >> 26),
            Some(0b000101),
            "spin ends in b"
        );
        assert_eq!(
            encode(&Program::PortProbe { port: 0x80 }, 0x1000),
            Err(ImageError::X86Only("port-probe"))
        );
    }
}
