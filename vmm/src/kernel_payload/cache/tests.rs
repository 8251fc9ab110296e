//! The cache's rules on real files in a temporary directory.

use super::*;

use crate::kernel_payload::temp_dir::TempDir;

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// The vmlinux an entry holds.
fn contents(e: Entry) -> Vec<u8> {
    let mut v = e.head(u64::MAX).unwrap();
    assert_eq!(v.len() as u64, e.len);
    // Only the vmlinux, not the trailer after it.
    v.truncate(e.len as usize);
    v
}

fn entry_path(c: &KernelCache, key: &Key) -> PathBuf {
    c.dir().join(key.file_name())
}

#[test]
fn an_entry_comes_back_whole_and_a_missing_one_is_a_miss() {
    let d = TempDir::new("roundtrip");
    let c = KernelCache::new(d.0.join("kernels"), 1 << 20);
    let key = Key::of(b"bzImage one");
    assert!(c.get(&key).unwrap().is_none());
    let v = data(100_000, 1);
    assert!(c.put(&key, &v).unwrap());
    assert_eq!(contents(c.get(&key).unwrap().unwrap()), v);
    assert!(c.get(&Key::of(b"bzImage two")).unwrap().is_none());
    // Private to the user.
    let mode = fs::metadata(c.dir()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
}

#[test]
fn a_half_written_or_changed_entry_is_removed_and_then_a_miss() {
    let d = TempDir::new("damaged");
    let c = KernelCache::new(d.0.clone(), 1 << 20);
    let key = Key::of(b"k");
    let v = data(50_000, 2);
    type Damage = fn(&Path);
    let damage: [(&str, Damage); 5] = [
        ("cut short", |p| {
            let f = OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(20_000).unwrap();
        }),
        ("cut inside its trailer", |p| {
            let f = OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(50_010).unwrap();
        }),
        ("one byte changed", |p| {
            let mut b = fs::read(p).unwrap();
            b[30_000] ^= 1;
            fs::write(p, b).unwrap();
        }),
        ("shorter than a trailer", |p| {
            let f = OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(10).unwrap();
        }),
        ("not an entry", |p| {
            fs::write(p, b"something else entirely").unwrap()
        }),
    ];
    for (what, damage) in damage {
        c.put(&key, &v).unwrap();
        damage(&entry_path(&c, &key));
        let e = c.get(&key).unwrap_err();
        assert!(matches!(e, CacheError::Damaged { .. }), "{what}: {e}");
        assert!(e.to_string().contains("removed"), "{e}");
        assert!(!entry_path(&c, &key).exists(), "{what}");
        assert!(c.get(&key).unwrap().is_none(), "{what}");
    }
    // And it is rebuilt by the next write.
    c.put(&key, &v).unwrap();
    assert_eq!(contents(c.get(&key).unwrap().unwrap()), v);
}

#[test]
fn the_least_recently_used_entries_go_to_keep_the_bound() {
    let d = TempDir::new("evict");
    // Room for three entries of 10,000 bytes and their headers.
    let c = KernelCache::new(d.0.clone(), 3 * (10_000 + TRAILER_LEN as u64));
    let keys: Vec<Key> = (0..4u8).map(|i| Key::of(&[i])).collect();
    let old = SystemTime::now() - Duration::from_secs(1000);
    for (i, k) in keys.iter().take(3).enumerate() {
        c.put(k, &data(10_000, i as u8)).unwrap();
        // An entry's last use is the later of its own and its stamp's times.
        for p in [entry_path(&c, k), d.0.join(k.checked_name())] {
            let f = File::options().write(true).open(p).unwrap();
            f.set_modified(old + Duration::from_secs(i as u64)).unwrap();
        }
    }
    // Using the first makes the second the least recently used.
    assert!(c.get(&keys[0]).unwrap().is_some());
    c.put(&keys[3], &data(10_000, 3)).unwrap();
    let present: Vec<bool> = keys.iter().map(|k| entry_path(&c, k).exists()).collect();
    assert_eq!(present, [true, false, true, true]);
    // An entry larger than the whole bound is not stored at all.
    assert!(!c.put(&Key::of(b"big"), &data(40_000, 9)).unwrap());
    assert!(!entry_path(&c, &Key::of(b"big")).exists());
}

#[test]
fn a_temporary_file_left_by_a_dead_run_is_cleaned_up_when_old() {
    let d = TempDir::new("temp");
    let c = KernelCache::new(d.0.clone(), 1 << 20);
    let key = Key::of(b"t");
    c.put(&key, &data(1000, 0)).unwrap();
    let fresh = d.0.join(".x.vmlinux.1.0.1.tmp");
    let stale = d.0.join(".y.vmlinux.2.0.2.tmp");
    fs::write(&fresh, b"half").unwrap();
    fs::write(&stale, b"half").unwrap();
    let f = File::options().write(true).open(&stale).unwrap();
    f.set_modified(SystemTime::now() - STALE_TEMP * 2).unwrap();
    c.put(&Key::of(b"u"), &data(1000, 1)).unwrap();
    assert!(fresh.exists(), "another run may still be writing it");
    assert!(!stale.exists());
    assert_eq!(contents(c.get(&key).unwrap().unwrap()), data(1000, 0));
}

#[test]
fn concurrent_writers_and_readers_see_a_whole_entry_or_none() {
    let d = TempDir::new("concurrent");
    let c = KernelCache::new(d.0.clone(), 1 << 24);
    let key = Key::of(b"shared");
    let v = data(256 << 10, 5);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    c.put(&key, &v).unwrap();
                    match c.get(&key) {
                        Ok(Some(got)) => assert!(contents(got) == v),
                        other => panic!("a reader saw {other:?}"),
                    }
                }
            });
        }
    });
    let mut left: Vec<String> = fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let entry = key.file_name();
    assert_eq!(
        left,
        [entry.clone(), format!("{entry}.checked")],
        "only the entry and its stamp, no temporary files"
    );
}

#[test]
fn a_stamped_entry_is_used_without_rereading_and_a_rewritten_one_is_checked() {
    let d = TempDir::new("stamped");
    let c = KernelCache::new(d.0.clone(), 1 << 20);
    let key = Key::of(b"s");
    let v = data(50_000, 7);
    c.put(&key, &v).unwrap();
    let stamp = d.0.join(key.checked_name());
    assert!(stamp.exists(), "stamped when written");
    // The stamp's checksum is what a hit compares the trailer with: a stamp for this
    // version with another checksum sends it to the full check, which passes.
    let m = fs::metadata(entry_path(&c, &key)).unwrap();
    stamp::remember(&stamp, &Version::of(&m), &[0u8; 16]).unwrap();
    assert_eq!(contents(c.get(&key).unwrap().unwrap()), v);
    // Rewritten in place (a new change time): a new version, checked whole, found
    // damaged, removed with its stamp.
    let mut b = fs::read(entry_path(&c, &key)).unwrap();
    b[1000] ^= 0x40;
    fs::write(entry_path(&c, &key), b).unwrap();
    assert!(matches!(c.get(&key), Err(CacheError::Damaged { .. })));
    assert!(!stamp.exists());
}

#[test]
fn a_bzimage_hash_is_recalled_for_the_same_settled_file_version_only() {
    let d = TempDir::new("sources");
    let c = KernelCache::new(d.0.join("kernels"), 1 << 20);
    let bz = d.0.join("bzImage");
    fs::create_dir_all(&d.0).unwrap();
    fs::write(&bz, b"bzImage bytes").unwrap();
    let version = |p: &Path| Version::of(&fs::metadata(p).unwrap());
    let key = Key::of(b"bzImage bytes");
    // Hashed in the same second it was written: not trusted (a write in the same
    // clock tick would not move the change time).
    c.note_key(&version(&bz), &key);
    assert_eq!(c.known_key(&version(&bz)), None);
    std::thread::sleep(SOURCE_SETTLED + Duration::from_millis(100));
    c.note_key(&version(&bz), &key);
    assert_eq!(c.known_key(&version(&bz)), Some(key));
    // Any change (here the mode, which moves the change time) is a new version.
    let mut perm = fs::metadata(&bz).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    fs::set_permissions(&bz, perm).unwrap();
    assert_eq!(c.known_key(&version(&bz)), None);
}

#[test]
fn stamps_go_with_their_entries_and_only_the_newest_sources_are_kept() {
    let d = TempDir::new("stamps-evict");
    let c = KernelCache::new(d.0.clone(), 2 * (10_000 + TRAILER_LEN as u64));
    let keys: Vec<Key> = (0..3u8).map(|i| Key::of(&[b's', i])).collect();
    for (i, k) in keys.iter().enumerate() {
        c.put(k, &data(10_000, i as u8)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first was evicted with its stamp; an orphan stamp is removed too.
    assert!(!entry_path(&c, &keys[0]).exists());
    assert!(!d.0.join(keys[0].checked_name()).exists());
    fs::write(d.0.join(Key::of(b"gone").checked_name()), b"x").unwrap();
    let sources = d.0.join(SOURCES);
    fs::create_dir_all(&sources).unwrap();
    for i in 0..MAX_SOURCES + 5 {
        fs::write(sources.join(format!("{i}")), b"x").unwrap();
    }
    c.put(&keys[0], &data(10_000, 0)).unwrap();
    assert!(!d.0.join(Key::of(b"gone").checked_name()).exists());
    assert_eq!(fs::read_dir(&sources).unwrap().count(), MAX_SOURCES);
}

#[test]
fn the_default_directory_follows_xdg_then_home() {
    // Reads the variables only: the rule itself, without changing the environment
    // other tests see.
    let dir = KernelCache::default_dir();
    match std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
        Some(x) if x.is_absolute() => assert_eq!(dir, Some(x.join("granule/kernels"))),
        _ => match std::env::var_os("HOME").map(PathBuf::from) {
            Some(h) if h.is_absolute() => {
                assert_eq!(dir, Some(h.join(".cache/granule/kernels")))
            }
            _ => assert_eq!(dir, None),
        },
    }
}
