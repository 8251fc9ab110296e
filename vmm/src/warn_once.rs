//! A warning about something a guest drives (where it put a BAR, how it programs its
//! interrupts): the first at warn level, the rest at debug level, so a guest cannot
//! flood the log.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct WarnOnce(AtomicBool);

impl WarnOnce {
    pub fn warn(&self, msg: impl std::fmt::Display) {
        if self.0.swap(true, Ordering::Relaxed) {
            tracing::debug!("{msg}");
        } else {
            tracing::warn!("{msg}");
        }
    }
}
