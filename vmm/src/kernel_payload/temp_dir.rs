//! A fresh directory for a test of the cache's files, removed when the test ends.

use std::fs;
use std::path::PathBuf;

pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A directory named after the test and the process, emptied first.
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("granule-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
