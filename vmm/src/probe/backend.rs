//! Which KVM backend this host runs, and how that was decided.
//!
//! The backend matters for every stage-2 prediction: hardware EPT/NPT ignores the
//! guest's page size, shadow paging (PVM, or VMX/SVM with ept/npt off) is capped by it.

use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Intel VMX with EPT.
    VmxEpt,
    /// Intel VMX with EPT disabled: shadow paging.
    VmxShadow,
    /// AMD SVM with nested page tables.
    SvmNpt,
    /// AMD SVM with NPT disabled: shadow paging.
    SvmShadow,
    /// The kvm_pvm module: KVM without VMX/SVM, shadow paging, CPL0 code emulated.
    PvmShadow,
    /// arm64 KVM in VHE mode (host kernel at EL2).
    Arm64Vhe,
    /// arm64 KVM in nVHE or protected mode (hypervisor at EL2, host at EL1).
    Arm64Nvhe,
    Unknown,
}

impl BackendKind {
    /// Whether guest memory is translated by hardware two-stage paging.
    pub fn hardware_stage2(self) -> bool {
        matches!(
            self,
            Self::VmxEpt | Self::SvmNpt | Self::Arm64Vhe | Self::Arm64Nvhe
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub kind: BackendKind,
    pub hardware_stage2: bool,
    /// The evidence, in words.
    pub detected_by: String,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Module parameters print booleans as Y/N or 1/0.
fn param_on(v: &str) -> bool {
    matches!(v, "Y" | "y" | "1")
}

/// Whether the kernel log holds `needle`: `None` when /dev/kmsg cannot be read.
pub fn kmsg_contains(needle: &str) -> Option<bool> {
    let mut found = false;
    kmsg_each(|msg| {
        found = msg.contains(needle);
        found
    })?;
    Some(found)
}

/// Calls `f` on each kernel log message until it returns true. `None` if /dev/kmsg
/// cannot be opened.
fn kmsg_each(mut f: impl FnMut(&str) -> bool) -> Option<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .ok()?;
    let mut buf = vec![0u8; 8192];
    // Each read returns one record; EAGAIN ends the buffer, EPIPE means records were
    // overwritten while reading (keep going). Bounded in case the log never ends.
    for _ in 0..100_000 {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if f(rec.split_once(';').map_or(&*rec, |(_, m)| m)) {
                    break;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    Some(())
}

/// The arm64 KVM mode line the kernel logs at boot (arch/arm64/kvm/arm.c:
/// "[Protected ][n]VHE mode initialized successfully"), from /dev/kmsg.
fn arm64_mode_from_kmsg() -> Option<String> {
    let mut mode = None;
    kmsg_each(|msg| {
        if let Some(i) = msg.find("VHE mode initialized successfully") {
            mode = Some(msg[..i + 3].trim().to_string());
        }
        mode.is_some()
    })?;
    mode
}

/// Decides from facts (testable without the files). `kmsg_mode` is the arm64 mode the
/// kernel logged, when the log could be read.
pub fn classify(
    arch: &str,
    module_loaded: impl Fn(&str) -> bool,
    param: impl Fn(&str) -> Option<String>,
    cmdline: &str,
    kmsg_mode: Option<&str>,
) -> Backend {
    let mk = |kind: BackendKind, why: String| Backend {
        kind,
        hardware_stage2: kind.hardware_stage2(),
        detected_by: why,
    };
    if arch == "aarch64" {
        if let Some(logged) = kmsg_mode {
            let nvhe = logged.contains("nVHE");
            let kind = if nvhe {
                BackendKind::Arm64Nvhe
            } else {
                BackendKind::Arm64Vhe
            };
            return mk(
                kind,
                format!("kernel log: \"{logged} mode initialized successfully\""),
            );
        }
        let mode = cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("kvm-arm.mode="))
            .unwrap_or("");
        return match mode {
            "nvhe" | "protected" => mk(
                BackendKind::Arm64Nvhe,
                format!("kernel command line has kvm-arm.mode={mode}"),
            ),
            _ => mk(
                BackendKind::Arm64Vhe,
                "kernel log unreadable and kvm-arm.mode not set on the command line: KVM uses VHE where the CPU has it".into(),
            ),
        };
    }
    if module_loaded("kvm_pvm") {
        return mk(
            BackendKind::PvmShadow,
            "module kvm_pvm is loaded (/sys/module/kvm_pvm): KVM without VMX/SVM, shadow paging"
                .into(),
        );
    }
    if module_loaded("kvm_intel") {
        let ept = param("kvm_intel/parameters/ept").unwrap_or_default();
        return if param_on(&ept) {
            mk(BackendKind::VmxEpt, "kvm_intel loaded with ept=Y".into())
        } else {
            mk(
                BackendKind::VmxShadow,
                format!("kvm_intel loaded with ept={ept}"),
            )
        };
    }
    if module_loaded("kvm_amd") {
        let npt = param("kvm_amd/parameters/npt").unwrap_or_default();
        return if param_on(&npt) {
            mk(BackendKind::SvmNpt, "kvm_amd loaded with npt=1".into())
        } else {
            mk(
                BackendKind::SvmShadow,
                format!("kvm_amd loaded with npt={npt}"),
            )
        };
    }
    mk(
        BackendKind::Unknown,
        "none of kvm_pvm, kvm_intel, kvm_amd is loaded (KVM may be built in)".into(),
    )
}

impl Backend {
    /// This host's backend.
    pub fn detect() -> Self {
        detect()
    }
}

pub fn detect() -> Backend {
    let cmdline = read("/proc/cmdline").unwrap_or_default();
    let arch = std::env::consts::ARCH;
    let kmsg = if arch == "aarch64" {
        arm64_mode_from_kmsg()
    } else {
        None
    };
    classify(
        arch,
        |m| Path::new("/sys/module").join(m).exists(),
        |p| read(&format!("/sys/module/{p}")),
        &cmdline,
        kmsg.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x86(modules: &[&str], params: &[(&str, &str)]) -> BackendKind {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        classify(
            "x86_64",
            |m| modules.contains(&m),
            |p| params.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone()),
            "",
            None,
        )
        .kind
    }

    #[test]
    fn x86_backends() {
        assert_eq!(x86(&["kvm", "kvm_pvm"], &[]), BackendKind::PvmShadow);
        assert_eq!(
            x86(&["kvm_intel"], &[("kvm_intel/parameters/ept", "Y")]),
            BackendKind::VmxEpt
        );
        assert_eq!(
            x86(&["kvm_intel"], &[("kvm_intel/parameters/ept", "N")]),
            BackendKind::VmxShadow
        );
        assert_eq!(
            x86(&["kvm_amd"], &[("kvm_amd/parameters/npt", "1")]),
            BackendKind::SvmNpt
        );
        assert_eq!(
            x86(&["kvm_amd"], &[("kvm_amd/parameters/npt", "0")]),
            BackendKind::SvmShadow
        );
        assert_eq!(x86(&["kvm"], &[]), BackendKind::Unknown);
    }

    #[test]
    fn arm64_mode_comes_from_the_command_line() {
        let k = |c: &str| classify("aarch64", |_| false, |_| None, c, None).kind;
        assert_eq!(k("console=ttyAMA0"), BackendKind::Arm64Vhe);
        assert_eq!(
            k("console=ttyAMA0 kvm-arm.mode=nvhe"),
            BackendKind::Arm64Nvhe
        );
        assert_eq!(k("kvm-arm.mode=protected"), BackendKind::Arm64Nvhe);
        // The kernel's own log line wins over the command line.
        let logged = |m: &str| classify("aarch64", |_| false, |_| None, "", Some(m)).kind;
        assert_eq!(logged("kvm [1]: nVHE"), BackendKind::Arm64Nvhe);
        assert_eq!(logged("kvm [1]: Protected nVHE"), BackendKind::Arm64Nvhe);
        assert_eq!(logged("kvm [1]: VHE"), BackendKind::Arm64Vhe);
        assert!(BackendKind::Arm64Vhe.hardware_stage2());
        assert!(!BackendKind::PvmShadow.hardware_stage2());
    }
}
