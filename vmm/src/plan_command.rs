//! `granule plan`: the predicted stage-2 table for a layout, without a VM.

use serde::Serialize;
use thiserror::Error;

use crate::cli::{ArchArg, GranuleArg, MmuArg, PlanArgs};
use crate::memory::hypothetical::{self, BarConfig};
use crate::memory::layout::LayoutError;
use crate::memory::ZoneConfig;
use crate::probe::{Backend, BackendKind};
use crate::stage2::{self, Granule, PlanError, PlanRange, Target, G1, M2};

#[derive(Debug, Error)]
pub enum PlanCommandError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("--guest-page applies to --mmu shadow only")]
    GuestPageWithoutShadow,
}

#[derive(Debug, Serialize)]
pub struct PlanOutput {
    pub arch: &'static str,
    pub target: Target,
    pub zones: Vec<ZoneConfig>,
    pub bars: Vec<BarConfig>,
    pub plan: Vec<PlanRange>,
}

/// The MMU to plan for, from the arguments and (for this host's arch) the host.
pub fn target(a: &PlanArgs) -> Result<(&'static str, Target), PlanCommandError> {
    let host_arch = if cfg!(target_arch = "aarch64") {
        ArchArg::Aarch64
    } else {
        ArchArg::X86_64
    };
    let arch = a.arch.unwrap_or(host_arch);
    if arch == ArchArg::Aarch64 {
        let granule = match a.granule {
            GranuleArg::G4k => Granule::G4k,
            GranuleArg::G16k => Granule::G16k,
            GranuleArg::G64k => Granule::G64k,
        };
        return Ok(("aarch64", Target::Arm64 { granule }));
    }
    let on_host = arch == host_arch;
    let mmu = a.mmu.unwrap_or_else(|| {
        let shadow = on_host
            && !matches!(
                Backend::detect().kind,
                BackendKind::VmxEpt | BackendKind::SvmNpt
            );
        if shadow {
            MmuArg::Shadow
        } else {
            MmuArg::Tdp
        }
    });
    let max_leaf = a
        .max_leaf
        .unwrap_or(if !on_host || crate::probe::host_has_1g_pages() {
            G1
        } else {
            M2
        });
    Ok((
        "x86_64",
        match mmu {
            MmuArg::Tdp => Target::X86Tdp { max_leaf },
            MmuArg::Shadow => Target::X86Shadow {
                max_leaf,
                guest_page: a.guest_page,
            },
        },
    ))
}

pub fn run(a: &PlanArgs) -> Result<PlanOutput, PlanCommandError> {
    let (arch, target) = target(a)?;
    if a.mmu == Some(MmuArg::Tdp) && a.guest_page != M2 {
        return Err(PlanCommandError::GuestPageWithoutShadow);
    }
    // The VM's own address map: x86 keeps RAM out of the 32-bit hole, arm64 RAM
    // starts at 1 GiB as on QEMU's `virt`.
    let map = match target {
        Target::Arm64 { .. } => &granule_arch::address_map::AARCH64,
        _ => &granule_arch::address_map::X86_64,
    };
    let (base, holes) = (map.ram_base, map.ram_holes.to_vec());
    // Device memory: what this host's kernel can map it with, for the target's arch.
    let arch_name = match target {
        Target::Arm64 { .. } => "aarch64",
        _ => "x86_64",
    };
    let pfnmap = crate::probe::huge_pfnmap_leaf(&crate::probe::kernel_release(), arch_name);
    // Zones without `backing=` get what `run` would give them on this host.
    let mut zones = a.memory.clone();
    crate::memory::default_backing::apply_host(&mut zones);
    let input = hypothetical::plan_input(&zones, &a.bar, target, base, &holes, pfnmap)?;
    Ok(PlanOutput {
        arch,
        target,
        zones,
        bars: a.bar.clone(),
        plan: stage2::plan(&input)?,
    })
}
