//! granule's own stdout (tables, JSON, stress lines). A reader that goes away (EPIPE, as
//! with `| head`) only ends what is printed; a full disk (ENOSPC) or another error is an
//! error naming stdout. `print!` would panic on both.

use std::io::Write;

/// Writes `text` to stdout and flushes it. A closed pipe is not an error: the reader
/// has taken what it wanted.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("writing to stdout: {e}"),
        )),
        Ok(()) => Ok(()),
    }
}

/// [`print`] with a newline.
pub fn line(text: &str) -> std::io::Result<()> {
    print(&format!("{text}\n"))
}
