//! Where the boot structures go in guest-physical memory. Low memory below 1 MiB holds
//! the tables; the kernel loads at 1 MiB; the initramfs goes as high as it may.

/// The boot GDT (null, null, code at 0x10, data at 0x18, as the protocol expects).
pub const GDT_ADDR: u64 = 0x500;
/// The zero page (`struct boot_params`); RSI points here at entry.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// The initial stack pointer (grows down, below the page tables).
pub const BOOT_STACK: u64 = 0x8ff0;
/// PML4 of the identity map; PDPT and page directories follow it.
pub const PAGE_TABLES_ADDR: u64 = 0x9000;
/// How much the boot identity map covers: all of the 32-bit space, which holds the
/// kernel, the zero page, the command line and the initramfs.
pub const IDENTITY_MAPPED: u64 = 1 << 32;
/// The kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Room reserved for the command line (the kernel's own limit is usually 2048 bytes).
pub const CMDLINE_MAX: u64 = 0x1_0000;
/// Where the conventional-memory RAM entry of the E820 map ends (the EBDA follows).
pub const EBDA_START: u64 = 0x9_fc00;
/// The ACPI tables, in the BIOS area the kernel also scans for the RSDP.
pub const ACPI_ADDR: u64 = 0xe_0000;
pub const ACPI_MAX: u64 = 0x1_0000;
/// The x86 reset vector (0xf000:0xfff0), in the reserved area below 1 MiB.
pub const RESET_VECTOR: u64 = 0xf_fff0;
/// Start of "high" memory: the protected-mode kernel loads here.
pub const HIMEM_START: u64 = 0x10_0000;

/// Local APIC and I/O APIC addresses (the architectural defaults KVM emulates).
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;

/// Ports of granule's platform devices.
pub mod ports {
    /// ACPI hardware-reduced sleep control register: the guest writes SLP_TYP|SLP_EN
    /// here to power off.
    pub const ACPI_SLEEP_CONTROL: u16 = 0x600;
    /// ACPI sleep status register (reads as "woken"; never used by granule's guests).
    pub const ACPI_SLEEP_STATUS: u16 = 0x601;
    /// ACPI reset register: the guest writes [`ACPI_RESET_VALUE`] to reboot.
    pub const ACPI_RESET: u16 = 0x604;
    pub const ACPI_RESET_VALUE: u8 = 0x1;
    /// The i8042 command port: 0xfe is the legacy "pulse reset line" reboot.
    pub const I8042_COMMAND: u16 = 0x64;
    pub const I8042_DATA: u16 = 0x60;
    /// The boot timer: the guest's init writes [`BOOT_TIMER_MAGIC`] here when it reaches
    /// userspace.
    pub const BOOT_TIMER: u16 = 0x440;
    pub const BOOT_TIMER_MAGIC: u8 = 123;
    /// The pvpanic device (QEMU's ISA port): the guest kernel writes the panic event.
    pub const PVPANIC: u16 = 0x505;
}

/// The ACPI sleep type granule's DSDT gives \_S5 (soft off).
pub const SLEEP_TYPE_S5: u8 = 5;
/// The ISA IRQ of COM1.
pub const COM1_IRQ: u32 = 4;
