//! Shared by the host-KVM integration tests.
//!
//! Skip policy: without /dev/kvm a test prints why and passes, unless
//! GRANULE_REQUIRE_KVM=1 (set by ci/test.sh whenever /dev/kvm exists), which turns the
//! skip into a failure. Each test that ran appends its name to GRANULE_KVM_TESTS_LOG so
//! ci/test.sh can fail when no KVM test ran at all.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use granule_vmm::kvm::KvmHandle;

/// Whether the test should go ahead on KVM; see the module doc.
pub fn kvm_available(test: &str) -> bool {
    if !Path::new("/dev/kvm").exists() {
        if std::env::var("GRANULE_REQUIRE_KVM").as_deref() == Ok("1") {
            panic!("{test}: GRANULE_REQUIRE_KVM=1 but /dev/kvm does not exist");
        }
        eprintln!("SKIP {test}: /dev/kvm does not exist on this machine");
        return false;
    }
    if let Ok(log) = std::env::var("GRANULE_KVM_TESTS_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            // One write per line: O_APPEND keeps it whole when tests run in parallel.
            let _ = f.write_all(format!("{test}\n").as_bytes());
        }
    }
    true
}

/// Opens KVM; a host with /dev/kvm that cannot be opened is a test failure.
pub fn kvm() -> KvmHandle {
    KvmHandle::open().expect("/dev/kvm exists but cannot be used")
}

/// Runs the `granule` binary with `args`; returns (exit code, stdout, stderr). The binary
/// is the one cargo built, or $GRANULE_BIN (inside a test bed, where cargo's path is
/// meaningless).
pub fn granule(args: &[&str]) -> (i32, String, String) {
    granule_logging(args, "warn")
}

/// The `granule` binary: the one cargo built, or $GRANULE_BIN inside a test bed.
pub fn granule_bin() -> String {
    std::env::var("GRANULE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_granule").to_string())
}

/// The cache directory the tests' granule uses for decompressed kernels, instead of
/// the user's own (shared by the tests: the cache is safe for concurrent runs).
pub fn test_cache_home() -> std::path::PathBuf {
    std::env::temp_dir().join("granule-test-xdg-cache")
}

/// [`granule`] with `RUST_LOG` set to `level`.
pub fn granule_logging(args: &[&str], level: &str) -> (i32, String, String) {
    let out = std::process::Command::new(granule_bin())
        .args(args)
        .env("RUST_LOG", level)
        .env("XDG_CACHE_HOME", test_cache_home())
        .output()
        .expect("cannot start the granule binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bytes of address space this process has mapped, from /proc/self/maps.
pub fn mapped_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
        })
        .sum()
}

/// A fresh scratch directory for one test, removed on drop.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("granule-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Path of `file` inside the directory, as a string for command lines.
    pub fn file(&self, file: &str) -> String {
        self.0.join(file).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Free pages in the host's hugetlb pool of `size_kib` (0 when there is none).
pub fn free_hugepages(size_kib: u64) -> u64 {
    std::fs::read_to_string(format!(
        "/sys/kernel/mm/hugepages/hugepages-{size_kib}kB/free_hugepages"
    ))
    .map_or(0, |s| s.trim().parse().unwrap_or(0))
}

/// Starts the `granule` binary with `args` (stdin empty, stdout and stderr piped).
pub fn spawn_granule<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Child {
    std::process::Command::new(granule_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .env("XDG_CACHE_HOME", test_cache_home())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start the granule binary")
}

/// Waits for `child` to end within `bound`; (exit code, stdout, stderr). Its output is
/// read meanwhile, so a chatty child cannot block on a full pipe. A child still running
/// after `bound` is killed and the test fails: a hang is a failure, not a wait.
pub fn finish_within(
    mut child: std::process::Child,
    bound: std::time::Duration,
    what: &str,
) -> (i32, String, String) {
    use std::io::Read;
    fn drain<R: Read + Send + 'static>(p: Option<R>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for granule") {
            break status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: granule still running after {bound:?}: a hang");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// The smallest file granule's bzImage checks accept: a setup header (protocol 2.15,
/// relocatable) and 8 KiB of payload. Not a kernel that runs.
pub fn minimal_bzimage() -> Vec<u8> {
    let mut b = vec![0u8; 1024 + 8192];
    b[0x1f1] = 1;
    b[0x1f4..0x1f8].copy_from_slice(&(8192u32 / 16).to_le_bytes());
    b[0x201] = 0x66;
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    b[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
    b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    b
}

pub const POOL_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

/// Sets the 2 MiB pool to at least `pages` and restores the old size on drop.
pub struct PoolGuard {
    old: String,
}

impl PoolGuard {
    pub fn reserve(pages: u64) -> Self {
        let old = std::fs::read_to_string(POOL_2M)
            .expect("2 MiB hugetlb pool")
            .trim()
            .to_string();
        let want = pages.max(old.parse().unwrap_or(0));
        std::fs::write(POOL_2M, want.to_string()).expect("cannot size the 2 MiB pool (needs root)");
        let got: u64 = std::fs::read_to_string(POOL_2M)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            got >= pages,
            "asked for {pages} 2 MiB pages, the kernel gave {got}"
        );
        Self { old }
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let _ = std::fs::write(POOL_2M, &self.old);
    }
}

/// Names of the threads of process `pid` (a number, or "self") now; none once it is gone.
pub fn thread_names(pid: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Threads of this process that are not exiting. A thread's task stays listed in
/// /proc for a moment after `join` returns (the kernel wakes the joiner before it
/// reaps the task), so a plain count right after a join can be one too high. A thread
/// still running or blocked never has `PF_EXITING`, so this count still sees a leak.
pub fn live_threads() -> usize {
    const PF_EXITING: u64 = 0x4;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // Fields after the command name, which may hold spaces or ')': state,
            // ppid, pgrp, session, tty_nr, tpgid, flags.
            let after_comm = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
            let flags = after_comm.split_whitespace().nth(6);
            let flags: u64 = flags.and_then(|f| f.parse().ok()).expect("flags in stat");
            flags & PF_EXITING == 0
        })
        .count()
}

/// A pipe filled to capacity, to hand a child as its stdout or stderr: the child's
/// first write there blocks until the test reads. Returns (read end, write end).
pub fn full_pipe() -> (std::fs::File, std::fs::File) {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array, owned by the Files below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and nothing else owns them.
    let (reader, mut writer) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: fcntl on a pipe fd this test owns; only the status flags change.
    let flags = unsafe { libc::fcntl(fds[1], libc::F_GETFL) };
    // SAFETY: as above.
    unsafe { libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK) };
    while writer.write(&[b'.'; 4096]).is_ok() {}
    // SAFETY: as above: the child gets a blocking pipe, as a shell would give it.
    unsafe { libc::fcntl(fds[1], libc::F_SETFL, flags) };
    (reader, writer)
}
