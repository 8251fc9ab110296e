//! A remembered fact about one version of a file, so a boot need not read the whole
//! file again to re-establish it: the SHA-256 of a bzImage, or that a cache entry
//! matched its checksum. Under an emulating CPU hashing a 12 MB bzImage and checking a
//! 58 MB entry took 1.6 s of every boot from the cache.
//!
//! A version of a file is named as git's index names one: device, inode, size,
//! modification time and change time. No call can set the change time; every write,
//! truncation, rename or attribute change advances it, and a file replaced by another
//! has another inode or change time. One gap remains, which git calls "racy": the
//! kernel keeps change times at a clock tick's granularity, so a file written again
//! within the tick in which it was stamped keeps its change time. A caller that
//! cannot exclude that asks for `settled`, and the fact is then trusted only when the
//! file had been unchanged for that long when it was stamped.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

const MAGIC: &str = "granule-stamp-1";
/// A record is one short line; anything longer is not one.
const MAX_RECORD: u64 = 256;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Version {
    pub fn of(m: &Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// A name for records about this file (not its version): device and inode.
    pub fn file_id(&self) -> String {
        format!("{:x}-{:x}", self.dev, self.ino)
    }
}

/// The fact `record` holds about `version`, if it was stamped on exactly this version
/// (and, with `settled`, at least that long after the version's last change).
pub fn recall(record: &Path, version: &Version, settled: Duration) -> Option<Vec<u8>> {
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(record)
        .ok()?
        .take(MAX_RECORD)
        .read_to_string(&mut text)
        .ok()?;
    let (stamped, at, fact) = parse(&text)?;
    let settled_ns = i128::try_from(settled.as_nanos()).ok()?;
    (stamped == *version && at >= version.ctime_ns.checked_add(settled_ns)?).then_some(fact)
}

/// Records `fact` about `version` in `record` (replacing it whole: readers see the old
/// record or the new one).
pub fn remember(record: &Path, version: &Version, fact: &[u8]) -> std::io::Result<()> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let hex: String = fact.iter().map(|b| format!("{b:02x}")).collect();
    let v = version;
    let line = format!(
        "{MAGIC} {} {} {} {} {} {now} {hex}\n",
        v.dev, v.ino, v.size, v.mtime_ns, v.ctime_ns
    );
    // A name no other writer uses at the same time: the process and a counter.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut temp = record.as_os_str().to_owned();
    temp.push(format!(".{}.{n}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .and_then(|mut f: File| f.write_all(line.as_bytes()))
        .and_then(|()| std::fs::rename(&temp, record));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// The version, the time it was stamped (ns since the epoch) and the fact.
fn parse(text: &str) -> Option<(Version, i128, Vec<u8>)> {
    let line = text.strip_suffix('\n')?;
    let f: Vec<&str> = line.split(' ').collect();
    let [magic, dev, ino, size, mtime, ctime, at, hex] = f.as_slice() else {
        return None;
    };
    if *magic != MAGIC || hex.len() % 2 != 0 {
        return None;
    }
    let fact = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let version = Version {
        dev: dev.parse().ok()?,
        ino: ino.parse().ok()?,
        size: size.parse().ok()?,
        mtime_ns: mtime.parse().ok()?,
        ctime_ns: ctime.parse().ok()?,
    };
    Some((version, at.parse().ok()?, fact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("granule-stamp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn version_of(p: &Path) -> Version {
        Version::of(&std::fs::metadata(p).unwrap())
    }

    #[test]
    fn a_fact_comes_back_for_the_same_version_only() {
        let d = temp("same");
        let file = d.join("bzImage");
        std::fs::write(&file, b"one").unwrap();
        let record = d.join("record");
        let v = version_of(&file);
        remember(&record, &v, &[0xab, 0x01]).unwrap();
        assert_eq!(recall(&record, &v, Duration::ZERO), Some(vec![0xab, 0x01]));
        // Written again (same size): the change time moves on, or the stamp is racy.
        std::fs::write(&file, b"two").unwrap();
        let w = version_of(&file);
        if w != v {
            assert_eq!(recall(&record, &w, Duration::ZERO), None);
        }
        // A file put in its place by rename has another inode.
        let other = d.join("other");
        std::fs::write(&other, b"one").unwrap();
        std::fs::rename(&other, &file).unwrap();
        assert_eq!(recall(&record, &version_of(&file), Duration::ZERO), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_fact_stamped_too_soon_after_a_change_is_not_trusted_when_asked() {
        let d = temp("racy");
        let file = d.join("bzImage");
        std::fs::write(&file, b"one").unwrap();
        let record = d.join("record");
        let v = version_of(&file);
        remember(&record, &v, &[1]).unwrap();
        assert_eq!(recall(&record, &v, Duration::from_secs(3600)), None);
        assert_eq!(recall(&record, &v, Duration::ZERO), Some(vec![1]));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_or_foreign_record_is_no_fact() {
        let v = Version {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
        };
        assert!(parse("granule-stamp-1 1 2 3 4 5 6 ab01\n")
            .is_some_and(|(w, at, f)| { w == v && at == 6 && f == [0xab, 0x01] }));
        for bad in [
            "",
            "granule-stamp-1 1 2 3 4 5 6 ab01",
            "granule-stamp-2 1 2 3 4 5 6 ab01\n",
            "granule-stamp-1 1 2 3 4 5 6 ab0\n",
            "granule-stamp-1 1 2 3 4 5 6 zz\n",
            "granule-stamp-1 1 2 x 4 5 6 ab\n",
            "granule-stamp-1 1 2 3 4 5 ab\n",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        let d = temp("damaged");
        let record = d.join("record");
        std::fs::write(&record, "x".repeat(10_000)).unwrap();
        assert_eq!(recall(&record, &v, Duration::ZERO), None);
        assert_eq!(recall(&d.join("absent"), &v, Duration::ZERO), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
