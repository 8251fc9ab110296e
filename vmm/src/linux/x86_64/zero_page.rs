//! The zero page (`struct boot_params`) through linux-loader's bindings and its Linux
//! boot configurator, which writes it into guest memory.

use granule_arch::x86_64::boot::e820::E820Entry;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// loadflags bit 0: the protected-mode kernel is loaded at 1 MiB.
const LOADED_HIGH: u8 = 1 << 0;
/// "Undefined boot loader" type, as other VMMs report themselves.
const LOADER_UNDEFINED: u8 = 0xff;
/// "HdrS", the boot protocol's magic.
const HDRS: u32 = 0x5372_6448;

/// Where the loader put things.
#[derive(Debug, Clone, Default)]
pub struct BootFacts {
    /// The bzImage's setup header; None for an ELF kernel, which gets the fields the
    /// kernel checks.
    pub setup_header: Option<setup_header>,
    pub cmdline_addr: u32,
    /// Initramfs address and size (0, 0 for none).
    pub initrd: (u32, u32),
    pub rsdp_addr: u64,
    /// At most E820_MAX entries (what `e820::build` guarantees).
    pub e820: Vec<E820Entry>,
}

pub fn build(facts: &BootFacts) -> boot_params {
    let mut p = boot_params::default();
    match facts.setup_header {
        Some(h) => p.hdr = h,
        None => {
            p.hdr.boot_flag = 0xaa55;
            p.hdr.header = HDRS;
            p.hdr.version = 0x20f;
            p.hdr.kernel_alignment = 0x100_0000;
            p.hdr.cmdline_size = 2047;
        }
    }
    p.hdr.type_of_loader = LOADER_UNDEFINED;
    p.hdr.loadflags |= LOADED_HIGH;
    p.hdr.cmd_line_ptr = facts.cmdline_addr;
    p.hdr.ramdisk_image = facts.initrd.0;
    p.hdr.ramdisk_size = facts.initrd.1;
    p.acpi_rsdp_addr = facts.rsdp_addr;
    let n = facts.e820.len().min(p.e820_table.len());
    p.e820_entries = n as u8;
    for (slot, e) in p.e820_table.iter_mut().zip(&facts.e820[..n]) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    p
}

/// Writes `params` at `addr` in guest memory.
pub fn write(
    mem: &GuestMemoryMmap,
    params: &boot_params,
    addr: u64,
) -> Result<(), linux_loader::configurator::Error> {
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new::<boot_params>(params, GuestAddress(addr)),
        mem,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use granule_arch::x86_64::boot::e820::E820_RAM;
    use vm_memory::Bytes;

    /// Offsets the boot protocol documents (Documentation/arch/x86/zero-page.rst and
    /// boot.rst), checked in the bytes written to guest memory.
    fn u32_at(mem: &GuestMemoryMmap, at: u64) -> u32 {
        mem.read_obj::<u32>(GuestAddress(0x7000 + at)).unwrap()
    }

    #[test]
    fn the_fields_land_at_the_documented_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let p = build(&BootFacts {
            setup_header: None,
            cmdline_addr: 0x2_0000,
            initrd: (0x3000_0000, 0x1234),
            rsdp_addr: 0xe_0000,
            e820: vec![E820Entry {
                addr: 0,
                size: 0x9_fc00,
                kind: E820_RAM,
            }],
        });
        write(&mem, &p, 0x7000).unwrap();
        assert_eq!(u32_at(&mem, 0x202), HDRS);
        assert_eq!(
            mem.read_obj::<u16>(GuestAddress(0x7000 + 0x1fe)).unwrap(),
            0xaa55
        );
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0x7000 + 0x210)).unwrap(),
            0xff
        );
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0x7000 + 0x211)).unwrap() & 1,
            1
        );
        assert_eq!(u32_at(&mem, 0x228), 0x2_0000, "cmd_line_ptr");
        assert_eq!(u32_at(&mem, 0x218), 0x3000_0000, "ramdisk_image");
        assert_eq!(u32_at(&mem, 0x21c), 0x1234, "ramdisk_size");
        assert_eq!(u32_at(&mem, 0x238), 2047, "cmdline_size");
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(0x7000 + 0x070)).unwrap(),
            0xe_0000
        );
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x7000 + 0x1e8)).unwrap(), 1);
        assert_eq!(u32_at(&mem, 0x2d0 + 8), 0x9_fc00, "e820 size");
        assert_eq!(u32_at(&mem, 0x2d0 + 16), E820_RAM, "e820 type");
    }

    #[test]
    fn a_bzimage_header_is_kept_and_the_loader_fields_set() {
        let h = setup_header {
            header: HDRS,
            cmdline_size: 4095,
            version: 0x20f,
            ..Default::default()
        };
        let p = build(&BootFacts {
            setup_header: Some(h),
            ..Default::default()
        });
        let (size, loader) = (p.hdr.cmdline_size, p.hdr.type_of_loader);
        assert_eq!((size, loader), (4095, 0xff));
    }
}
