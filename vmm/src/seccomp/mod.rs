//! seccomp filters per thread kind: once a thread has done its set-up it may make only
//! the system calls its job needs, so a guest that takes over a device model cannot
//! open files, start processes or reach the network through granule.
//!
//! Each thread installs its own filter: a vCPU thread before its first KVM_RUN, the
//! console writer before its first write, and the thread that built the VM once every
//! vCPU thread is started (threads it starts later inherit its list). `--seccomp on`
//! (the default) ends granule on a call outside the list, naming the thread and the
//! call; `log` lets the call through and has the kernel log it; `off` installs nothing.

mod lists;
mod sigsys;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
use thiserror::Error;

pub use lists::allowed;

/// What a call outside a thread's list does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// No filters.
    Off,
    /// The call goes through; the kernel logs it (audit / dmesg).
    Log,
    /// granule ends with exit code 1, naming the thread and the call.
    On,
}

/// The kinds of granule thread, each with its own list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadKind {
    /// The thread that builds the VM and supervises it (the process's main thread).
    Vmm = 1,
    Vcpu = 2,
    ConsoleOut = 3,
}

impl ThreadKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Vmm => "the VMM thread",
            Self::Vcpu => "a vCPU thread",
            Self::ConsoleOut => "the console writer thread",
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        [Self::Vmm, Self::Vcpu, Self::ConsoleOut]
            .into_iter()
            .find(|k| *k as u8 == v)
    }
}

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("cannot build the seccomp filter of {thread}: {error}")]
    Build {
        thread: &'static str,
        error: seccompiler::BackendError,
    },
    #[error("cannot install the seccomp filter of {thread}: {error}; run with --seccomp off to go without")]
    Install {
        thread: &'static str,
        error: seccompiler::Error,
    },
    #[error("cannot install the SIGSYS handler that reports a forbidden call: {0}")]
    Handler(std::io::Error),
}

struct Config {
    mode: Mode,
    /// Debug: each vCPU thread makes a forbidden call once its filter is in.
    probe: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

thread_local! {
    /// This thread's kind once its filter is installed (0: none), for the SIGSYS report.
    static INSTALLED: Cell<u8> = const { Cell::new(0) };
}

/// Sets the mode for the whole process, once, before any VM thread starts. Without a
/// call (the library used on its own, as in tests) no filter is installed.
pub fn configure(mode: Mode, probe: bool) {
    let _ = CONFIG.set(Config { mode, probe });
}

/// A thread kind's filter, built (and the SIGSYS report set up) on the thread that
/// starts the threads, so each new thread only installs it and a build error reaches a
/// caller that can return it.
pub struct Filter {
    kind: ThreadKind,
    program: BpfProgram,
    probe: bool,
}

/// `kind`'s filter, or `None` when the mode is off or was never configured.
pub fn prepare(kind: ThreadKind) -> Result<Option<Filter>, SeccompError> {
    let Some(cfg) = CONFIG.get() else {
        return Ok(None);
    };
    if cfg.mode == Mode::Off {
        return Ok(None);
    }
    let program = program(kind, cfg.mode)?;
    if cfg.mode == Mode::On {
        sigsys::install().map_err(SeccompError::Handler)?;
    }
    Ok(Some(Filter {
        kind,
        program,
        probe: cfg.probe && kind == ThreadKind::Vcpu,
    }))
}

impl Filter {
    /// Installs the filter on the calling thread, unless it already has one.
    pub fn install(&self) -> Result<(), SeccompError> {
        if INSTALLED.with(Cell::get) != 0 {
            return Ok(());
        }
        INSTALLED.with(|c| c.set(self.kind as u8));
        seccompiler::apply_filter(&self.program).map_err(|error| SeccompError::Install {
            thread: self.kind.name(),
            error,
        })?;
        if self.probe {
            sigsys::forbidden_call();
        }
        Ok(())
    }

    /// [`Filter::install`] on a thread that has no way to hand back an error (a vCPU or
    /// the console writer): granule ends with exit code 1, naming why. The filter is
    /// already built, so this fails only if the kernel refuses it.
    pub fn install_or_exit(&self) {
        if let Err(e) = self.install() {
            eprintln!("granule: error: {e}");
            std::process::exit(1);
        }
    }
}

/// Builds and installs `kind`'s filter on the calling thread (see [`prepare`]).
pub fn apply(kind: ThreadKind) -> Result<(), SeccompError> {
    prepare(kind)?.map_or(Ok(()), |f| f.install())
}

/// The kind whose filter the calling thread installed, if any.
fn installed_kind() -> Option<ThreadKind> {
    ThreadKind::from_u8(INSTALLED.with(Cell::get))
}

/// `kind`'s filter as BPF: its list allowed, anything else trapped (on) or logged.
pub fn program(kind: ThreadKind, mode: Mode) -> Result<BpfProgram, SeccompError> {
    let build = |error| SeccompError::Build {
        thread: kind.name(),
        error,
    };
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = allowed(kind)
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();
    let mismatch = if mode == Mode::On {
        SeccompAction::Trap
    } else {
        SeccompAction::Log
    };
    let arch = std::env::consts::ARCH.try_into().map_err(build)?;
    SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch)
        .and_then(BpfProgram::try_from)
        .map_err(build)
}
