//! What the fuzz targets share: a cursor that turns the fuzzer's bytes into a sequence
//! of operations (each target decides what an operation is).

/// Reads fixed-size values from the front of the input; reads past the end give zero,
/// so every input is a valid sequence.
pub struct Ops<'a> {
    data: &'a [u8],
}

impl<'a> Ops<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }

    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// An access length a CPU can make: 1, 2, 4 or 8 bytes.
    pub fn access_len(&mut self) -> usize {
        1 << (self.u8() & 3)
    }
}
