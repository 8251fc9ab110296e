//! The capability list a guest sees of a passed-through function: the device's own,
//! with the capabilities granule does not offer (MSI and MSI-X until their interrupts
//! are routed) unlinked, so the guest's driver never finds them.

use std::collections::BTreeMap;

use super::msi::MsiLayout;

/// Capability IDs.
pub const CAP_MSI: u8 = 0x05;
pub const CAP_MSIX: u8 = 0x11;

const CAP_POINTER: u16 = 0x34;
const STATUS: u16 = 0x06;
const STATUS_CAP_LIST: u8 = 1 << 4;
/// More entries than fit in 192 bytes of capabilities: the list loops.
const MAX_CAPS: usize = 48;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapChain {
    /// The first visible capability (0: none).
    first: u8,
    /// Each visible capability's offset and the next visible one (0 ends the list).
    next: BTreeMap<u8, u8>,
    /// Hidden capabilities: offset and how many bytes a write must not reach.
    hidden: Vec<(u8, u8)>,
}

/// The device's capabilities in list order: (offset, ID). A list that loops or runs
/// past what fits ends where it would repeat.
fn walk(byte: &impl Fn(u16) -> u8) -> Vec<(u8, u8)> {
    let mut caps: Vec<(u8, u8)> = Vec::new();
    if byte(STATUS) & STATUS_CAP_LIST == 0 {
        return caps;
    }
    let mut at = byte(CAP_POINTER) & !3;
    while at >= 0x40 && caps.len() < MAX_CAPS && !caps.iter().any(|c| c.0 == at) {
        caps.push((at, byte(u16::from(at))));
        at = byte(u16::from(at) + 1) & !3;
    }
    caps
}

/// The offset of the first capability with `id` in the device's list.
pub fn find(byte: impl Fn(u16) -> u8, id: u8) -> Option<u16> {
    walk(&byte)
        .into_iter()
        .find(|c| c.1 == id)
        .map(|c| u16::from(c.0))
}

impl CapChain {
    /// Reads the device's list through `byte` (a configuration space byte reader) and
    /// hides every capability whose ID is in `hide`.
    pub fn new(byte: impl Fn(u16) -> u8, hide: &[u8]) -> Self {
        let mut chain = Self::default();
        let mut visible = Vec::new();
        for (at, id) in walk(&byte) {
            if !hide.contains(&id) {
                visible.push(at);
                continue;
            }
            let len = match id {
                CAP_MSI => {
                    let at = u16::from(at);
                    let control = u16::from_le_bytes([byte(at + 2), byte(at + 3)]);
                    MsiLayout { at, control }.byte_len() as u8
                }
                CAP_MSIX => 12,
                _ => 2,
            };
            chain.hidden.push((at, len));
        }
        chain.first = visible.first().copied().unwrap_or(0);
        for (i, &c) in visible.iter().enumerate() {
            chain
                .next
                .insert(c, visible.get(i + 1).copied().unwrap_or(0));
        }
        chain
    }

    /// `dword` (read from the device at `offset`, a multiple of 4) as the guest sees it.
    pub fn patch_read(&self, offset: u16, dword: u32) -> u32 {
        let mut b = dword.to_le_bytes();
        if offset == CAP_POINTER {
            b[0] = self.first;
        }
        for (&cap, &next) in self.next.range(offset.min(255) as u8..) {
            let at = u16::from(cap) + 1;
            if at >= offset + 4 {
                break;
            }
            if at >= offset {
                b[usize::from(at - offset)] = next;
            }
        }
        u32::from_le_bytes(b)
    }

    /// Whether a guest write of `len` bytes at `offset` touches a hidden capability.
    pub fn write_hidden(&self, offset: u16, len: usize) -> bool {
        let end = usize::from(offset) + len;
        self.hidden.iter().any(|&(at, n)| {
            let (s, e) = (usize::from(at), usize::from(at) + usize::from(n));
            usize::from(offset) < e && s < end
        })
    }

    #[cfg(test)]
    pub fn is_hidden(&self, id_at: u8) -> bool {
        self.hidden.iter().any(|&(at, _)| at == id_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status with a capability list; PM at 0x40 -> MSI at 0x50 -> PCIe at 0x70 -> MSI-X
    /// at 0x90 (end).
    fn config() -> Vec<u8> {
        let mut c = vec![0u8; 256];
        c[0x06] = STATUS_CAP_LIST;
        c[0x34] = 0x40;
        c[0x40] = 0x01;
        c[0x41] = 0x50;
        c[0x50] = CAP_MSI;
        c[0x51] = 0x70;
        c[0x52] = 0x80; // 64-bit addresses: 14 bytes
        c[0x70] = 0x10;
        c[0x71] = 0x90;
        c[0x90] = CAP_MSIX;
        c[0x91] = 0x00;
        c
    }

    fn dword(c: &[u8], at: u16) -> u32 {
        let a = usize::from(at);
        u32::from_le_bytes([c[a], c[a + 1], c[a + 2], c[a + 3]])
    }

    #[test]
    fn hidden_capabilities_drop_out_of_the_list() {
        let c = config();
        let chain = CapChain::new(|o| c[usize::from(o)], &[CAP_MSI, CAP_MSIX]);
        let read = |at: u16| chain.patch_read(at, dword(&c, at)).to_le_bytes();
        assert_eq!(read(0x34)[0], 0x40);
        assert_eq!(read(0x40)[..2], [0x01, 0x70], "PM now points at PCIe");
        assert_eq!(read(0x70)[..2], [0x10, 0x00], "PCIe ends the list");
        assert!(chain.is_hidden(0x50) && chain.is_hidden(0x90));
        assert!(chain.write_hidden(0x52, 2) && chain.write_hidden(0x5c, 2));
        assert!(
            !chain.write_hidden(0x5e, 2),
            "the 64-bit MSI capability is 14 bytes"
        );
        assert!(chain.write_hidden(0x9b, 1) && !chain.write_hidden(0x9c, 4));
        assert_eq!(find(|o| c[usize::from(o)], CAP_MSIX), Some(0x90));
        assert_eq!(find(|o| c[usize::from(o)], 0x09), None);
        // Nothing hidden: the device's own list.
        let all = CapChain::new(|o| c[usize::from(o)], &[]);
        assert_eq!(all.patch_read(0x40, dword(&c, 0x40)), dword(&c, 0x40));
        assert_eq!(all.patch_read(0x50, dword(&c, 0x50)), dword(&c, 0x50));
    }

    #[test]
    fn lists_that_loop_or_are_absent_end() {
        let mut c = config();
        c[0x91] = 0x40; // back to the start
        let chain = CapChain::new(|o| c[usize::from(o)], &[CAP_MSIX]);
        assert_eq!(chain.first, 0x40);
        assert_eq!(chain.next[&0x70], 0, "the loop is cut where it closes");
        c[0x06] = 0;
        let none = CapChain::new(|o| c[usize::from(o)], &[CAP_MSIX]);
        assert_eq!(none.patch_read(0x34, 0x40), 0);
    }
}
