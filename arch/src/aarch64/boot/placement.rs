//! Where an arm64 kernel, its initramfs and its device tree go in the first RAM range:
//! the kernel at the range's 2 MiB-aligned start (plus its text offset), the device
//! tree in the range's last 2 MiB, the initramfs right below the device tree. Keeping
//! the kernel low leaves the rest of RAM in one piece for the guest.

use thiserror::Error;

use super::layout::{FDT_MAX, KERNEL_ALIGN};

const PAGE: u64 = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error(
        "the first RAM range starts at {0:#x}, not on the 2 MiB boundary the arm64 kernel needs"
    )]
    Misaligned(u64),
    #[error("the first RAM range ({ram} bytes at {base:#x}) cannot hold the kernel ({kernel} bytes in memory) and the 2 MiB device tree; give the guest more memory")]
    KernelDoesNotFit { base: u64, ram: u64, kernel: u64 },
    #[error("the initramfs ({size} bytes) does not fit: {room} bytes between the kernel and the device tree; give the guest more memory")]
    InitrdDoesNotFit { size: u64, room: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The 2 MiB-aligned base the Image is loaded at (plus its text offset).
    pub kernel_base: u64,
    pub fdt: u64,
    /// The initramfs as `[start, end)`.
    pub initrd: Option<(u64, u64)>,
}

/// Places a kernel occupying `kernel_span` bytes from the base (text offset and image
/// size) and an initramfs of `initrd_len` bytes in the RAM range `[base, end)`.
pub fn place(
    base: u64,
    end: u64,
    kernel_span: u64,
    initrd_len: Option<u64>,
) -> Result<Placement, PlacementError> {
    if !base.is_multiple_of(KERNEL_ALIGN) {
        return Err(PlacementError::Misaligned(base));
    }
    let too_small = || PlacementError::KernelDoesNotFit {
        base,
        ram: end.saturating_sub(base),
        kernel: kernel_span,
    };
    let kernel_end = base.checked_add(kernel_span).ok_or_else(too_small)?;
    let fdt = end
        .checked_sub(FDT_MAX)
        .filter(|f| *f >= kernel_end)
        .ok_or_else(too_small)?;
    let initrd = match initrd_len {
        None => None,
        Some(len) => {
            let start = fdt
                .checked_sub(len)
                .map(|s| s & !(PAGE - 1))
                .filter(|s| *s >= kernel_end)
                .ok_or(PlacementError::InitrdDoesNotFit {
                    size: len,
                    room: fdt - kernel_end,
                })?;
            Some((start, start + len))
        }
    };
    Ok(Placement {
        kernel_base: base,
        fdt,
        initrd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    #[test]
    fn the_kernel_leads_and_the_device_tree_and_initramfs_close_the_first_range() {
        let p = place(GIB, GIB + 256 * MIB, 45 * MIB, Some(10 * MIB + 5)).unwrap();
        assert_eq!(p.kernel_base, GIB);
        assert_eq!(p.fdt, GIB + 254 * MIB);
        let (start, end) = p.initrd.unwrap();
        assert_eq!(start % PAGE, 0);
        assert_eq!(end - start, 10 * MIB + 5);
        assert!(end <= p.fdt && p.fdt - end < PAGE, "right below the tree");
        assert!(start >= GIB + 45 * MIB);
        let p = place(GIB, GIB + 256 * MIB, 45 * MIB, None).unwrap();
        assert_eq!(p.initrd, None);
    }

    #[test]
    fn what_does_not_fit_says_so() {
        assert_eq!(
            place(GIB, GIB + 64 * MIB, 45 * MIB, Some(20 * MIB)),
            Err(PlacementError::InitrdDoesNotFit {
                size: 20 * MIB,
                room: 17 * MIB
            })
        );
        assert!(matches!(
            place(GIB, GIB + 46 * MIB, 45 * MIB, None),
            Err(PlacementError::KernelDoesNotFit { .. })
        ));
        assert!(matches!(
            place(GIB, GIB + 64 * MIB, u64::MAX, None),
            Err(PlacementError::KernelDoesNotFit { .. })
        ));
        assert_eq!(
            place(GIB + 4096, GIB + 256 * MIB, MIB, None),
            Err(PlacementError::Misaligned(GIB + 4096))
        );
    }
}
