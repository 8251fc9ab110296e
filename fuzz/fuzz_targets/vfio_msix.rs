//! What a passed-through function's guest and device control: the MSI-X table (any
//! offset and width, past the end too; the PBA is read from the device, not modelled),
//! and the capability list read from the device's configuration space (loops, bad pointers, hidden capabilities), with the
//! MSI-X and MSI layouts parsed from it.
#![no_main]

use granule_fuzz::Ops;
use granule_vmm::vfio::caps::{self, CapChain};
use granule_vmm::vfio::msi::MsiLayout;
use granule_vmm::vfio::msix::MsixCap;
use granule_vmm::vfio::msix_table::{MsixTable, ENTRY_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data);
    // A device's 256 bytes of configuration space.
    let mut config = [0u8; 256];
    let head = ops.bytes(256);
    config[..head.len()].copy_from_slice(head);
    let byte = |at: u16| config.get(usize::from(at)).copied().unwrap_or(0xff);
    let chain = CapChain::new(byte, &[caps::CAP_MSI]);
    for _ in 0..4 {
        let at = ops.u16() & 0xff;
        let _ = chain.patch_read(at & !3, ops.u32());
        let _ = chain.write_hidden(at, ops.access_len());
    }
    if let Some(at) = caps::find(byte, caps::CAP_MSIX) {
        let dword = |o: u16| {
            let o = usize::from(at + o);
            u32::from_le_bytes(std::array::from_fn(|i| {
                config.get(o + i).copied().unwrap_or(0)
            }))
        };
        let cap = MsixCap::parse(at, [dword(0), dword(4), dword(8)]);
        let _ = (cap.table_len(), cap.pba_len());
    }
    let msi = MsiLayout {
        at: 0x50,
        control: ops.u16(),
    };
    let _ = (msi.vectors(), msi.byte_len(), msi.wide(), msi.masking());

    // The table of a function with up to 2048 vectors, as the guest drives it.
    let vectors = usize::from(ops.u16() % 2048) + 1;
    let mut table = MsixTable::new(vectors);
    let span = vectors as u64 * ENTRY_SIZE + 64;
    while !ops.is_empty() {
        let op = ops.u8();
        let n = ops.access_len();
        let offset = if op & 2 == 0 {
            u64::from(ops.u32()) % span
        } else {
            ops.u64()
        };
        if op & 1 == 0 {
            let mut d = [0u8; 8];
            table.read(offset, &mut d[..n]);
        } else {
            table.write(offset, &ops.u64().to_le_bytes()[..n]);
        }
        // The message list is O(vectors): built now and then, not after every access,
        // so an input is cheap enough for millions of executions.
        if op & 0xf0 == 0 {
            let _ = table.messages(op & 4 != 0, op & 8 != 0);
        }
    }
    let _ = table.messages(true, false);
});
