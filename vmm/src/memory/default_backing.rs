//! The backing of a zone given without `backing=`: THP where the host's THP mode lets
//! a mapping ask for huge pages, else 4 KiB pages, with the reason recorded in the
//! zone so the report can say which was chosen and why.
//!
//! THP is the default because it is the only huge-page backing that needs no host
//! set-up: with 4 KiB pages behind guest RAM, KVM can only map 4 KiB stage-2 leaves,
//! and a guest booted with defaults would get no huge leaves at all. THP mode
//! `madvise` honours the MADV_HUGEPAGE granule applies to THP zones, `always` needs no
//! advice; under `never` (or without THP) asking changes nothing, so 4 KiB pages are
//! chosen and named as such.

use super::backing::Backing;
use super::zone::ZoneConfig;

/// Where the host's THP mode is read.
pub const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// The backing for a zone without `backing=` on a host whose THP mode is `mode` (the
/// bracketed choice of [`THP_ENABLED`], or "unavailable"), and why.
pub fn choose(mode: &str) -> (Backing, String) {
    match mode {
        "always" | "madvise" => (
            Backing::Thp,
            format!("default: host THP mode is {mode}, so THP"),
        ),
        "never" => (
            Backing::Anon4k,
            format!(
                "default: host THP mode is never, so 4k (write madvise to {THP_ENABLED}, \
                 or give backing=hugetlb-2m, for huge pages)"
            ),
        ),
        other => (
            Backing::Anon4k,
            format!("default: host THP is {other}, so 4k"),
        ),
    }
}

/// Gives every zone without `backing=` the default for THP mode `mode`.
pub fn apply(zones: &mut [ZoneConfig], mode: &str) {
    for z in zones.iter_mut().filter(|z| !z.backing_given) {
        let (backing, why) = choose(mode);
        z.backing = backing;
        z.backing_default = Some(why);
    }
}

/// [`apply`] with this host's THP mode.
pub fn apply_host(zones: &mut [ZoneConfig]) {
    apply(zones, &crate::probe::thp().enabled);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::parse_zone;

    #[test]
    fn thp_where_the_mode_honours_advice_else_4k_with_the_reason() {
        for (mode, backing, says) in [
            ("madvise", Backing::Thp, "host THP mode is madvise"),
            ("always", Backing::Thp, "host THP mode is always"),
            ("never", Backing::Anon4k, "host THP mode is never, so 4k"),
            ("unavailable", Backing::Anon4k, "host THP is unavailable"),
        ] {
            let (b, why) = choose(mode);
            assert_eq!(b, backing, "{mode}");
            assert!(why.contains(says), "{mode}: {why}");
        }
    }

    #[test]
    fn only_zones_without_a_backing_get_the_default() {
        let mut zones = vec![
            parse_zone("1G").unwrap(),
            parse_zone("size=1G,backing=4k").unwrap(),
            parse_zone("size=64M,prefault=on").unwrap(),
        ];
        apply(&mut zones, "madvise");
        let got: Vec<_> = zones
            .iter()
            .map(|z| (z.backing, z.backing_default.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                (Backing::Thp, true),
                (Backing::Anon4k, false),
                (Backing::Thp, true)
            ]
        );
        apply(&mut zones, "never");
        assert_eq!(zones[0].backing, Backing::Anon4k, "applied again, as asked");
    }
}
