//! `granule run --kernel` with bzImages whose payload is each of the kernel's seven
//! compressions (tests/fixtures/kernel-payloads, made by the kernel build's own tools),
//! through the real binary: decompressed on the host and loaded as the ELF inside, the
//! cache used and repaired, bad payloads and options refused clearly. The payload's
//! vmlinux is a synthetic one (this host's KVM cannot run Linux; the x86 bed boots the
//! Debian kernel this way, tests/bed/tests/x86_64.rs).
#![cfg(target_arch = "x86_64")]

mod common;

use common::{granule, Scratch};

const FIXTURES: [(&str, &str); 7] = [
    ("gzip", "vmlinux.gz"),
    ("bzip2", "vmlinux.bz2"),
    ("lzma", "vmlinux.lzma"),
    ("xz", "vmlinux.xz"),
    ("lzo", "vmlinux.lzo"),
    ("lz4", "vmlinux.lz4"),
    ("zstd", "vmlinux.zst"),
];
/// The fixtures' vmlinux size.
const VMLINUX_BYTES: u64 = 282_624;

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/kernel-payloads")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A bzImage around `payload`: one setup sector and the boot sector, the payload right
/// at the protected-mode kernel's start, as the header's payload fields say.
fn bzimage(payload: &[u8]) -> Vec<u8> {
    let mut b = common::minimal_bzimage();
    b.truncate(1024);
    let len = payload.len() as u32;
    b[0x1f4..0x1f8].copy_from_slice(&len.div_ceil(16).to_le_bytes());
    b[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
    b[0x24c..0x250].copy_from_slice(&len.to_le_bytes());
    b[0x211] = 1; // LOADED_HIGH
    b[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    b[0x260..0x264].copy_from_slice(&(64u32 << 20).to_le_bytes());
    b.extend_from_slice(payload);
    b.resize(1024 + len.div_ceil(16) as usize * 16, 0);
    b
}

/// Boots `kernel` briefly with `extra` options and the cache in `cache_home`; returns
/// (exit code, stderr, the summary's `decompression`).
fn boot(
    dir: &Scratch,
    kernel: &str,
    cache_home: &str,
    extra: &[&str],
) -> (i32, String, serde_json::Value) {
    let json = dir.file("summary.json");
    let _ = std::fs::remove_file(&json);
    let mut args = vec![
        "run",
        "--kernel",
        kernel,
        "-m",
        "256M",
        "--timeout",
        "2",
        "--quiet",
        "--json",
        &json,
    ];
    args.extend_from_slice(extra);
    let out = std::process::Command::new(common::granule_bin())
        .args(&args)
        .env("RUST_LOG", "warn")
        .env("XDG_CACHE_HOME", cache_home)
        .output()
        .expect("cannot start granule");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| v["decompression"].clone())
        .unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), err, summary)
}

#[test]
fn every_compression_is_decompressed_on_the_host_and_loaded() {
    if !common::kvm_available("kernel_decompress_every_compression") {
        return;
    }
    let dir = Scratch::new("decompress-formats");
    let cache = dir.file("cache");
    for (format, file) in FIXTURES {
        let kernel = dir.file(&format!("bzImage-{format}"));
        std::fs::write(&kernel, bzimage(&fixture(file))).unwrap();
        let (code, err, d) = boot(&dir, &kernel, &cache, &["--kernel-cache", "off"]);
        // The synthetic vmlinux is no kernel: the guest crashes or runs out its time.
        assert!(code == 3 || code == 5, "{format}: exit {code}: {err}");
        assert_eq!(d["by"], "host", "{format}: {d} {err}");
        assert_eq!(d["compression"], format, "{format}: {d}");
        assert_eq!(d["vmlinux_bytes"], VMLINUX_BYTES, "{format}: {d}");
        assert_eq!(d["cache"]["kind"], "off", "{format}: {d}");
        assert!(!err.contains("WARN"), "{format}: {err}");
    }
}

#[test]
fn damaged_or_truncated_payloads_are_an_error_naming_the_compression() {
    if !common::kvm_available("kernel_decompress_damaged_payloads") {
        return;
    }
    let dir = Scratch::new("decompress-damaged");
    let cache = dir.file("cache");
    for (format, file) in FIXTURES {
        let good = fixture(file);
        let mut damaged = good.clone();
        let at = damaged.len() / 3;
        damaged[at..at + 64].fill(0xff);
        let mut cut = good[..good.len() / 2].to_vec();
        cut.extend_from_slice(&good[good.len() - 4..]);
        for (what, payload) in [("damaged", damaged), ("truncated", cut)] {
            let kernel = dir.file(&format!("bzImage-{format}-{what}"));
            std::fs::write(&kernel, bzimage(&payload)).unwrap();
            let (code, err, _) = boot(&dir, &kernel, &cache, &[]);
            assert_eq!(code, 1, "{format} {what}: {err}");
            assert!(
                err.contains(&format!("the {format} data of the compressed kernel"))
                    && err.contains(&kernel)
                    && err.contains("--kernel-decompress guest"),
                "{format} {what}: {err}"
            );
        }
    }
}

#[test]
fn the_cache_serves_the_next_boot_and_replaces_a_damaged_entry() {
    if !common::kvm_available("kernel_decompress_cache") {
        return;
    }
    let dir = Scratch::new("decompress-cache");
    let cache = dir.file("xdg");
    let kernel = dir.file("bzImage");
    std::fs::write(&kernel, bzimage(&fixture("vmlinux.xz"))).unwrap();
    let (_, err, d) = boot(&dir, &kernel, &cache, &[]);
    assert_eq!(d["cache"]["kind"], "stored", "{d} {err}");
    let entries_dir = std::path::Path::new(&cache).join("granule/kernels");
    let entries: Vec<_> = std::fs::read_dir(&entries_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "vmlinux"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (_, err, d) = boot(&dir, &kernel, &cache, &[]);
    assert_eq!(d["cache"]["kind"], "hit", "{d} {err}");
    assert_eq!(d["vmlinux_bytes"], VMLINUX_BYTES);
    // A half-written entry (as a crash or a full disk leaves it): noticed, replaced.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&entries[0])
        .unwrap();
    f.set_len(1000).unwrap();
    let (code, err, d) = boot(&dir, &kernel, &cache, &[]);
    assert!(code == 3 || code == 5, "exit {code}: {err}");
    assert!(
        err.contains("is damaged") && err.contains("decompressing the kernel again"),
        "{err}"
    );
    assert_eq!(d["cache"]["kind"], "stored", "{d}");
    let (_, err, d) = boot(&dir, &kernel, &cache, &[]);
    assert_eq!(d["cache"]["kind"], "hit", "{d} {err}");
    // A changed bzImage is another entry, never the old vmlinux.
    let mut other = bzimage(&fixture("vmlinux.gz"));
    other.push(0);
    std::fs::write(&kernel, &other).unwrap();
    let (_, err, d) = boot(&dir, &kernel, &cache, &[]);
    assert_eq!(d["cache"]["kind"], "stored", "{d} {err}");
    assert_eq!(d["compression"], "gzip", "{d}");
}

/// A bzImage hashed once, then unchanged, is not hashed again (its hash is stamped
/// with the file's version); the same bytes rewritten, its modification time put
/// back, are a new version: hashed again, never served the old entry by its stamp.
#[test]
fn an_unchanged_bzimage_is_recognised_by_its_stamp_and_a_rewritten_one_is_not() {
    if !common::kvm_available("kernel_decompress_stamp") {
        return;
    }
    let dir = Scratch::new("decompress-stamp");
    let cache = dir.file("xdg");
    let kernel = dir.file("bzImage");
    // Two bzImages of one size (zero padding after the payload is allowed).
    let mut image = bzimage(&fixture("vmlinux.xz"));
    let mut other = bzimage(&fixture("vmlinux.gz"));
    let size = image.len().max(other.len());
    image.resize(size, 0);
    other.resize(size, 0);
    std::fs::write(&kernel, &image).unwrap();
    // Hashed only once the file has been unchanged for a second (see the stamp rules).
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (_, err, d) = boot(&dir, &kernel, &cache, &[]);
    assert_eq!(d["cache"]["kind"], "stored", "{d} {err}");
    let sources = std::path::Path::new(&cache).join("granule/kernels/sources");
    assert_eq!(std::fs::read_dir(&sources).unwrap().count(), 1);
    let (_, err, d) = boot(&dir, &kernel, &cache, &[]);
    assert_eq!(d["cache"]["kind"], "hit", "{d} {err}");
    assert_eq!(d["vmlinux_bytes"], VMLINUX_BYTES);
    // Same size, other bytes, the old modification time restored: only the change
    // time tells, and it must.
    let mtime = std::fs::metadata(&kernel).unwrap().modified().unwrap();
    std::fs::write(&kernel, &other).unwrap();
    let f = std::fs::File::options().write(true).open(&kernel).unwrap();
    f.set_modified(mtime).unwrap();
    let (_, err, d) = boot(&dir, &kernel, &cache, &[]);
    assert_eq!(d["compression"], "gzip", "{d} {err}");
    assert_eq!(d["cache"]["kind"], "stored", "{d} {err}");
}

#[test]
fn a_payload_granule_cannot_use_is_left_to_the_guest_with_the_reason() {
    if !common::kvm_available("kernel_decompress_fallback") {
        return;
    }
    let dir = Scratch::new("decompress-fallback");
    let cache = dir.file("cache");
    // An unknown compression, and a compressed file that is not an ELF kernel.
    let mut text = b"not a kernel at all, just text".repeat(100);
    let n = text.len() as u32;
    let mut gz = Vec::new();
    {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
        e.write_all(&text).unwrap();
        e.finish().unwrap();
    }
    text.extend_from_slice(&n.to_le_bytes());
    for (what, payload, reason) in [
        ("unknown", text, "no compression the kernel supports"),
        ("not-elf", gz, "not an x86_64 ELF kernel"),
    ] {
        let kernel = dir.file(&format!("bzImage-{what}"));
        std::fs::write(&kernel, bzimage(&payload)).unwrap();
        let (_, err, d) = boot(&dir, &kernel, &cache, &[]);
        assert_eq!(d["by"], "guest", "{what}: {d} {err}");
        assert!(
            d["reason"].as_str().unwrap().contains(reason),
            "{what}: {d}"
        );
        assert!(
            err.contains("decompressed in the guest") && err.contains(reason),
            "{what}: {err}"
        );
    }
    // Asked for: no warning.
    let kernel = dir.file("bzImage-zstd");
    std::fs::write(&kernel, bzimage(&fixture("vmlinux.zst"))).unwrap();
    let (_, err, d) = boot(&dir, &kernel, &cache, &["--kernel-decompress", "guest"]);
    assert_eq!(d["by"], "guest", "{d}");
    assert!(!err.contains("WARN"), "{err}");
}

#[test]
fn decompression_options_that_do_not_apply_are_usage_errors() {
    if !common::kvm_available("kernel_decompress_options") {
        return;
    }
    let dir = Scratch::new("decompress-options");
    let bz = dir.file("bzImage");
    std::fs::write(&bz, bzimage(&fixture("vmlinux.gz"))).unwrap();
    let elf = dir.file("vmlinux");
    let mut v = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&fixture("vmlinux.gz")[..]),
        &mut v,
    )
    .unwrap();
    std::fs::write(&elf, v).unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["run", "--kernel", &elf, "--kernel-decompress", "host"],
            "--kernel-decompress does not apply to kernel",
        ),
        (
            &["run", "--kernel", &elf, "--kernel-cache", "off"],
            "--kernel-cache does not apply to kernel",
        ),
        (
            &[
                "run",
                "--kernel",
                &bz,
                "--kernel-decompress",
                "guest",
                "--kernel-cache",
                "on",
            ],
            "not with --kernel-decompress guest",
        ),
        (
            &["run", "hello", "--kernel-cache", "off"],
            "cannot be used with",
        ),
        (&["run", "--kernel-decompress", "host"], "--kernel"),
    ];
    for (args, want) in cases {
        let (code, _, err) = granule(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let (code, _, err) = granule(&["run", "--kernel", &bz, "--kernel-decompress", "sideways"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("host") && err.contains("guest"), "{err}");
}

#[test]
fn without_a_cache_directory_the_kernel_is_decompressed_and_not_stored() {
    if !common::kvm_available("kernel_decompress_no_cache_directory") {
        return;
    }
    let dir = Scratch::new("decompress-nohome");
    let kernel = dir.file("bzImage");
    std::fs::write(&kernel, bzimage(&fixture("vmlinux.lz4"))).unwrap();
    let json = dir.file("summary.json");
    let out = std::process::Command::new(common::granule_bin())
        .args([
            "run",
            "--kernel",
            &kernel,
            "-m",
            "256M",
            "--timeout",
            "2",
            "--quiet",
        ])
        .args(["--json", &json])
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .output()
        .expect("cannot start granule");
    let err = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let d = &v["decompression"];
    assert_eq!(d["by"], "host", "{d} {err}");
    assert_eq!(d["cache"]["kind"], "not_stored", "{d}");
    assert!(d["cache"]["why"].as_str().unwrap().contains("HOME"), "{d}");
}
