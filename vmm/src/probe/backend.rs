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

/// Decides from facts (testable without the files).
pub fn classify(
    arch: &str,
    module_loaded: impl Fn(&str) -> bool,
    param: impl Fn(&str) -> Option<String>,
    cmdline: &str,
) -> Backend {
    let mk = |kind: BackendKind, why: String| Backend {
        kind,
        hardware_stage2: kind.hardware_stage2(),
        detected_by: why,
    };
    if arch == "aarch64" {
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
                "kvm-arm.mode not set on the kernel command line: KVM uses VHE where the CPU has it (not verifiable from EL0)".into(),
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
    classify(
        std::env::consts::ARCH,
        |m| Path::new("/sys/module").join(m).exists(),
        |p| read(&format!("/sys/module/{p}")),
        &cmdline,
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
        let k = |c: &str| classify("aarch64", |_| false, |_| None, c).kind;
        assert_eq!(k("console=ttyAMA0"), BackendKind::Arm64Vhe);
        assert_eq!(
            k("console=ttyAMA0 kvm-arm.mode=nvhe"),
            BackendKind::Arm64Nvhe
        );
        assert_eq!(k("kvm-arm.mode=protected"), BackendKind::Arm64Nvhe);
        assert!(BackendKind::Arm64Vhe.hardware_stage2());
        assert!(!BackendKind::PvmShadow.hardware_stage2());
    }
}
