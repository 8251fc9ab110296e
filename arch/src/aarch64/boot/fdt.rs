//! The device tree an arm64 Linux guest boots with: the machine granule builds, in the
//! bindings Linux's drivers match (QEMU `virt`'s names where a binding leaves a choice,
//! since guest kernels are tested against it). Memory, one cpu node per vCPU started
//! through PSCI, KVM's in-kernel PSCI, GICv3 with its ITS, the architected timer, a
//! 16550 UART as the console, a pvpanic device, and `/chosen` with the command line, initramfs and an RNG
//! seed. Node names follow the device-tree specification so `dtc` accepts it silently.

use thiserror::Error;
use vm_fdt::FdtWriter;

use super::layout::{GIC_MAINTENANCE_PPI, TIMER_PPIS};

/// Phandles of the interrupt controller and its ITS.
const GIC_PHANDLE: u32 = 1;
const ITS_PHANDLE: u32 = 2;
/// Interrupt specifier cells (GICv3 binding): type, number, flags.
const SPI: u32 = 0;
const PPI: u32 = 1;
const EDGE_RISING: u32 = 1;
const LEVEL_HIGH: u32 = 4;
/// The 16550's input clock: the PC's 1.8432 MHz, which makes 115200 baud divisor 1.
const UART_CLOCK: u32 = 1_843_200;

#[derive(Debug, Error)]
pub enum FdtError {
    #[error("writing the device tree: {0}")]
    Write(#[from] vm_fdt::Error),
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("the device tree is {size} bytes, more than the {max} arm64 Linux accepts")]
    TooLarge { size: usize, max: u64 },
}

/// Where the GIC's frames are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GicLayout {
    /// Distributor, as (base, size).
    pub dist: (u64, u64),
    /// All redistributors, as one (base, size) region.
    pub redist: (u64, u64),
    /// The ITS, as (base, size).
    pub its: (u64, u64),
}

/// Everything the device tree describes.
#[derive(Debug, Clone)]
pub struct DeviceTree<'a> {
    /// Each vCPU's MPIDR affinity (Aff2..Aff0), in vCPU order.
    pub cpus: Vec<u64>,
    /// RAM as (base, size) ranges.
    pub memory: Vec<(u64, u64)>,
    pub cmdline: &'a str,
    /// The initramfs as `[start, end)`.
    pub initrd: Option<(u64, u64)>,
    pub gic: GicLayout,
    /// The UART as (base, size) and its SPI.
    pub uart: ((u64, u64), u32),
    /// The pvpanic device's registers, as (base, size).
    pub pvpanic: (u64, u64),
    /// Entropy for the guest's RNG before its own sources are ready.
    pub rng_seed: [u8; 32],
}

fn reg(range: (u64, u64)) -> [u64; 2] {
    [range.0, range.1]
}

impl DeviceTree<'_> {
    /// The flattened device tree blob.
    pub fn build(&self) -> Result<Vec<u8>, FdtError> {
        if self.cmdline.contains('\0') {
            return Err(FdtError::CmdlineNul);
        }
        let mut w = FdtWriter::new()?;
        let root = w.begin_node("")?;
        w.property_string("compatible", "linux,dummy-virt")?;
        w.property_string("model", "granule")?;
        w.property_u32("#address-cells", 2)?;
        w.property_u32("#size-cells", 2)?;
        w.property_u32("interrupt-parent", GIC_PHANDLE)?;
        self.chosen(&mut w)?;
        for &(base, size) in &self.memory {
            let n = w.begin_node(&format!("memory@{base:x}"))?;
            w.property_string("device_type", "memory")?;
            w.property_array_u64("reg", &[base, size])?;
            w.end_node(n)?;
        }
        self.cpus(&mut w)?;
        psci(&mut w)?;
        self.gic(&mut w)?;
        timer(&mut w)?;
        self.uart(&mut w)?;
        let (base, size) = self.pvpanic;
        let n = w.begin_node(&format!("pvpanic@{base:x}"))?;
        w.property_string("compatible", "qemu,pvpanic-mmio")?;
        w.property_array_u64("reg", &[base, size])?;
        w.end_node(n)?;
        w.end_node(root)?;
        let blob = w.finish()?;
        if blob.len() as u64 > super::layout::FDT_MAX {
            return Err(FdtError::TooLarge {
                size: blob.len(),
                max: super::layout::FDT_MAX,
            });
        }
        Ok(blob)
    }

    fn chosen(&self, w: &mut FdtWriter) -> Result<(), FdtError> {
        let n = w.begin_node("chosen")?;
        w.property_string("bootargs", self.cmdline)?;
        w.property_string("stdout-path", &format!("/serial@{:x}", self.uart.0 .0))?;
        if let Some((start, end)) = self.initrd {
            w.property_u64("linux,initrd-start", start)?;
            w.property_u64("linux,initrd-end", end)?;
        }
        w.property("rng-seed", &self.rng_seed)?;
        w.end_node(n)?;
        Ok(())
    }

    fn cpus(&self, w: &mut FdtWriter) -> Result<(), FdtError> {
        let n = w.begin_node("cpus")?;
        w.property_u32("#address-cells", 1)?;
        w.property_u32("#size-cells", 0)?;
        for &mpidr in &self.cpus {
            // Aff2..Aff0 fit the one address cell.
            let id = (mpidr & 0xff_ffff) as u32;
            let c = w.begin_node(&format!("cpu@{id:x}"))?;
            w.property_string("device_type", "cpu")?;
            w.property_string("compatible", "arm,arm-v8")?;
            w.property_string("enable-method", "psci")?;
            w.property_u32("reg", id)?;
            w.end_node(c)?;
        }
        w.end_node(n)?;
        Ok(())
    }

    fn gic(&self, w: &mut FdtWriter) -> Result<(), FdtError> {
        let g = self.gic;
        let n = w.begin_node(&format!("intc@{:x}", g.dist.0))?;
        w.property_string("compatible", "arm,gic-v3")?;
        w.property_null("interrupt-controller")?;
        w.property_u32("#interrupt-cells", 3)?;
        w.property_u32("#redistributor-regions", 1)?;
        let mut regs = reg(g.dist).to_vec();
        regs.extend(reg(g.redist));
        w.property_array_u64("reg", &regs)?;
        w.property_array_u32("interrupts", &[PPI, GIC_MAINTENANCE_PPI, LEVEL_HIGH])?;
        w.property_u32("phandle", GIC_PHANDLE)?;
        // The ITS is a child in the GIC's address space, which is the root's.
        w.property_u32("#address-cells", 2)?;
        w.property_u32("#size-cells", 2)?;
        w.property_null("ranges")?;
        let its = w.begin_node(&format!("msi-controller@{:x}", g.its.0))?;
        w.property_string("compatible", "arm,gic-v3-its")?;
        w.property_null("msi-controller")?;
        w.property_u32("#msi-cells", 1)?;
        w.property_array_u64("reg", &reg(g.its))?;
        w.property_u32("phandle", ITS_PHANDLE)?;
        w.end_node(its)?;
        w.end_node(n)?;
        Ok(())
    }

    fn uart(&self, w: &mut FdtWriter) -> Result<(), FdtError> {
        let ((base, size), spi) = self.uart;
        let n = w.begin_node(&format!("serial@{base:x}"))?;
        w.property_string("compatible", "ns16550a")?;
        w.property_array_u64("reg", &[base, size])?;
        w.property_u32("clock-frequency", UART_CLOCK)?;
        // Edge: the UART's interrupt reaches KVM through an irqfd, which pulses it.
        w.property_array_u32("interrupts", &[SPI, spi, EDGE_RISING])?;
        w.end_node(n)?;
        Ok(())
    }
}

/// KVM's in-kernel PSCI (1.x, reached through HVC): CPU_ON for secondary vCPUs,
/// SYSTEM_OFF and SYSTEM_RESET for poweroff and reboot.
fn psci(w: &mut FdtWriter) -> Result<(), FdtError> {
    let n = w.begin_node("psci")?;
    w.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    w.property_string("method", "hvc")?;
    w.end_node(n)?;
    Ok(())
}

fn timer(w: &mut FdtWriter) -> Result<(), FdtError> {
    let n = w.begin_node("timer")?;
    w.property_string("compatible", "arm,armv8-timer")?;
    w.property_null("always-on")?;
    let cells: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|&ppi| [PPI, ppi, LEVEL_HIGH])
        .collect();
    w.property_array_u32("interrupts", &cells)?;
    w.end_node(n)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::layout::{
        GIC_DIST, GIC_ITS, GIC_REDIST, PVPANIC, PVPANIC_REG_LEN, UART, UART_SPI,
    };
    use super::*;

    fn tree(cmdline: &str) -> DeviceTree<'_> {
        DeviceTree {
            cpus: vec![0, 1],
            memory: vec![(0x4000_0000, 0x1000_0000), (0x8000_0000, 0x4000_0000)],
            cmdline,
            initrd: Some((0x4800_0000, 0x4880_0000)),
            gic: GicLayout {
                dist: GIC_DIST,
                redist: GIC_REDIST,
                its: GIC_ITS,
            },
            uart: (UART, UART_SPI),
            pvpanic: (PVPANIC.0, PVPANIC_REG_LEN),
            rng_seed: [7; 32],
        }
    }

    /// `dtc` decompiles the blob without a warning, and the source says what granule
    /// meant: the device-tree compiler is the reference for what a kernel will accept.
    /// Run where CI installs dtc (the x86 host); the arm64 bed, which runs this crate's
    /// tests too, has no dtc, and the blob is the same bytes there.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn dtc_decompiles_the_tree_without_a_warning() {
        let blob = tree("console=ttyS0 panic=-1").build().unwrap();
        let dir = std::env::temp_dir().join(format!("granule-fdt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("granule.dtb");
        std::fs::write(&path, &blob).unwrap();
        let out = std::process::Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run dtc ({e}): install device-tree-compiler (resources/packages.sh)")
            });
        std::fs::remove_dir_all(&dir).ok();
        let (dts, err) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{err}");
        assert!(err.trim().is_empty(), "dtc warned:\n{err}\n{dts}");
        for want in [
            "bootargs = \"console=ttyS0 panic=-1\";",
            "stdout-path = \"/serial@9000000\";",
            "linux,initrd-start = <0x00 0x48000000>;",
            "memory@40000000 {",
            "memory@80000000 {",
            "cpu@1 {",
            "enable-method = \"psci\";",
            "compatible = \"arm,gic-v3\";",
            "compatible = \"arm,gic-v3-its\";",
            "method = \"hvc\";",
            "compatible = \"ns16550a\";",
            "interrupts = <0x00 0x01 0x01>;",
            "compatible = \"arm,armv8-timer\";",
            "compatible = \"qemu,pvpanic-mmio\";",
        ] {
            assert!(dts.contains(want), "no {want:?} in\n{dts}");
        }
    }

    #[test]
    fn a_nul_in_the_command_line_is_refused() {
        assert!(matches!(tree("a\0b").build(), Err(FdtError::CmdlineNul)));
    }
}
