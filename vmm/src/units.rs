//! Byte sizes as users write and read them: `512M`, `4G`, `1.5 GiB`.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid size '{input}': {why}; expected a whole number of bytes with an optional K, M, G or T suffix (powers of 1024), e.g. 512M or 4G")]
pub struct SizeError {
    pub input: String,
    pub why: &'static str,
}

/// Parses `4096`, `64K`, `512M`, `4G`, `1T` (also `4GiB`, `4gb`).
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = |why| SizeError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(err("it does not start with a number"));
    }
    let (num, suffix) = s.split_at(digits);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(err("unknown suffix")),
    };
    let n: u64 = num.parse().map_err(|_| err("the number is too large"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| err("the size does not fit in 64 bits"))
}

/// Parses an address or offset: `0x` hex, or a decimal with an optional size suffix
/// (`0xd0000000`, `3221225472`, `3G`).
pub fn parse_addr(s: &str) -> Option<u64> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => parse_size(t).ok(),
    }
}

/// Formats bytes exactly: the largest binary unit in which the value is a whole number
/// or has one exact decimal (`1.5 GiB`, `2044 KiB`, never a rounded `2.0 MiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    for (i, name) in UNITS.iter().enumerate().rev() {
        let unit = 1u128 << (10 * i);
        let b = u128::from(bytes);
        if b < unit && i > 0 {
            continue;
        }
        if b % unit == 0 {
            return format!("{} {name}", b / unit);
        }
        if (b * 10) % unit == 0 {
            return format!("{}.{} {name}", b / unit, (b * 10 / unit) % 10);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
    }

    #[test]
    fn bad_sizes_name_the_input_and_the_form() {
        for bad in [
            "",
            "G",
            "1.5G",
            "-1G",
            "12Q",
            "99999999999999999999",
            "20000000T",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("e.g. 512M"), "{e}");
        }
    }

    #[test]
    fn addresses_take_hex_decimal_or_sizes() {
        assert_eq!(parse_addr("0xd0000000"), Some(0xd000_0000));
        assert_eq!(parse_addr("4096"), Some(4096));
        assert_eq!(parse_addr("3G"), Some(3 << 30));
        assert_eq!(parse_addr("0xzz"), None);
        assert_eq!(parse_addr("0x1_0000_0000_0000_0000"), None);
    }

    #[test]
    fn sizes_format_readably() {
        assert_eq!(format_size(2 << 20), "2 MiB");
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
        assert_eq!(format_size(100), "100 B");
        assert_eq!(format_size(0x1ff000), "2044 KiB");
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(u64::MAX), "18446744073709551615 B");
    }
}
