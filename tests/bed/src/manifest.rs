//! Where resources/bed-prepare.sh put the kernels and initramfs images.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Paths from `$GRANULE_CACHE/bed/manifest.env`.
#[derive(Debug, Clone)]
pub struct Manifest {
    vars: HashMap<String, PathBuf>,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("GRANULE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}

impl Manifest {
    pub fn path() -> PathBuf {
        cache_dir().join("bed/manifest.env")
    }

    pub fn load() -> Result<Self, String> {
        let p = Self::path();
        let text = std::fs::read_to_string(&p).map_err(|e| {
            format!(
                "{}: {e}; run resources/bed-prepare.sh (ci/test.sh does)",
                p.display()
            )
        })?;
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), PathBuf::from(v.trim())))
            .collect::<HashMap<_, _>>();
        for (k, v) in &vars {
            if !v.exists() {
                return Err(format!(
                    "{k}={} does not exist; run resources/bed-prepare.sh",
                    v.display()
                ));
            }
        }
        Ok(Self { vars })
    }

    pub fn get(&self, key: &str) -> Result<&Path, String> {
        self.vars
            .get(key)
            .map(PathBuf::as_path)
            .ok_or_else(|| format!("{key} missing from {}", Self::path().display()))
    }
}

/// Whether a bed test can run: the beds are prepared and QEMU is installed. Without them
/// the test prints SKIP and why, unless GRANULE_REQUIRE_BEDS=1 (ci/test.sh), which makes
/// that a failure. GRANULE_SKIP_BEDS=1 (ci/test.sh --host-only) skips them on purpose. A test that goes ahead appends its name to GRANULE_KVM_TESTS_LOG, so
/// ci/test.sh can check that every bed test ran.
pub fn bed_available(test: &str, qemu: &str) -> Option<Manifest> {
    if std::env::var("GRANULE_SKIP_BEDS").as_deref() == Ok("1") {
        eprintln!("SKIP {test}: GRANULE_SKIP_BEDS=1 (ci/test.sh --host-only)");
        return None;
    }
    let why = match (Manifest::load(), which(qemu)) {
        (Ok(m), true) => {
            if let Ok(log) = std::env::var("GRANULE_KVM_TESTS_LOG") {
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                {
                    let _ = f.write_all(format!("{test}\n").as_bytes());
                }
            }
            return Some(m);
        }
        (Err(e), _) => e,
        (_, false) => format!("{qemu} is not installed; run resources/packages.sh"),
    };
    if std::env::var("GRANULE_REQUIRE_BEDS").as_deref() == Ok("1") {
        panic!("{test}: GRANULE_REQUIRE_BEDS=1 but the bed is not ready: {why}");
    }
    eprintln!("SKIP {test}: {why}");
    None
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
