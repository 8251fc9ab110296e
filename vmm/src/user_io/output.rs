//! Result files (`--json`, `--report`, `--svg`): checked before any work starts, so a
//! typo costs nothing, and written to a temporary file renamed into place, so a reader
//! sees the old file or the whole new one, never a truncated one.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{kind_of, UserFileError};

/// A path granule will write a result to, checked writable.
#[derive(Debug, Clone)]
pub struct OutputFile {
    what: &'static str,
    path: PathBuf,
}

impl OutputFile {
    /// Checks that `path` can take the result: not a directory or special file, not a
    /// read-only file, and in a directory where granule can create files (by creating
    /// and removing the temporary file it will later use).
    pub fn check(what: &'static str, path: &Path) -> Result<Self, UserFileError> {
        let out = Self {
            what,
            path: path.to_owned(),
        };
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => {
                return Err(out.unwritable(format!("it is {}", kind_of(&meta))))
            }
            Ok(meta) if meta.permissions().readonly() => {
                return Err(out.unwritable("it is read-only".into()))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(out.unwritable(e.to_string())),
        }
        let tmp = out.temporary()?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| out.unwritable(format!("cannot create a file in its directory ({e})")))?;
        let _ = std::fs::remove_file(&tmp);
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` whole: to a temporary file beside the target, synced, then renamed
    /// over it.
    pub fn write(&self, bytes: &[u8]) -> Result<(), UserFileError> {
        let tmp = self.temporary()?;
        let result = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.unwritable(e.to_string())
        })
    }

    /// `.NAME.granule-PID.tmp` in the target's directory (a rename never crosses file
    /// systems).
    fn temporary(&self) -> Result<PathBuf, UserFileError> {
        let name = self
            .path
            .file_name()
            .ok_or_else(|| self.unwritable("it does not name a file".into()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".granule-{}.tmp", std::process::id()));
        Ok(self.path.with_file_name(tmp_name))
    }

    fn unwritable(&self, reason: String) -> UserFileError {
        UserFileError::Unwritable {
            what: self.what,
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("granule-output-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bad_targets_are_refused_before_any_work() {
        let d = dir("bad");
        let e = OutputFile::check("result", &d).unwrap_err();
        assert!(e.to_string().contains("it is a directory"), "{e}");
        let e = OutputFile::check("result", &d.join("missing/x.json")).unwrap_err();
        assert!(e.to_string().contains("missing/x.json"), "{e}");
        let e = OutputFile::check("result", Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = OutputFile::check("result", Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let d = dir("good");
        let p = d.join("r.json");
        std::fs::write(&p, "old").unwrap();
        let out = OutputFile::check("result", &p).unwrap();
        out.write(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
