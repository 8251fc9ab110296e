//! The report protocol spoken by granule's built-in guest programs.
//!
//! A program reports by writing a [`ReportKind`] as a 32-bit value to the report port
//! (x86: port I/O from CPL3) with the 64-bit argument in a second register (x86: `rbx`).
//! The VMM reads the argument from the vCPU's registers, so one exit carries 64 bits
//! without any shared memory protocol that a buggy guest could corrupt.

/// `touch` reports progress every this many pages (64 MiB).
pub const PROGRESS_EVERY_PAGES: u32 = 0x4000;
/// `spin` reports its count every this many iterations.
pub const SPIN_REPORT_EVERY: u32 = 1 << 24;

/// What a report means. The numeric values are the guest/VMM ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ReportKind {
    /// The vCPU has finished; the argument is its exit code (0 = success).
    Done = 1,
    /// Work done so far by this vCPU, in 4 KiB pages.
    Progress = 2,
    /// A value the program observed (e.g. what an unclaimed port read back as).
    Value = 3,
    /// The program reached a numbered stage (used by benchmarks).
    Stage = 4,
    /// An exception the program has no handler for (arm64: its vector table reports
    /// ESR_EL1 as the argument, with ELR_EL1 in x2 and FAR_EL1 in x3); ends the vCPU.
    Exception = 5,
}

impl ReportKind {
    /// Decodes a kind written by the guest; `None` for anything else, which the VMM
    /// must treat as a guest error rather than trust.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Done),
            2 => Some(Self::Progress),
            3 => Some(Self::Value),
            4 => Some(Self::Stage),
            5 => Some(Self::Exception),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_is_rejected() {
        for k in [
            ReportKind::Done,
            ReportKind::Progress,
            ReportKind::Value,
            ReportKind::Stage,
            ReportKind::Exception,
        ] {
            assert_eq!(ReportKind::from_raw(k as u32), Some(k));
        }
        assert_eq!(ReportKind::from_raw(0), None);
        assert_eq!(ReportKind::from_raw(6), None);
    }
}
