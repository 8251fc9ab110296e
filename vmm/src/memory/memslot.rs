//! The one place granule tells KVM where guest memory is: KVM_SET_USER_MEMORY_REGION
//! for RAM zones, device memory and the stress run's aliased slots alike.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;

/// Adds, moves (same slot, new `gpa`) or, with `size` 0, deletes memslot `slot`.
///
/// # Safety
/// Unless `size` is 0, `hva..hva + size` must be a live mapping of the process that
/// stays mapped until this memslot is deleted or the VM is gone.
pub unsafe fn set_memslot(
    vm: &VmFd,
    slot: u32,
    gpa: u64,
    size: u64,
    hva: u64,
) -> Result<(), kvm_ioctls::Error> {
    let region = kvm_userspace_memory_region {
        slot,
        flags: 0,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: hva,
    };
    // SAFETY: the caller guarantees the host range, as this function's contract says.
    unsafe { vm.set_user_memory_region(region) }
}
