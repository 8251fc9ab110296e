//! Files the user names as input (kernels, initramfs, result files to compare): opened
//! with O_NONBLOCK so a FIFO cannot hang granule, refused unless regular, and never read
//! past a size limit.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{kind_of, UserFileError};

/// Opens `path` for reading; it must be a regular file of at most `max` bytes. Returns
/// the file and its length.
pub fn open_regular(
    what: &'static str,
    path: &Path,
    max: u64,
) -> Result<(File, u64), UserFileError> {
    let err = |error| UserFileError::Read {
        what,
        path: path.to_owned(),
        error,
    };
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then refused below);
    // on a regular file the flag changes nothing.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(UserFileError::NotAFile {
            what,
            path: path.to_owned(),
            kind: kind_of(&meta),
        });
    }
    if meta.len() > max {
        return Err(UserFileError::TooLarge {
            what,
            path: path.to_owned(),
            size: meta.len(),
            max,
        });
    }
    Ok((file, meta.len()))
}

/// Reads a regular UTF-8 file of at most `max` bytes. The read itself stops at `max + 1`
/// bytes, so a file that grows after the check is refused rather than read unbounded.
pub fn read_text(what: &'static str, path: &Path, max: u64) -> Result<String, UserFileError> {
    let (file, len) = open_regular(what, path, max)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| UserFileError::Read {
            what,
            path: path.to_owned(),
            error,
        })?;
    if bytes.len() as u64 > max {
        return Err(UserFileError::TooLarge {
            what,
            path: path.to_owned(),
            size: bytes.len() as u64,
            max,
        });
    }
    String::from_utf8(bytes).map_err(|_| UserFileError::NotText {
        what,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("granule-input-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let p = dir().join("fifo");
        let _ = std::fs::remove_file(&p);
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_text("result file", &p, 100).unwrap_err();
        assert!(
            e.to_string().contains("is a FIFO, not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_a_missing_file_and_a_large_file_are_named() {
        let d = dir();
        let e = read_text("result file", &d, 100).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = read_text("result file", &d.join("absent"), 100).unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
        let big = d.join("big");
        std::fs::write(&big, [b'x'; 101]).unwrap();
        let e = read_text("result file", &big, 100).unwrap_err();
        assert!(
            e.to_string().contains("101 bytes, more than the 100"),
            "{e}"
        );
        std::fs::write(&big, [0xff, 0xfe]).unwrap();
        let e = read_text("result file", &big, 100).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        std::fs::write(&big, "ok").unwrap();
        assert_eq!(read_text("result file", &big, 100).unwrap(), "ok");
    }
}
