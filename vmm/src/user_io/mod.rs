//! The edge where granule meets the user's files and its own stdout: input files opened
//! without blocking and read with a size limit, result files checked before any work
//! and written whole or not at all, and stdout that may be closed or full.

pub mod input;
pub mod output;
pub mod stdout;

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum UserFileError {
    #[error("cannot read the {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the {what} {path} is {kind}, not a regular file; give a regular file")]
    NotAFile {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("the {what} {path} is {size} bytes, more than the {max} granule accepts")]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        size: u64,
        max: u64,
    },
    #[error("the {what} {path} is not UTF-8 text")]
    NotText { what: &'static str, path: PathBuf },
    #[error("cannot write the {what} to {path}: {reason}; choose another path")]
    Unwritable {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// What a file that is not a regular file is, for the error message.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}
