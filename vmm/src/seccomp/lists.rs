//! The system calls each kind of granule thread may make once its filter is in place,
//! found by tracing granule's real runs (built-in programs, stress, Linux boots with and
//! without passthrough) on both architectures. Arguments are not filtered.

use super::ThreadKind;

/// Every thread: the Rust runtime (allocator, locks, thread exit), logging to stderr,
/// and the SIGSYS report itself (write, exit_group).
const RUNTIME: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
];

/// vCPU threads: KVM_RUN and register access, device models (eventfds for interrupts,
/// VFIO config space through the device file).
const VCPU: &[i64] = &[
    libc::SYS_ioctl,
    libc::SYS_read,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
];

/// The console writer: the guest's output to granule's stdout.
const CONSOLE_OUT: &[i64] = &[libc::SYS_ppoll];

/// The thread that built the VM and supervises it: the event loop, stdin, signals,
/// memslot changes, reports read from /proc and KVM's stats, result files, and the
/// threads it starts later (a stress repeat's fresh VM; new threads inherit this list).
const VMM: &[i64] = &[
    libc::SYS_ioctl,
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_memfd_create,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_rt_sigaction,
    libc::SYS_kill,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_prctl,
    // A thread started later installs its own, narrower filter.
    libc::SYS_seccomp,
    libc::SYS_getrandom,
    libc::SYS_prlimit64,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_sched_setaffinity,
    libc::SYS_mlock,
    libc::SYS_munlock,
    libc::SYS_mbind,
    libc::SYS_get_mempolicy,
];

/// x86_64's older calls, which glibc and std still use there (arm64 has only the *at
/// and p* forms above).
#[cfg(target_arch = "x86_64")]
const VMM_X86: &[i64] = &[
    libc::SYS_open,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_rename,
    libc::SYS_unlink,
    libc::SYS_readlink,
    libc::SYS_poll,
    libc::SYS_select,
    libc::SYS_epoll_wait,
    libc::SYS_dup2,
    libc::SYS_arch_prctl,
];
#[cfg(not(target_arch = "x86_64"))]
const VMM_X86: &[i64] = &[];

#[cfg(target_arch = "x86_64")]
const POLL_X86: &[i64] = &[libc::SYS_poll];
#[cfg(not(target_arch = "x86_64"))]
const POLL_X86: &[i64] = &[];

/// The allow-list of `kind`, sorted, without repeats.
pub fn allowed(kind: ThreadKind) -> Vec<i64> {
    let parts: &[&[i64]] = match kind {
        ThreadKind::Vmm => &[RUNTIME, VCPU, CONSOLE_OUT, VMM, VMM_X86],
        ThreadKind::Vcpu => &[RUNTIME, VCPU],
        ThreadKind::ConsoleOut => &[RUNTIME, CONSOLE_OUT, POLL_X86],
    };
    let mut all: Vec<i64> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_keeps_the_runtime_and_the_sigsys_exit() {
        for kind in [ThreadKind::Vmm, ThreadKind::Vcpu, ThreadKind::ConsoleOut] {
            let list = allowed(kind);
            assert!(RUNTIME.iter().all(|s| list.contains(s)), "{kind:?}");
            assert!(list.contains(&libc::SYS_exit_group), "{kind:?}");
        }
    }

    #[test]
    fn vcpu_and_console_threads_cannot_open_files_or_start_processes() {
        for kind in [ThreadKind::Vcpu, ThreadKind::ConsoleOut] {
            let list = allowed(kind);
            for s in [
                libc::SYS_openat,
                libc::SYS_execve,
                libc::SYS_socket,
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_ptrace,
            ] {
                assert!(!list.contains(&s), "{kind:?} allows {s}");
            }
        }
        // A thread the VMM thread starts later inherits its list, so a vCPU's calls
        // must all be in it too.
        let vmm = allowed(ThreadKind::Vmm);
        assert!(allowed(ThreadKind::Vcpu).iter().all(|s| vmm.contains(s)));
        assert!(!vmm.contains(&libc::SYS_execve) && !vmm.contains(&libc::SYS_socket));
    }
}
