//! Progress of a long guest workload on stderr: one updating line on a terminal, a few
//! log lines otherwise (CI logs stay short).

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    enabled: bool,
    tty: bool,
    per_vcpu: Vec<u64>,
    total: u64,
    started: Instant,
    last_quarter: u64,
}

impl Progress {
    pub fn new(enabled: bool, vcpus: usize, total_pages: u64) -> Self {
        Self {
            enabled,
            tty: std::io::stderr().is_terminal(),
            per_vcpu: vec![0; vcpus],
            total: total_pages.max(1),
            started: Instant::now(),
            last_quarter: 0,
        }
    }

    pub fn update(&mut self, vcpu: usize, pages: u64) {
        if let Some(p) = self.per_vcpu.get_mut(vcpu) {
            *p = pages;
        }
        if !self.tty {
            let quarter = self.done() * 4 / self.total;
            if quarter > self.last_quarter && quarter < 4 {
                self.last_quarter = quarter;
                self.print();
            }
        }
    }

    fn done(&self) -> u64 {
        self.per_vcpu.iter().sum::<u64>().min(self.total)
    }

    fn print(&self) {
        if !self.enabled {
            return;
        }
        let done = self.done();
        let line = format!(
            "progress: {:5.1}%  {} of {} MiB  {:.1}s",
            done as f64 * 100.0 / self.total as f64,
            (done * 4096) >> 20,
            (self.total * 4096) >> 20,
            self.started.elapsed().as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line}")
        } else {
            writeln!(err, "{line}")
        };
    }

    pub fn tick(&mut self) {
        if self.tty {
            self.print();
        }
    }

    pub fn finish(&mut self) {
        if self.enabled && self.tty {
            self.print();
            let _ = writeln!(std::io::stderr());
        }
    }
}
