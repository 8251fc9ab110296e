//! A guest hammering devices (serial writes, configuration reads of an absent PCI
//! function on x86, writes and reads of an address nothing backs) costs the host
//! bounded memory and a bounded number of log lines, even at debug level: ten times
//! the traffic gives the same peak RSS and the same log, and every serial byte arrives.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

/// Rounds in the smaller run; the larger run does ten times as many. Each round is a
/// handful of exits, which cost far more in the emulated arm64 bed than on this host.
const ROUNDS: u32 = if cfg!(target_arch = "x86_64") {
    10_000
} else {
    2_000
};

/// What one `run hammer` cost (it must succeed): (stdout, stderr lines, peak RSS in KiB).
// The child is reaped by wait4, which std's wait cannot replace: it also gives the
// child's peak RSS.
#[allow(clippy::zombie_processes)]
fn hammer(rounds: u32) -> (String, usize, i64) {
    let mut child = std::process::Command::new(common::granule_bin())
        .args(["run", "hammer", "--count", &rounds.to_string(), "-m", "64M"])
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start the granule binary");
    let drain = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; zeroed is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child, writing into the two locals above.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage);
        }
        if start.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("granule run hammer --count {rounds} still running after 600 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(!err.contains("panicked"), "{err}");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    assert_eq!(code, 0, "{err}");
    (out, err.lines().count(), usage.ru_maxrss)
}

#[test]
fn ten_times_the_device_traffic_costs_no_more_memory_or_log_lines() {
    if !common::kvm_available(
        "guest_limits_ten_times_the_device_traffic_costs_no_more_memory_or_log_lines",
    ) {
        return;
    }
    let (small_out, small_lines, small_rss) = hammer(ROUNDS);
    let (big_out, big_lines, big_rss) = hammer(10 * ROUNDS);
    for (rounds, out) in [(ROUNDS, &small_out), (10 * ROUNDS, &big_out)] {
        assert_eq!(
            out.len(),
            rounds as usize,
            "every serial byte arrives, once"
        );
        assert!(out.bytes().all(|b| b == b'.'), "only the guest's bytes");
    }
    assert!(
        big_lines <= small_lines + 2,
        "log lines grow with guest traffic: {small_lines} for {ROUNDS} rounds, {big_lines} for ten times as many"
    );
    assert!(
        big_rss <= small_rss + 2048,
        "peak RSS grows with guest traffic: {small_rss} KiB for {ROUNDS} rounds, {big_rss} KiB for ten times as many"
    );
}
