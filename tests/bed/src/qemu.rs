//! Starting a bed, following its serial log, and judging the run.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::excerpt::failure_excerpt;
use crate::Manifest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn qemu(self) -> &'static str {
        match self {
            Self::X86_64 => "qemu-system-x86_64",
            Self::Aarch64 => "qemu-system-aarch64",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }
}

#[derive(Debug, Error)]
pub enum BedError {
    #[error("bed set-up: {0}")]
    Setup(String),
    #[error("cannot start {qemu}: {source}")]
    Spawn {
        qemu: &'static str,
        source: std::io::Error,
    },
    #[error("scenario {scenario} did not finish within {secs} s; log {log}:\n{excerpt}")]
    Timeout {
        scenario: String,
        secs: u64,
        log: String,
        excerpt: String,
    },
    #[error(
        "QEMU exited before scenario {scenario} ended (status {status}); log {log}:\n{excerpt}"
    )]
    Died {
        scenario: String,
        status: String,
        log: String,
        excerpt: String,
    },
}

/// QEMU's TCG threading for the bed. Measured in the x86 bed (README, "How the test
/// beds run"): with two bed vCPUs, single-threaded TCG runs the stress workloads
/// reliably but boots no 2-vCPU level-2 Linux guest (QEMU's nor granule's: RCU stalls
/// on CPU 1), and multi-threaded TCG boots them but breaks 2-vCPU stress runs and now
/// and then crashes the bed's own kernel (a stale int3 from text patching). A bed with
/// one vCPU boots 2-vCPU guests under either mode. So each scenario says what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcgThreads {
    Single,
    Multi,
}

impl TcgThreads {
    fn word(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Multi => "multi",
        }
    }
}

/// One scenario run to configure.
#[derive(Debug, Clone)]
pub struct Bed {
    pub arch: Arch,
    pub scenario: String,
    /// Extra kernel command-line words (hugepage pools, kvm-arm.mode=...).
    pub cmdline: String,
    pub memory: &'static str,
    pub timeout: Duration,
    /// Names the log file (`target/bed-logs/{arch}-{label}.log`); the scenario by default.
    pub label: String,
    /// The manifest key of the initramfs to boot, instead of the arch's default.
    pub initrd_key: Option<&'static str>,
    pub tcg: TcgThreads,
    /// The bed's own vCPUs.
    pub cpus: u32,
    /// A file on this host behind the ivshmem device's 1 GiB of shared memory (a memfd
    /// when None), so a test can read what the bed's guests wrote into the BAR.
    pub ivshmem_file: Option<PathBuf>,
    /// x86: a two-function slot 00:06 (a PCI test device at .0, a virtio RNG bound to
    /// its built-in driver at .1), one IOMMU group: the group a user cannot pass through.
    pub shared_group: bool,
    /// A raw image file on this host behind an emulated NVMe controller (x86), which
    /// the bed binds to vfio-pci.
    pub nvme_image: Option<PathBuf>,
    /// A raw image behind a disk on a second AHCI controller at 00:07.0 (x86; its
    /// interrupts are MSI).
    pub ahci_image: Option<PathBuf>,
}

/// A finished run: the serial log and the scenario's exit status.
#[derive(Debug)]
pub struct BedRun {
    pub scenario: String,
    pub log: PathBuf,
    pub text: String,
    /// The scenario script's exit code, from its END marker.
    pub rc: i32,
}

/// Kills QEMU whenever the run ends, including on panic.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Bed {
    pub fn new(arch: Arch, scenario: &str) -> Self {
        Self {
            arch,
            scenario: scenario.into(),
            cmdline: String::new(),
            memory: "3G",
            timeout: Duration::from_secs(300),
            label: scenario.into(),
            initrd_key: None,
            // The x86 bed's stress and probe scenarios need single-threaded TCG; the
            // arm64 bed runs everything multi-threaded.
            tcg: match arch {
                Arch::X86_64 => TcgThreads::Single,
                Arch::Aarch64 => TcgThreads::Multi,
            },
            cpus: 2,
            ivshmem_file: None,
            shared_group: false,
            nvme_image: None,
            ahci_image: None,
        }
    }

    /// Adds an AHCI controller at 00:07.0 with a disk backed by the raw image `path` (x86).
    pub fn ahci_image(mut self, path: PathBuf) -> Self {
        self.ahci_image = Some(path);
        self
    }

    /// Adds an NVMe controller backed by the raw image `path` (x86).
    pub fn nvme_image(mut self, path: PathBuf) -> Self {
        self.nvme_image = Some(path);
        self
    }

    /// Adds the two-function slot 00:06 (x86).
    pub fn shared_group(mut self) -> Self {
        self.shared_group = true;
        self
    }

    /// Backs the ivshmem memory with `path` (created sparse, 1 GiB).
    pub fn ivshmem_file(mut self, path: PathBuf) -> Self {
        self.ivshmem_file = Some(path);
        self
    }

    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }

    pub fn tcg(mut self, tcg: TcgThreads) -> Self {
        self.tcg = tcg;
        self
    }

    /// Boots the initramfs named by manifest key `key` (e.g. X86_64_BOOT_INITRD).
    pub fn initrd(mut self, key: &'static str) -> Self {
        self.initrd_key = Some(key);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn label(mut self, label: &str) -> Self {
        self.label = label.into();
        self
    }

    pub fn cmdline(mut self, words: &str) -> Self {
        self.cmdline = words.into();
        self
    }

    pub fn memory(mut self, m: &'static str) -> Self {
        self.memory = m;
        self
    }

    fn args(&self, m: &Manifest, log: &str) -> Result<Vec<String>, BedError> {
        let key = |k: &str| {
            m.get(k)
                .map(|p| p.display().to_string())
                .map_err(BedError::Setup)
        };
        let (kernel, initrd) = match self.arch {
            Arch::X86_64 => ("X86_64_KERNEL", "X86_64_INITRD"),
            Arch::Aarch64 => ("AARCH64_KERNEL", "AARCH64_INITRD"),
        };
        let (kernel, initrd) = (key(kernel)?, key(self.initrd_key.unwrap_or(initrd))?);
        let machine = match self.arch {
            Arch::X86_64 => "-M q35 -cpu max -device intel-iommu,intremap=on",
            Arch::Aarch64 => "-M virt,virtualization=on,gic-version=3,iommu=smmuv3 -cpu max",
        };
        let mut a: Vec<String> = machine.split_whitespace().map(String::from).collect();
        a.extend([
            "-accel".into(),
            format!("tcg,thread={},tb-size=512", self.tcg.word()),
        ]);
        // x86: a periodic tick (`highres=off nohz=off`). QEMU's TCG now and then leaves
        // a due local-APIC timer interrupt pending but undelivered; a one-shot tick is
        // then never re-armed and the bed stops for good, while the next periodic tick
        // delivers it (README, "How the test beds run").
        let console = match self.arch {
            Arch::X86_64 => "console=ttyS0 intel_iommu=on highres=off nohz=off",
            Arch::Aarch64 => "console=ttyAMA0",
        };
        a.extend(
            [
                "-m",
                self.memory,
                "-display",
                "none",
                "-monitor",
                "none",
                "-no-reboot",
            ]
            .map(String::from),
        );
        a.extend(self.device_args());
        a.extend([
            "-smp".into(),
            self.cpus.to_string(),
            "-serial".into(),
            format!("file:{log}"),
            "-kernel".into(),
            kernel,
            "-initrd".into(),
            initrd,
        ]);
        a.extend([
            "-append".into(),
            format!(
                "{console} panic=-1 loglevel=4 granule.scenario={} {}",
                self.scenario, self.cmdline
            ),
        ]);
        Ok(a)
    }

    /// The bed's PCI devices: ivshmem always, NVMe and the shared-group slot on request.
    fn device_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-device".into(), "ivshmem-plain,memdev=shm".into()];
        let backend = match &self.ivshmem_file {
            Some(f) => format!(
                "memory-backend-file,id=shm,size=1G,share=on,mem-path={}",
                f.display()
            ),
            None => "memory-backend-memfd,id=shm,size=1G,share=on".into(),
        };
        a.extend(["-object".into(), backend]);
        if let (Some(img), Arch::X86_64) = (&self.nvme_image, self.arch) {
            a.extend([
                "-drive".into(),
                format!("file={},if=none,id=nvm,format=raw", img.display()),
                "-device".into(),
                "nvme,serial=granule0,drive=nvm".into(),
            ]);
        }
        if let (Some(img), Arch::X86_64) = (&self.ahci_image, self.arch) {
            a.extend([
                "-drive".into(),
                format!("file={},if=none,id=sata,format=raw", img.display()),
                "-device".into(),
                "ich9-ahci,id=ahci1,addr=07.0".into(),
                "-device".into(),
                "ide-hd,drive=sata,bus=ahci1.0".into(),
            ]);
        }
        if self.shared_group && self.arch == Arch::X86_64 {
            a.extend(
                [
                    "-device",
                    "pci-testdev,addr=06.0,multifunction=on",
                    "-device",
                    "virtio-rng-pci,addr=06.1",
                ]
                .map(String::from),
            );
        }
        a
    }

    /// Boots the bed, runs the scenario, and returns once its END marker appears.
    pub fn run(&self, manifest: &Manifest) -> Result<BedRun, BedError> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bed-logs");
        std::fs::create_dir_all(&dir).map_err(|e| BedError::Setup(e.to_string()))?;
        let log = dir.join(format!("{}-{}.log", self.arch.name(), self.label));
        let log_s = log.display().to_string();
        let _ = std::fs::remove_file(&log);
        if let Some(f) = &self.ivshmem_file {
            std::fs::File::create(f)
                .and_then(|file| file.set_len(1 << 30))
                .map_err(|e| BedError::Setup(format!("{}: {e}", f.display())))?;
        }
        let qemu = self.arch.qemu();
        let mut cmd = Command::new(qemu);
        cmd.args(self.args(manifest, &log_s)?)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe. It makes the kernel kill QEMU if the test process dies
        // without running the guard (e.g. SIGKILL from a CI timeout).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|source| BedError::Spawn { qemu, source })?;
        let mut guard = Guard(child);
        let end = format!("GRANULE-BED: END {} rc=", self.scenario);
        let started = Instant::now();
        loop {
            // Serial consoles end lines with CR LF.
            let text = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .replace("\r\n", "\n");
            if let Some(rest) = text.split(&end).nth(1) {
                let rc = rest
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(-1);
                return Ok(BedRun {
                    scenario: self.scenario.clone(),
                    log,
                    text,
                    rc,
                });
            }
            if let Ok(Some(status)) = guard.0.try_wait() {
                return Err(BedError::Died {
                    scenario: self.scenario.clone(),
                    status: status.to_string(),
                    log: log_s,
                    excerpt: failure_excerpt(&text),
                });
            }
            if started.elapsed() > self.timeout {
                return Err(BedError::Timeout {
                    scenario: self.scenario.clone(),
                    secs: self.timeout.as_secs(),
                    log: log_s,
                    excerpt: failure_excerpt(&text),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One case of a scenario that runs granule several times: its exit code, stdout and
/// stderr, and its JSON summary when it wrote one (the scenario's `show` markers).
#[derive(Debug)]
pub struct Case {
    pub rc: i32,
    pub out: String,
    pub err: String,
    pub json: Option<serde_json::Value>,
}

impl BedRun {
    /// Case `name`: "CASE name rc=N" and its TEXT and JSON sections. Panics (with the
    /// log's excerpt) when the scenario did not print it: the case never ran.
    pub fn case(&self, name: &str) -> Case {
        let rc = self
            .markers("CASE")
            .iter()
            .find_map(|m| m.strip_prefix(&format!("{name} rc=")).map(str::to_owned))
            .and_then(|v| v.split_whitespace().next().and_then(|rc| rc.parse().ok()))
            .unwrap_or_else(|| panic!("no result for case {name}\n{}", self.excerpt()));
        let section = |s: &str| {
            self.section(&format!("{name}.{s}"))
                .unwrap_or_else(|| panic!("no {s} for case {name}\n{}", self.excerpt()))
        };
        Case {
            rc,
            out: section("out"),
            err: section("err"),
            json: self.json(name),
        }
    }

    /// The JSON document the scenario printed between JSON-BEGIN/END markers.
    pub fn json(&self, name: &str) -> Option<serde_json::Value> {
        let begin = format!("GRANULE-BED: JSON-BEGIN {name}\n");
        let body = self
            .text
            .split(&begin)
            .nth(1)?
            .split("GRANULE-BED: JSON-END")
            .next()?;
        serde_json::from_str(body.trim()).ok()
    }

    /// Text the scenario printed between TEXT-BEGIN/END markers (a command's output).
    pub fn section(&self, name: &str) -> Option<String> {
        let begin = format!("GRANULE-BED: TEXT-BEGIN {name}\n");
        let end = format!("GRANULE-BED: TEXT-END {name}\n");
        let body = self.text.split(&begin).nth(1)?.split(&end).next()?;
        Some(body.to_string())
    }

    /// Marker lines starting with `GRANULE-BED: {tag} `, without the prefix.
    pub fn markers(&self, tag: &str) -> Vec<String> {
        let p = format!("GRANULE-BED: {tag} ");
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix(&p))
            .map(String::from)
            .collect()
    }

    /// The log's last lines and progress markers and the bed kernel's first
    /// complaint, for failure messages.
    pub fn excerpt(&self) -> String {
        format!(
            "log {}:\n{}",
            self.log.display(),
            failure_excerpt(&self.text)
        )
    }
}
