//! Guest console output on its way to stdout, without ever blocking the guest.
//!
//! A vCPU emulating the UART holds the UART's lock; if it wrote to stdout itself, a
//! pipe nobody reads (or a terminal stopped with Ctrl-S) would block it there, then
//! every other vCPU and the event loop behind that lock, and the VM could no longer be
//! powered off, timed out or interrupted. So vCPUs only append to a bounded queue, and
//! one writer thread does the writes that may block. When the queue is full the newest
//! output is dropped and counted; at the end granule waits a bounded time for the
//! writer, then says how much output never reached stdout.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Output kept while stdout is slower than the guest.
pub const QUEUE_BYTES: usize = 1 << 20;
/// Largest write the writer thread makes at a time.
const CHUNK: usize = 64 << 10;

#[derive(Default)]
struct State {
    queue: VecDeque<u8>,
    /// Bytes dropped because the queue was full.
    dropped: u64,
    /// Bytes the writer took and is writing now.
    in_flight: u64,
    /// The writer found stdout closed (EPIPE) or failing: later output is discarded.
    broken: bool,
    /// No more output will come; the writer ends once the queue is empty.
    closed: bool,
    /// The writer thread has ended.
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    cap: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every panic point (plain field updates).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The vCPUs' side: append output. Never blocks on the writer.
#[derive(Clone)]
pub struct OutputQueue(Arc<Shared>);

/// A UART (or anything else) writes into the queue; writes always succeed at once.
impl Write for OutputQueue {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutputQueue {
    /// Queues `bytes` for stdout; what does not fit is dropped and counted.
    pub fn push(&self, bytes: &[u8]) {
        let mut s = self.0.lock();
        if s.broken || s.closed {
            return;
        }
        let room = self.0.cap.saturating_sub(s.queue.len());
        let take = bytes.len().min(room);
        if take < bytes.len() {
            if s.dropped == 0 {
                tracing::warn!(
                    "guest console output is not being read (stdout blocked); dropping output"
                );
            }
            s.dropped += (bytes.len() - take) as u64;
        }
        // The writer sleeps only on an empty queue: wake it for the first bytes, not
        // for every byte (a UART delivers them one at a time).
        let was_empty = s.queue.is_empty();
        s.queue.extend(&bytes[..take]);
        drop(s);
        if was_empty && take > 0 {
            self.0.cv.notify_all();
        }
    }
}

/// What became of the output when the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputEnd {
    /// Dropped because the queue was full.
    pub dropped: u64,
    /// Still queued when granule stopped waiting for the writer.
    pub unwritten: u64,
}

/// The writer thread's handle.
pub struct ConsoleWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ConsoleWriter {
    /// Starts the writer thread on `out`; returns it and the queue vCPUs append to.
    pub fn spawn(out: Box<dyn Write + Send>, cap: usize) -> io::Result<(Self, OutputQueue)> {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            cv: Condvar::new(),
            cap,
        });
        let for_thread = shared.clone();
        let filter = crate::seccomp::prepare(crate::seccomp::ThreadKind::ConsoleOut)
            .map_err(io::Error::other)?;
        let thread = std::thread::Builder::new()
            .name("console-out".into())
            .spawn(move || {
                if let Some(f) = &filter {
                    f.install_or_exit();
                }
                write_loop(&for_thread, out)
            })?;
        Ok((
            Self {
                shared: shared.clone(),
                thread: Some(thread),
            },
            OutputQueue(shared),
        ))
    }

    /// Closes the queue and waits up to `wait` for the writer to empty it.
    pub fn finish(mut self, wait: Duration) -> OutputEnd {
        let deadline = Instant::now() + wait;
        let mut s = self.shared.lock();
        s.closed = true;
        self.shared.cv.notify_all();
        while !s.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .shared
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let end = OutputEnd {
            dropped: s.dropped,
            unwritten: if s.done {
                0
            } else {
                s.queue.len() as u64 + s.in_flight
            },
        };
        let done = s.done;
        drop(s);
        if done {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        // Otherwise the writer is blocked in write(2); it holds no lock and ends with the
        // process.
        end
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        // An early return before `finish`: let the writer end on its own.
        self.shared.lock().closed = true;
        self.shared.cv.notify_all();
    }
}

fn write_loop(shared: &Shared, mut out: Box<dyn Write + Send>) {
    loop {
        let chunk: Vec<u8> = {
            let mut s = shared.lock();
            while s.queue.is_empty() && !s.closed {
                s = shared.cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.queue.is_empty() {
                break;
            }
            let n = s.queue.len().min(CHUNK);
            s.in_flight = n as u64;
            s.queue.drain(..n).collect()
        };
        let r = out.write_all(&chunk).and_then(|()| out.flush());
        shared.lock().in_flight = 0;
        if let Err(e) = r {
            if e.kind() != io::ErrorKind::BrokenPipe {
                tracing::warn!("guest console output: {e}; dropping the rest");
            }
            let mut s = shared.lock();
            s.broken = true;
            s.queue.clear();
            break;
        }
    }
    shared.lock().done = true;
    shared.cv.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Collect(Arc<Mutex<Vec<u8>>>);
    impl Write for Collect {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that blocks until told to go on, like a pipe nobody reads.
    struct Stuck(mpsc::Receiver<()>);
    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_reaches_the_writer_in_order() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (w, q) = ConsoleWriter::spawn(Box::new(Collect(got.clone())), 1024).unwrap();
        for b in b"hello, world\n" {
            q.push(&[*b]);
        }
        let end = w.finish(Duration::from_secs(10));
        assert_eq!(end, OutputEnd::default());
        assert_eq!(&*got.lock().unwrap(), b"hello, world\n");
    }

    #[test]
    fn a_blocked_writer_never_blocks_the_pusher_and_the_loss_is_counted() {
        let (_release, rx) = mpsc::channel();
        let (w, q) = ConsoleWriter::spawn(Box::new(Stuck(rx)), 100).unwrap();
        q.push(&[b'a'; 10]); // the writer takes these and blocks in write
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..1000 {
            q.push(&[b'b'; 10]); // returns at once even though nothing drains
        }
        let end = w.finish(Duration::from_millis(50));
        // The full queue and the 10 bytes blocked in write(2): none reached the output.
        assert_eq!(end.unwritten, 110, "{end:?}");
        assert!(end.dropped >= 10_000 - 100, "{end:?}");
    }

    #[test]
    fn a_closed_stdout_discards_output_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (w, q) = ConsoleWriter::spawn(Box::new(Closed), 100).unwrap();
        q.push(b"x");
        std::thread::sleep(Duration::from_millis(20));
        q.push(b"more");
        let end = w.finish(Duration::from_secs(10));
        assert_eq!(end, OutputEnd::default());
    }
}
