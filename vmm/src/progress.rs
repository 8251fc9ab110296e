//! Progress of long work on stderr. On a terminal an indicatif bar or spinner; otherwise
//! (indicatif then hides itself) a few plain lines, so CI logs show that work goes on
//! without filling up.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a spinner's state is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

enum Shown {
    Off,
    Terminal(ProgressBar),
    /// Plain lines: at each quarter of a bar, every [`LOG_EVERY`] for a spinner.
    Log {
        last: Instant,
        quarter: u64,
    },
}

pub struct Progress {
    shown: Shown,
    total: Option<u64>,
    started: Instant,
}

fn shown(enabled: bool, bar: impl FnOnce() -> ProgressBar) -> Shown {
    if !enabled {
        Shown::Off
    } else if std::io::stderr().is_terminal() {
        let bar = bar();
        bar.set_draw_target(ProgressDrawTarget::stderr());
        Shown::Terminal(bar)
    } else {
        Shown::Log {
            last: Instant::now(),
            quarter: 0,
        }
    }
}

impl Progress {
    /// A bar over `total` units (4 KiB pages, shown in MiB).
    pub fn pages(enabled: bool, total: u64) -> Self {
        let total = total.max(1);
        let style = ProgressStyle::with_template(
            "progress: {percent:>3}% [{bar:30}] {msg} {elapsed_precise}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        Self {
            shown: shown(enabled, || {
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
                    .with_style(style)
            }),
            total: Some(total),
            started: Instant::now(),
        }
    }

    /// A spinner whose message says what is being waited for.
    pub fn waiting(enabled: bool) -> Self {
        Self {
            shown: shown(enabled, || {
                let s = ProgressBar::hidden();
                s.enable_steady_tick(Duration::from_millis(100));
                s
            }),
            total: None,
            started: Instant::now(),
        }
    }

    fn mib(pages: u64) -> u64 {
        (pages * 4096) >> 20
    }

    /// `done` of the bar's total units are done.
    pub fn set(&mut self, done: u64) {
        let total = self.total.unwrap_or(1);
        let done = done.min(total);
        match &mut self.shown {
            Shown::Off => {}
            Shown::Terminal(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{} of {} MiB", Self::mib(done), Self::mib(total)));
            }
            Shown::Log { quarter, .. } => {
                let q = done * 4 / total;
                if q > *quarter && q < 4 {
                    *quarter = q;
                    let line = format!(
                        "progress: {:5.1}%  {} of {} MiB  {:.1}s",
                        done as f64 * 100.0 / total as f64,
                        Self::mib(done),
                        Self::mib(total),
                        self.started.elapsed().as_secs_f64()
                    );
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
        }
    }

    /// The spinner's message.
    pub fn say(&mut self, message: String) {
        match &mut self.shown {
            Shown::Off => {}
            Shown::Terminal(bar) => bar.set_message(message),
            Shown::Log { last, .. } => {
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    let _ = writeln!(std::io::stderr().lock(), "{message}");
                }
            }
        }
    }

    /// Removes the bar or spinner from the terminal.
    pub fn finish(&mut self) {
        if let Shown::Terminal(bar) = &self.shown {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
