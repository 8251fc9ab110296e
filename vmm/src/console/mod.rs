//! Guest console output on its way to the user, for every guest: a bounded queue the
//! vCPUs append to and one writer thread (see [`queue`]), set up around a whole run.

mod queue;

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

pub use queue::{ConsoleWriter, OutputEnd, OutputQueue, QUEUE_BYTES};

/// How long granule waits, after the guest ended, for queued console output to reach
/// its destination; a stdout that is not read then gets the rest dropped (and counted).
pub const OUTPUT_WAIT: Duration = Duration::from_secs(2);

/// Console output lost on the way to stdout; both zero when all of it was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleLoss {
    /// Dropped while stdout was not being read and the queue was full.
    pub dropped_bytes: u64,
    /// Still queued when granule stopped waiting for stdout at the end.
    pub unwritten_bytes: u64,
}

/// Runs `run` with a console queue writing to `out`, then waits up to
/// [`OUTPUT_WAIT`] for the output and says (on stderr) what never got there.
pub fn with_console<T>(
    out: Box<dyn Write + Send>,
    run: impl FnOnce(OutputQueue) -> T,
) -> std::io::Result<(T, ConsoleLoss)> {
    let (writer, queue) = ConsoleWriter::spawn(out, QUEUE_BYTES)?;
    let result = run(queue);
    let end = writer.finish(OUTPUT_WAIT);
    if end != OutputEnd::default() {
        tracing::warn!(
            "guest console output lost: {} bytes dropped while stdout was not read, {} bytes still unwritten at the end",
            end.dropped,
            end.unwritten
        );
    }
    Ok((
        result,
        ConsoleLoss {
            dropped_bytes: end.dropped,
            unwritten_bytes: end.unwritten,
        },
    ))
}
