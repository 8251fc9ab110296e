//! KVM binary statistics (KVM_GET_STATS_FD), parsed generically by name.
//!
//! Layout (Documentation/virt/kvm/api.rst): a header of six u32 {flags, name_size,
//! num_desc, id_offset, desc_offset, data_offset}; `num_desc` descriptors of
//! {u32 flags; s16 exponent; u16 size; u32 offset; u32 bucket_size; char name[name_size]};
//! values as u64 at data_offset + offset.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use thiserror::Error;

/// _IO(KVMIO, 0xce).
const KVM_GET_STATS_FD: libc::c_ulong = 0xae << 8 | 0xce;
const HEADER: usize = 24;
const DESC_FIXED: usize = 16;

#[derive(Debug, Error)]
pub enum StatsError {
    #[error("KVM_GET_STATS_FD failed: {0}")]
    Open(io::Error),
    #[error("reading KVM statistics: {0}")]
    Read(io::Error),
    #[error("malformed KVM statistics: {0}")]
    Malformed(&'static str),
}

/// Every statistic by name; histograms keep all their buckets.
pub type Stats = BTreeMap<String, Vec<u64>>;

fn u32_at(b: &[u8], at: usize) -> Result<u32, StatsError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(StatsError::Malformed("truncated"))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, StatsError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(StatsError::Malformed("truncated"))
}

/// Parses a whole stats file image.
pub fn parse(b: &[u8]) -> Result<Stats, StatsError> {
    let name_size = u32_at(b, 4)? as usize;
    let num_desc = u32_at(b, 8)? as usize;
    let desc_offset = u32_at(b, 16)? as usize;
    let data_offset = u32_at(b, 20)? as usize;
    if name_size == 0 || name_size > 4096 || num_desc > 100_000 {
        return Err(StatsError::Malformed("implausible header"));
    }
    let stride = DESC_FIXED + name_size;
    let mut out = Stats::new();
    for i in 0..num_desc {
        let d = desc_offset + i * stride;
        let size = usize::from(u16_at(b, d + 6)?);
        let offset = u32_at(b, d + 8)? as usize;
        let raw_name = b
            .get(d + DESC_FIXED..d + stride)
            .ok_or(StatsError::Malformed("truncated name"))?;
        let name = String::from_utf8_lossy(raw_name.split(|&c| c == 0).next().unwrap_or_default())
            .into_owned();
        let values = (0..size)
            .map(|k| {
                let at = data_offset + offset + k * 8;
                b.get(at..at + 8)
                    .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
                    .ok_or(StatsError::Malformed("value out of bounds"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(name, values);
    }
    Ok(out)
}

/// Opens the stats fd of a VM or vCPU fd.
pub fn open(fd: &impl AsRawFd) -> Result<OwnedFd, StatsError> {
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), KVM_GET_STATS_FD as _, 0) };
    if r < 0 {
        return Err(StatsError::Open(io::Error::last_os_error()));
    }
    // SAFETY: `r` is a fresh fd returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Reads all statistics of a VM or vCPU fd.
pub fn read(fd: &impl AsRawFd) -> Result<Stats, StatsError> {
    read_stats_fd(&std::fs::File::from(open(fd)?))
}

/// Reads all statistics from a stats fd [`open`] returned (it stays valid after its
/// vCPU's thread has ended, so it can be read then).
pub fn read_stats_fd(file: &std::fs::File) -> Result<Stats, StatsError> {
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, 0)
        .map_err(StatsError::Read)?;
    let name_size = u32_at(&header, 4)? as usize;
    let num_desc = u32_at(&header, 8)? as usize;
    let desc_end = u32_at(&header, 16)? as usize + num_desc * (DESC_FIXED + name_size);
    let data_offset = u32_at(&header, 20)? as usize;
    // Data follows the descriptors; its size is the largest offset + size among them, so
    // read generously and let `parse` bounds-check.
    let mut buf = vec![0u8; desc_end.max(data_offset) + 64 * 1024];
    let mut got = 0;
    while got < buf.len() {
        match file
            .read_at(&mut buf[got..], got as u64)
            .map_err(StatsError::Read)?
        {
            0 => break,
            n => got += n,
        }
    }
    buf.truncate(got);
    parse(&buf)
}

/// Exit counters of vCPU statistics by name (x86: `exits`, `io_exits`, `halt_exits`,
/// ...; arm64: `exits`, `mmio_exit_user`, `wfi_exit_stat`, ...), summed into `into`.
pub fn add_exit_counts(stats: &Stats, into: &mut BTreeMap<String, u64>) {
    for (name, values) in stats.iter().filter(|(n, _)| n.contains("exit")) {
        if let [value] = values.as_slice() {
            let sum = into.entry(name.clone()).or_insert(0);
            *sum = sum.saturating_add(*value);
        }
    }
}

/// The x86 stage-2 leaf counts by leaf size, from VM statistics.
pub fn leaf_counts(stats: &Stats) -> Option<BTreeMap<u64, u64>> {
    let get = |n: &str| stats.get(n).and_then(|v| v.first().copied());
    Some(BTreeMap::from([
        (4 << 10, get("pages_4k")?),
        (2 << 20, get("pages_2m")?),
        (1 << 30, get("pages_1g").unwrap_or(0)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_counters_are_summed_by_name_and_histograms_and_others_left_out() {
        let vcpu = |exits: u64, io: u64| -> Stats {
            [
                ("exits", vec![exits]),
                ("io_exits", vec![io]),
                ("halt_poll_success_ns", vec![7]),
                ("halt_wait_hist", vec![1, 2, 3]),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect()
        };
        let mut sum = BTreeMap::new();
        add_exit_counts(&vcpu(10, 4), &mut sum);
        add_exit_counts(&vcpu(u64::MAX, 1), &mut sum);
        let want: BTreeMap<String, u64> = [("exits".to_string(), u64::MAX), ("io_exits".into(), 5)]
            .into_iter()
            .collect();
        assert_eq!(sum, want);
    }

    /// Builds a stats image the way the kernel lays it out.
    fn image(entries: &[(&str, &[u64])]) -> Vec<u8> {
        let name_size = 48usize;
        let desc_offset = HEADER + 8; // id string in between
        let data_offset = desc_offset + entries.len() * (DESC_FIXED + name_size);
        let mut b = vec![0u8; data_offset];
        for (i, v) in [
            0u32,
            name_size as u32,
            entries.len() as u32,
            HEADER as u32,
            desc_offset as u32,
            data_offset as u32,
        ]
        .iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let mut off = 0usize;
        for (i, (name, values)) in entries.iter().enumerate() {
            let d = desc_offset + i * (DESC_FIXED + name_size);
            b[d + 6..d + 8].copy_from_slice(&(values.len() as u16).to_le_bytes());
            b[d + 8..d + 12].copy_from_slice(&(off as u32).to_le_bytes());
            b[d + DESC_FIXED..d + DESC_FIXED + name.len()].copy_from_slice(name.as_bytes());
            for v in *values {
                b.extend_from_slice(&v.to_le_bytes());
            }
            off += values.len() * 8;
        }
        b
    }

    #[test]
    fn parses_named_values_and_histograms() {
        let b = image(&[
            ("pages_4k", &[513]),
            ("pages_2m", &[2047]),
            ("halt_wait_hist", &[1, 2, 3]),
        ]);
        let s = parse(&b).unwrap();
        assert_eq!(s["pages_4k"], vec![513]);
        assert_eq!(s["halt_wait_hist"], vec![1, 2, 3]);
        let counts = leaf_counts(&s).unwrap();
        assert_eq!(
            (counts[&4096], counts[&(2 << 20)], counts[&(1 << 30)]),
            (513, 2047, 0)
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(parse(&[]).is_err());
        let mut b = image(&[("pages_4k", &[1])]);
        b.truncate(b.len() - 4);
        assert!(parse(&b).is_err());
        let mut huge = image(&[("x", &[1])]);
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&huge).is_err());
    }
}
