//! Which log lines granule prints: `RUST_LOG` when it is set, else warnings.
//!
//! `RUST_LOG` takes a default level and per-target levels (`debug`,
//! `warn,granule_vmm::vfio=debug`). Span and field filters are not supported: parsing
//! them needs a regular-expression engine whose code, touched at every start, was
//! about a quarter of a megabyte of granule's resident memory.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;

/// What granule logs when `RUST_LOG` is unset or empty. vfio-ioctls warns about
/// interrupt indexes a device does not have, which is normal, so only its errors show.
pub const DEFAULT: &str = "warn,vfio_ioctls::vfio_device=error";

#[derive(Debug, thiserror::Error)]
#[error(
    "RUST_LOG={value:?} is not a log filter ({reason}); give a level, optionally with \
     per-target levels, e.g. RUST_LOG=debug or RUST_LOG=warn,granule_vmm::vfio=debug"
)]
pub struct LogFilterError {
    value: String,
    reason: String,
}

/// The filter for `RUST_LOG`'s value (`None`: unset).
pub fn from_env_value(value: Option<&str>) -> Result<Targets, LogFilterError> {
    let text = match value.map(str::trim) {
        None | Some("") => DEFAULT,
        Some(v) => v,
    };
    let error = |reason: String| LogFilterError {
        value: value.unwrap_or_default().to_owned(),
        reason,
    };
    // A target is a module path; these would be read as part of one and match nothing.
    if text.contains(['[', ']', '{', '}', '"']) {
        return Err(error("span and field filters are not supported".into()));
    }
    Targets::from_str(text).map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn unset_or_empty_gives_warnings_and_vfio_errors() {
        for value in [None, Some(""), Some("  ")] {
            let f = from_env_value(value).unwrap();
            assert_eq!(f.default_level(), Some(LevelFilter::WARN));
            assert!(f.would_enable("vfio_ioctls::vfio_device", &tracing::Level::ERROR));
            assert!(!f.would_enable("vfio_ioctls::vfio_device", &tracing::Level::WARN));
            assert!(!f.would_enable("granule_vmm", &tracing::Level::INFO));
        }
    }

    #[test]
    fn a_level_and_per_target_levels_are_taken() {
        let f = from_env_value(Some("debug")).unwrap();
        assert!(f.would_enable("granule_vmm::vcpu", &tracing::Level::DEBUG));
        assert!(!f.would_enable("granule_vmm::vcpu", &tracing::Level::TRACE));
        let f = from_env_value(Some("error,granule_vmm::vfio=trace")).unwrap();
        assert!(f.would_enable("granule_vmm::vfio::msix", &tracing::Level::TRACE));
        assert!(!f.would_enable("granule_vmm::vcpu", &tracing::Level::WARN));
    }

    #[test]
    fn a_bad_filter_names_the_value_and_the_fix() {
        for bad in [
            "granule_vmm=loud",
            "[span]=debug",
            "granule_vmm[{x=1}]=info",
        ] {
            let e = from_env_value(Some(bad)).unwrap_err().to_string();
            assert!(e.contains(&format!("RUST_LOG={bad:?}")), "{e}");
            assert!(e.contains("RUST_LOG=debug"), "{e}");
        }
    }
}
