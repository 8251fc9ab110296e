//! The serial console's host side: guest output queued for stdout while watching for
//! a kernel panic line, and host input (stdin) pumped into the UART as fast as the guest
//! reads it, through the event-manager loop. A terminal on stdin is put in
//! non-canonical, no-echo mode for the run (the guest echoes) and restored afterwards.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use granule_devices::serial::{EventFdTrigger, InputDrained};
use granule_devices::SerialPort;
use vmm_sys_util::eventfd::EventFd;

use crate::console::OutputQueue;

/// The Linux guest's UART.
pub type ConsoleSerial = SerialPort<ConsoleOut, EventFdTrigger, InputDrained>;

/// The marker line Linux prints when it panics.
const PANIC_MARKER: &str = "Kernel panic - not syncing: ";
/// Longest console line the watcher keeps; the guest controls line length.
const MAX_LINE: usize = 1024;

/// The latest panic line the guest printed, and when: the reason given for a panic
/// that the pvpanic device (or, without its driver, a reset right after the line)
/// signals. Text alone never ends the VM: any guest process can print it.
pub type PanicSlot = Arc<Mutex<Option<(String, Instant)>>>;

/// When the first console line holding the `--boot-marker` text ended: the end of the
/// boot as the user defines it (a service's "ready" line). Only whole lines count, so a
/// prompt that waits on its own line without a newline is never seen.
pub type MarkerSlot = Arc<OnceLock<Instant>>;

/// The `--boot-marker` text and where its first sighting is recorded.
pub struct BootMarker {
    pub text: String,
    pub seen: MarkerSlot,
}

/// Guest console output: queued for stdout (never blocking the vCPU, see
/// [`super::output`]) and scanned line by line for a kernel panic line and the boot
/// marker.
pub struct ConsoleOut {
    out: OutputQueue,
    line: Vec<u8>,
    panic: PanicSlot,
    marker: Option<BootMarker>,
}

impl ConsoleOut {
    #[cfg_attr(
        not(target_arch = "x86_64"),
        allow(dead_code, reason = "only the x86_64 backend builds a console so far")
    )]
    pub fn new(out: OutputQueue, panic: PanicSlot, marker: Option<BootMarker>) -> Self {
        Self {
            out,
            line: Vec::new(),
            panic,
            marker,
        }
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        if let Some(m) = &self.marker {
            if m.seen.get().is_none() && text.contains(m.text.as_str()) {
                let _ = m.seen.set(Instant::now());
            }
        }
        if let Some(at) = text.find(PANIC_MARKER) {
            if let Ok(mut slot) = self.panic.lock() {
                let reason = text[at..].trim_end().to_string();
                *slot = Some((reason, Instant::now()));
            }
        }
        self.line.clear();
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &b in buf {
            match b {
                b'\n' => self.end_line(),
                b'\r' => {}
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
        self.out.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Pumps stdin into the UART. Reads only when the UART has room: while bytes are
/// pending, stdin leaves the epoll set and the UART's "drained" event brings it back.
pub struct StdinPump {
    stdin: File,
    drained: EventFd,
    serial: Arc<ConsoleSerial>,
    pending: Vec<u8>,
    reading: bool,
    /// Stdin reached its end or failed; it is not read again.
    ended: bool,
    /// Stdin is a regular file or /dev/null, which epoll refuses: it is read whenever
    /// the UART has room instead of when epoll says so.
    unpollable: bool,
}

impl StdinPump {
    pub fn new(drained: EventFd, serial: Arc<ConsoleSerial>) -> io::Result<Self> {
        // A duplicate of fd 0, unbuffered (std's Stdin buffers behind epoll's back).
        let stdin = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        Ok(Self {
            stdin,
            drained,
            serial,
            pending: Vec::new(),
            reading: false,
            ended: false,
            unpollable: false,
        })
    }

    fn feed(&mut self) {
        while !self.pending.is_empty() {
            let n = self.serial.enqueue_input(&self.pending);
            if n == 0 {
                break;
            }
            self.pending.drain(..n);
        }
    }

    fn set_reading(&mut self, on: bool, ops: &mut EventOps) {
        if on == self.reading || self.unpollable {
            return;
        }
        let ev = Events::new(&self.stdin, EventSet::IN);
        let r = if on { ops.add(ev) } else { ops.remove(ev) };
        match r {
            Ok(()) => self.reading = on,
            Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EPERM => {
                self.unpollable = true;
            }
            Err(e) => {
                tracing::warn!("console input: {e:?}");
                self.ended = true;
            }
        }
    }

    /// Reads what stdin has into `pending`.
    fn read_stdin(&mut self) {
        let mut buf = [0u8; 256];
        match self.stdin.read(&mut buf) {
            // End of input: the guest keeps running, it just gets no more (what was
            // read before still reaches it).
            Ok(0) => self.ended = true,
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("console input closed: {e}");
                self.ended = true;
            }
        }
    }

    /// Feeds the UART; an unpollable stdin is read as long as the UART takes more.
    fn feed_all(&mut self) {
        loop {
            self.feed();
            if !(self.unpollable && self.pending.is_empty() && !self.ended) {
                return;
            }
            self.read_stdin();
        }
    }
}

impl MutEventSubscriber for StdinPump {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.drained, EventSet::IN)) {
            tracing::warn!("console input: {e:?}");
        }
        self.set_reading(true, ops);
        self.feed_all();
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.drained.as_raw_fd() {
            let _ = self.drained.read();
        } else if events.fd() == self.stdin.as_raw_fd() {
            self.read_stdin();
        }
        self.feed_all();
        let want = self.pending.is_empty() && !self.ended;
        self.set_reading(want, ops);
    }
}

/// Clears the wake-up eventfd; the main loop then looks at what happened.
pub struct WakeListener(pub Arc<EventFd>);

impl MutEventSubscriber for WakeListener {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.0.as_ref(), EventSet::IN)) {
            tracing::warn!("event loop: {e:?}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.read();
    }
}

/// Puts a terminal on stdin into non-canonical, no-echo mode; restores it on drop.
/// Signals stay on, so Ctrl-C still stops granule (which then powers the VM down).
/// Hand-written rather than vmm-sys-util's `Terminal`: its raw mode also turns signals
/// off (Ctrl-C would go to the guest) and it restores a fixed mode, not the user's own.
pub struct TerminalMode {
    saved: Option<libc::termios>,
}

impl TerminalMode {
    pub fn raw_if_tty() -> Self {
        let fd = io::stdin().as_raw_fd();
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return Self { saved: None };
        }
        // SAFETY: termios is plain data; tcgetattr fills it for a valid tty fd.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid termios to write into; fd is a tty (checked above).
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return Self { saved: None };
        }
        let saved = t;
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_iflag &= !(libc::ICRNL);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: `t` is a fully initialised termios derived from the tty's own.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        Self { saved: Some(saved) }
    }
}

impl Drop for TerminalMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restores the termios read from this same tty in raw_if_tty.
            unsafe { libc::tcsetattr(io::stdin().as_raw_fd(), libc::TCSANOW, t) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console() -> (ConsoleOut, PanicSlot) {
        let slot = PanicSlot::default();
        let (_writer, queue) =
            crate::console::ConsoleWriter::spawn(Box::new(io::sink()), 1 << 20).unwrap();
        (ConsoleOut::new(queue, slot.clone(), None), slot)
    }

    #[test]
    fn the_latest_panic_line_is_kept_as_the_reason() {
        let (mut out, slot) = console();
        out.write_all(b"[    1.0] booting\r\n").unwrap();
        assert!(slot.lock().unwrap().is_none());
        out.write_all(b"Kernel panic - not syncing: printed by a process\n")
            .unwrap();
        let text = b"[    2.5] Kernel panic - not syncing: sysrq triggered crash\r\n";
        for b in text {
            out.write_all(&[*b]).unwrap(); // byte by byte, as the UART delivers
        }
        let (reason, _) = slot.lock().unwrap().clone().unwrap();
        assert_eq!(reason, "Kernel panic - not syncing: sysrq triggered crash");
    }

    #[test]
    fn the_first_marker_line_is_timed_once() {
        let seen = MarkerSlot::default();
        let (_writer, queue) =
            crate::console::ConsoleWriter::spawn(Box::new(io::sink()), 1 << 20).unwrap();
        let marker = BootMarker {
            text: "login:".into(),
            seen: seen.clone(),
        };
        let mut out = ConsoleOut::new(queue, PanicSlot::default(), Some(marker));
        out.write_all(b"Welcome\r\nhost log").unwrap();
        out.write_all(b"in: ").unwrap();
        assert!(seen.get().is_none(), "timed when the line ends, not before");
        out.write_all(b"\r\n").unwrap();
        let first = *seen.get().expect("the marker line was seen");
        out.write_all(b"host login: \n").unwrap();
        assert_eq!(seen.get(), Some(&first), "later lines change nothing");
    }

    #[test]
    fn overlong_lines_are_cut_not_stored() {
        let (mut out, _) = console();
        out.write_all(&vec![b'x'; 100_000]).unwrap();
        assert_eq!(out.line.len(), MAX_LINE);
    }
}
