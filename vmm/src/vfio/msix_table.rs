//! The MSI-X table as the guest sees it: one 16-byte entry per vector (message address,
//! data, vector control), read and written at any offset and width the guest uses. Pure
//! state: what the entries mean for the host's interrupts is [`super::msix`]'s job.

use super::vectors::Message;

pub const ENTRY_SIZE: u64 = 16;
/// Vector control's only writable bit.
pub const VECTOR_MASKED: u32 = 1;

/// A table entry as the guest wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    address: u64,
    data: u32,
    control: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsixTable {
    entries: Vec<Entry>,
}

impl MsixTable {
    /// `vectors` entries, each masked with a zero message, as after reset.
    pub fn new(vectors: usize) -> Self {
        let masked = Entry {
            address: 0,
            data: 0,
            control: VECTOR_MASKED,
        };
        Self {
            entries: vec![masked; vectors],
        }
    }

    /// The dword at byte `off` of the table (0 past its end).
    fn dword(&self, off: u64) -> u32 {
        self.entries
            .get(usize::try_from(off / ENTRY_SIZE).unwrap_or(usize::MAX))
            .map_or(0, |v| match off % ENTRY_SIZE {
                0..=3 => v.address as u32,
                4..=7 => (v.address >> 32) as u32,
                8..=11 => v.data,
                _ => v.control,
            })
    }

    /// A read of `data.len()` bytes at `offset`: each byte from the dword it lies in,
    /// so unaligned and narrow reads see what an aligned one would.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let Some(at) = offset.checked_add(i as u64) else {
                *b = 0;
                continue;
            };
            *b = self.dword(at & !3).to_le_bytes()[(at & 3) as usize];
        }
    }

    /// A write of `data` at `offset`: each byte lands in its dword; bytes past the
    /// table are dropped. Only the mask bit of vector control is writable.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Some(at) = offset.checked_add(i as u64) else {
                return;
            };
            let Some(v) = self
                .entries
                .get_mut(usize::try_from(at / ENTRY_SIZE).unwrap_or(usize::MAX))
            else {
                continue;
            };
            let within = at % ENTRY_SIZE;
            let shift = 8 * (within % 4);
            let set = |word: u32| (word & !(0xff << shift)) | (u32::from(b) << shift);
            match within {
                0..=7 => {
                    let shift = 8 * within;
                    v.address = (v.address & !(0xff << shift)) | (u64::from(b) << shift);
                }
                8..=11 => v.data = set(v.data),
                _ => v.control = set(v.control) & VECTOR_MASKED,
            }
        }
    }

    /// Each vector's message; active when the function is `enabled`, not `masked`, and
    /// the vector is not masked.
    pub fn messages(&self, enabled: bool, masked: bool) -> Vec<Message> {
        self.entries
            .iter()
            .map(|e| Message {
                address: e.address,
                data: e.data,
                active: enabled && !masked && e.control & VECTOR_MASKED == 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_at_any_width_and_only_the_mask_bit_is_writable() {
        let mut t = MsixTable::new(2);
        t.write(16, &0xfee0_1000_0000_0000u64.to_le_bytes());
        t.write(16, &0x0000_0000_fee0_1000u64.to_le_bytes()[..4]);
        t.write(24, &0x41u32.to_le_bytes());
        t.write(28, &0xffff_fffeu32.to_le_bytes());
        let mut q = [0u8; 8];
        t.read(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0xfee0_1000_fee0_1000);
        let mut d = [0u8; 4];
        t.read(28, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0, "unmasked; reserved bits read 0");
        let mut b = [0u8; 1];
        t.read(24, &mut b);
        assert_eq!(b, [0x41]);
        let m = t.messages(true, false);
        assert_eq!(
            (m[1].address, m[1].data, m[1].active),
            (0xfee0_1000_fee0_1000, 0x41, true)
        );
        assert!(!m[0].active, "vector 0 is still masked");
        assert!(!t.messages(true, true)[1].active, "function mask");
        assert!(!t.messages(false, false)[1].active, "disabled");
    }

    #[test]
    fn accesses_past_the_table_or_the_address_space_are_dropped() {
        let mut t = MsixTable::new(1);
        let before = t.clone();
        t.write(16, &[0xff; 8]);
        t.write(u64::MAX - 2, &[0xff; 8]);
        assert_eq!(t, before);
        let mut d = [0xaau8; 8];
        t.read(u64::MAX - 2, &mut d);
        assert_eq!(d, [0; 8]);
    }
}
