//! One stress run: memory, VM, vCPU workers, the timed phases and the teardown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use granule_arch::{GuestImage, Program};
use thiserror::Error;

use super::arch;
use super::chunk::{set_slot, Chunk};
use super::config::{self, Geometry, StressConfig, START_GPA};
use super::rendezvous::{Interrupted, Rendezvous};
use super::result::{upstream_line, ConfigInfo, Phases, RunResult};
use super::worker::{Worker, WorkerCounts, WorkerError};
use crate::kvm::KvmHandle;
use crate::memory::{pool, Backing, GuestRam, MemoryError, ZoneConfig};
use crate::observe::stats;
use crate::progress::Progress;
use crate::vcpu::{VcpuThreads, STOP_TIMEOUT};
use crate::vm::{Vm, VmError};

#[derive(Debug, Error)]
pub enum StressError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Pool(#[from] pool::PoolError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("{0}")]
    Setup(String),
    #[error(
        "{phase}: {pending} of {vcpus} vCPUs had not finished after {secs:.3} s (--phase-timeout)"
    )]
    PhaseTimeout {
        phase: &'static str,
        pending: i64,
        vcpus: usize,
        secs: f64,
    },
    #[error(transparent)]
    Vcpu(Box<WorkerError>),
    /// A vCPU ended the run early; its own error says why.
    #[error("a vCPU ended the run early")]
    Aborted,
    #[error("interrupted by SIGINT or SIGTERM during {phase}; the VM was stopped")]
    Interrupted { phase: &'static str },
}

impl StressError {
    /// Whether the run ended because of SIGINT or SIGTERM (the binary exits 130).
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Self::Interrupted { .. })
    }
}

impl From<WorkerError> for StressError {
    fn from(e: WorkerError) -> Self {
        Self::Vcpu(Box::new(e))
    }
}

/// Stage-2 leaves the planner expects once run 1 has written all of the aliased memory
/// (the program image's own few 4K leaves in slot 0 come on top).
fn predict(
    g: &Geometry,
    chunk: &Chunk,
    backing: Backing,
    backend: crate::probe::BackendKind,
    guest_page: u64,
    first_slot: u32,
) -> BTreeMap<String, u64> {
    use crate::stage2::{expected_leaves, plan, HostMapping, PlanInput, SlotSpec};
    let hva = chunk.0.as_ptr() as u64;
    let input = PlanInput {
        target: crate::report::host_target(backend, guest_page),
        slots: (0..g.slots)
            .map(|i| SlotSpec {
                slot: first_slot + i as u32,
                gpa: START_GPA + i * g.slot_size,
                size: g.slot_size,
                hva,
                dirty_log: false,
            })
            .collect(),
        mappings: vec![HostMapping {
            hva,
            size: g.slot_size,
            kind: backing.host_kind(),
            page_size: backing.page_size(),
        }],
        write_tracked: vec![],
        // The workload's stores are data; its few code pages live in low RAM, not in
        // the aliased slots predicted here.
        nx_split: vec![],
    };
    let names = |leaf: u64| match leaf {
        l if l == 1 << 30 => "pages_1g".to_string(),
        l if l == 2 << 20 => "pages_2m".to_string(),
        _ => "pages_4k".to_string(),
    };
    let mut out: BTreeMap<String, u64> = ["pages_4k", "pages_2m", "pages_1g"]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    if let Ok(p) = plan(&input) {
        for (leaf, n) in expected_leaves(&p, &[(START_GPA, g.end)]) {
            *out.entry(names(leaf)).or_insert(0) += n;
        }
    }
    out
}

/// The benchmark's VM before its vCPUs start.
struct Built {
    vm: Vm,
    image: GuestImage,
    first_slot: u32,
    guest_fwb: Option<bool>,
}

/// Low RAM with the program, the aliased slots over the chunk, and every vCPU set up.
fn build_vm(
    kvm: &KvmHandle,
    c: &StressConfig,
    g: &Geometry,
    setup: &arch::Setup,
    chunk: &Chunk,
) -> Result<Built, StressError> {
    let tables = arch::table_bytes(g.end, setup.guest_page).map_err(StressError::Setup)?;
    let low_size = config::low_ram(tables, setup.guest_page, g.end)?;
    // RAM avoids [3 GiB, 4 GiB) on both architectures (x86 MMIO hole; arm64 report page).
    let low = GuestRam::new(
        &[ZoneConfig::new(low_size, Backing::Anon4k)],
        &[(3 << 30, 4 << 30)],
        0,
    )?;
    let ranges = low.ranges();
    let first_slot = low.slots().len() as u32;
    let mut vm = Vm::with_ipa_bits(kvm, low, setup.vm_ipa_bits)?;
    for i in 0..g.slots {
        set_slot(
            vm.fd(),
            first_slot + i as u32,
            START_GPA + i * g.slot_size,
            g.slot_size,
            chunk.0.as_ptr() as u64,
        )?;
    }
    let program = Program::Stress {
        start: START_GPA,
        end: g.end,
        crash_vcpu: c.crash_vcpu,
    };
    let image = arch::build(&program, &ranges, c.vcpus, setup)
        .map_err(|e| StressError::Setup(e.to_string()))?;
    for (gpa, bytes) in &image.writes {
        vm.ram().write(*gpa, bytes)?;
    }
    let mut guest_fwb = None;
    for index in 0..c.vcpus {
        vm.create_vcpu()?;
        let fd = vm.vcpu(index).expect("just created");
        arch::configure(fd, vm.fd(), setup, &image, index)
            .map_err(|e| StressError::Setup(format!("vCPU {index} set-up: {e}")))?;
        if index == 0 {
            guest_fwb = arch::guest_fwb(fd);
        }
    }
    arch::finish_vm(&mut vm).map_err(|e| StressError::Setup(e.to_string()))?;
    Ok(Built {
        vm,
        image,
        first_slot,
        guest_fwb,
    })
}

/// KVM's page counts after each phase, by phase.
type StatsAfter = BTreeMap<String, BTreeMap<String, u64>>;

type Workers = VcpuThreads<Result<WorkerCounts, WorkerError>>;

/// Ends every worker (abort, then the engine's stop) and returns the counts and the
/// first vCPU error. A worker that does not stop is an error of its own: its memory
/// stays mapped (the thread holds it) and the run reports it.
fn stop_workers(
    mut workers: Workers,
    rendezvous: &Rendezvous,
) -> Result<(Vec<WorkerCounts>, Option<WorkerError>), StressError> {
    rendezvous.abort();
    workers.stop(STOP_TIMEOUT).map_err(VmError::from)?;
    let mut counts = Vec::new();
    let mut first = None;
    for i in 0..workers.len() {
        match workers.join(i) {
            Some(Ok(Ok(c))) => counts.push(c),
            Some(Ok(Err(WorkerError::Aborted { .. }))) | None => {}
            Some(Ok(Err(e))) => {
                first.get_or_insert(e);
            }
            Some(Err(_)) => {
                first.get_or_insert(WorkerError::Exit {
                    vcpu: i,
                    stage: 0,
                    exit: "the worker thread panicked (a granule bug)".into(),
                    regs: Box::default(),
                });
            }
        }
    }
    Ok((counts, first))
}

/// The main thread's side of the timed phases: rendezvous, clock, stats, release, and
/// the mprotect flips between them. Returns each phase's time and the stats after it.
fn timed_phases(
    c: &StressConfig,
    vm: &Vm,
    chunk: &Chunk,
    rendezvous: &Rendezvous,
    ro_flag: u64,
) -> Result<(Vec<Duration>, StatsAfter), StressError> {
    let mut times = Vec::new();
    let mut stats_after = BTreeMap::new();
    let mut released = Instant::now();
    let mut progress = Progress::waiting(c.progress);
    let mut phase = |name: &'static str, stats_key: Option<&str>| -> Result<(), StressError> {
        let deadline = released + c.phase_timeout;
        let arrived = rendezvous
            .main_wait(deadline, |pending| {
                // Quiet for the first second: most phases end sooner.
                let secs = released.elapsed().as_secs_f64();
                if secs >= 1.0 {
                    progress.say(format!(
                        "{name}: {pending} of {} vCPUs still working, {secs:.1}s",
                        c.vcpus
                    ));
                }
            })
            .map_err(|why| match why {
                Interrupted::TimedOut => StressError::PhaseTimeout {
                    phase: name,
                    pending: rendezvous.pending(),
                    vcpus: c.vcpus,
                    secs: c.phase_timeout.as_secs_f64(),
                },
                Interrupted::Aborted => StressError::Aborted,
                Interrupted::Signal => StressError::Interrupted { phase: name },
            })?;
        times.push(arrived - released);
        // Every vCPU is parked: read the stats now, outside the timed phases.
        if let Some(key) = stats_key {
            if let Ok(s) = stats::read(vm.fd()) {
                let pages = s
                    .iter()
                    .filter(|(k, _)| k.starts_with("pages_"))
                    .map(|(k, v)| (k.clone(), v.first().copied().unwrap_or(0)))
                    .collect();
                stats_after.insert(key.to_string(), pages);
            }
        }
        released = Instant::now();
        rendezvous.release();
        Ok(())
    };
    phase("spawning", None)?;
    phase("run 1", Some("run1"))?;
    phase("reset", Some("reset"))?;
    phase("run 2", Some("run2"))?;
    chunk.protect(libc::PROT_READ)?;
    std::thread::sleep(Duration::from_micros(10));
    vm.ram().write(ro_flag, &1u64.to_le_bytes())?;
    phase("mprotect RO", Some("ro"))?;
    chunk.protect(libc::PROT_READ | libc::PROT_WRITE)?;
    phase("mprotect RW", Some("rw"))?;
    Ok((times, stats_after))
}

/// The host chunk, mapped and prefaulted as upstream (so guest faults need no
/// allocation).
fn prefaulted_chunk(c: &StressConfig, g: &Geometry) -> Result<Arc<Chunk>, StressError> {
    let chunk = Arc::new(Chunk::new(c.backing, g.slot_size)?);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: the chunk is our live read-write mapping of exactly that length.
    unsafe {
        crate::memory::populate(
            chunk.0.as_ptr(),
            chunk.0.len(),
            c.backing.page_size() as usize,
            threads,
        )
    }
    .map_err(|e| StressError::Setup(format!("prefaulting the chunk: {e}")))?;
    Ok(chunk)
}

/// The run's geometry, checked against KVM's limits, the host and the hugetlb pool.
fn geometry(
    kvm: &KvmHandle,
    c: &StressConfig,
    setup: &arch::Setup,
) -> Result<Geometry, StressError> {
    let g = config::check(
        c,
        kvm.max_memslots() as u64,
        kvm.max_vcpus(),
        setup.phys_bits,
        crate::probe::host_memory(),
    )?;
    pool::check(
        &pool::pages_needed(&[ZoneConfig::new(g.slot_size, c.backing)]),
        pool::read_pool,
    )?;
    Ok(g)
}

/// Deletes every other aliased memslot, from the last even one down, as upstream's
/// teardown does while the vCPUs may still run.
fn delete_even_slots(vm: &Vm, first_slot: u32, slots: u64) -> Result<(), StressError> {
    let last = first_slot + slots as u32 - 1;
    let mut slot = (last as i64) & !1;
    while slot >= i64::from(first_slot) {
        set_slot(vm.fd(), slot as u32, 0, 0, 0)?;
        slot -= 2;
    }
    Ok(())
}

/// Runs the benchmark once in a fresh VM.
pub fn run(kvm: &KvmHandle, c: &StressConfig) -> Result<(RunResult, ConfigInfo), StressError> {
    let setup = Arc::new(arch::setup(kvm, c.guest_page)?);
    let g = geometry(kvm, c, &setup)?;
    let backend = crate::probe::Backend::detect().kind;
    let chunk = prefaulted_chunk(c, &g)?;
    let Built {
        mut vm,
        image,
        first_slot,
        guest_fwb,
    } = build_vm(kvm, c, &g, &setup, &chunk)?;

    let rendezvous = Arc::new(Rendezvous::new(c.vcpus));
    let keep_mapped: Arc<dyn Send + Sync> = Arc::new((chunk.clone(), vm.ram().clone()));
    let worker = |_: usize| {
        let w = Worker {
            rendezvous: rendezvous.clone(),
            on_fault: c.on_fault,
            range: (START_GPA, g.end),
            counts: WorkerCounts::default(),
            arch: setup.clone(),
        };
        move |v: &mut crate::vcpu::Vcpu| w.run(v)
    };
    let workers = vm.start_drivers(worker, keep_mapped)?;
    let phases = timed_phases(c, &vm, &chunk, &rendezvous, image.ro_flag);
    let (times, stats_after) = match phases {
        Ok(t) => t,
        Err(e) => {
            // A vCPU's own error explains an abort better than the abort does.
            let (_, vcpu_err) = stop_workers(workers, &rendezvous)?;
            return Err(match (e, vcpu_err) {
                (StressError::Aborted, Some(v)) => v.into(),
                (e @ (StressError::PhaseTimeout { .. } | StressError::Interrupted { .. }), _) => e,
                (_, Some(v)) => v.into(),
                (e, None) => e,
            });
        }
    };

    let footprint = crate::footprint::measure(crate::footprint::resident_in(&guest_memory(
        &chunk,
        vm.ram(),
    )));
    // Teardown as upstream: delete every other slot, drop half the chunk, join.
    delete_even_slots(&vm, first_slot, g.slots)?;
    chunk.drop_first_half();
    let (counts, err) = stop_workers(workers, &rendezvous)?;
    if let Some(e) = err {
        return Err(e.into());
    }
    let predicted_run1 = predict(&g, &chunk, c.backing, backend, setup.guest_page, first_slot);
    // The spawning rendezvous is not timed.
    let p: [Duration; 5] = [times[1], times[2], times[3], times[4], times[5]];
    let result = RunResult {
        phases: Phases::from(p),
        line: upstream_line(p),
        stats: stats_after,
        predicted_run1,
        guest_fwb,
        efaults: counts.iter().map(|c| c.efaults).sum(),
        mmio_faults: counts.iter().map(|c| c.mmio_faults).sum(),
        footprint: Some(footprint),
    };
    let info = ConfigInfo {
        vcpus: c.vcpus,
        max_mem_gib: c.max_mem_gib,
        slot_gib: c.slot_gib,
        slots: g.slots,
        backing: c.backing.name().into(),
        on_fault: c.on_fault,
        guest_page: setup.guest_page,
    };
    // The VM (with its remaining slots) and the chunk drop here (once no worker thread
    // holds them): KVM tears down the rest through the mmu_notifier, as upstream's exit
    // without cleanup does.
    drop(vm);
    drop(chunk);
    Ok((result, info))
}

/// Host ranges of the guest's memory: the aliased chunk and low RAM.
fn guest_memory(chunk: &Chunk, ram: &crate::memory::GuestRam) -> Vec<(u64, u64)> {
    let range = |m: &crate::memory::mmap::AlignedMmap| {
        let start = m.as_ptr() as u64;
        (start, start.saturating_add(m.len() as u64))
    };
    std::iter::once(range(&chunk.0))
        .chain(ram.zones().iter().map(|z| range(&z.map)))
        .collect()
}
