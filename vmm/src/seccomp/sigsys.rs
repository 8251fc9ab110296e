//! The report of a forbidden system call under `--seccomp on`: the filter traps, and
//! this SIGSYS handler names the thread and the call on stderr and ends granule with
//! exit code 1. It only writes and exits, both allowed on every thread.

use std::sync::OnceLock;

/// Exit code of a forbidden call: granule's own failure.
const EXIT_FORBIDDEN: libc::c_int = 1;

/// Offset of `si_syscall` in `siginfo_t` on 64-bit Linux (signo, errno, code, padding,
/// then `_sigsys { void *call_addr; int syscall; unsigned arch; }`).
const SI_SYSCALL_OFFSET: usize = 24;

/// The outcome of installing the handler (an errno on failure), kept so every later
/// caller sees a failure too.
static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();

/// Installs the handler for the process, once.
pub fn install() -> std::io::Result<()> {
    let outcome = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO signature.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_sigsys as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    });
    outcome.map_err(std::io::Error::from_raw_os_error)
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for SIGSYS from a seccomp trap, and
    // `si_syscall` lies at this offset in it.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<libc::c_int>()
            .read_unaligned()
    };
    let thread = super::installed_kind().map_or("a granule thread", |k| k.name());
    let mut buf = [0u8; 256];
    let mut len = 0;
    for part in [
        "granule: error: seccomp: ".as_bytes(),
        thread.as_bytes(),
        b" made system call ",
        decimal(nr, &mut [0u8; 12]),
        b", which it never needs; stopping (a bug in granule, or a guest exploiting one; \
          --seccomp log lets such calls through and logs them)\n",
    ] {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `buf` outlives the call.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::_exit(EXIT_FORBIDDEN);
    }
}

/// `n` in decimal, in `buf`, without allocating (this runs in a signal handler).
fn decimal(n: libc::c_int, buf: &mut [u8; 12]) -> &[u8] {
    let mut v = i64::from(n).unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// Debug (`--seccomp-probe`): a call no granule thread needs, socket(2). Under `on` it
/// ends granule through the handler; under `log` or `off` it succeeds and is undone.
pub fn forbidden_call() {
    // SAFETY: socket(2) takes no pointers; the descriptor is closed at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals_are_written_without_allocating() {
        assert_eq!(super::decimal(0, &mut [0; 12]), b"0");
        assert_eq!(super::decimal(41, &mut [0; 12]), b"41");
        assert_eq!(super::decimal(-2147483648, &mut [0; 12]), b"-2147483648");
    }
}
