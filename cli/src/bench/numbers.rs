//! Human units on the command line and in reports ("64MiB", "2.5s"), and the order statistics
//! the report is made of (median, percentiles, the median round).

use std::time::Duration;

/// Largest object size accepted: every worker holds its whole object in memory.
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;

/// Parses a byte size: a number and an optional unit, case-insensitive. `B` or nothing is
/// bytes; `K`, `KiB`, `M`, `MiB`, `G`, `GiB` are powers of 1024; `kB`, `MB`, `GB` are powers
/// of 1000. Decimals are allowed if the result is a whole number of bytes ("1.5MiB").
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit: use B, KiB, MiB, GiB or TiB, e.g. 4KiB or 64MiB"
            ))
        }
    };
    let bad = || format!("`{s}` is not a size: use a number and a unit, e.g. 4KiB or 64MiB");
    if num.is_empty() {
        return Err(bad());
    }
    let bytes = if num.contains('.') {
        let v: f64 = num.parse().map_err(|_| bad())?;
        let b = v * unit_bytes as f64;
        if b.fract() != 0.0 || b > u64::MAX as f64 {
            return Err(format!("`{s}` is not a whole number of bytes"));
        }
        b as u64
    } else {
        let v: u64 = num.parse().map_err(|_| bad())?;
        v.checked_mul(unit_bytes)
            .ok_or_else(|| format!("`{s}` is too large"))?
    };
    if bytes == 0 {
        return Err(format!("`{s}` is zero: sizes must be at least 1 byte"));
    }
    Ok(bytes)
}

/// Parses an object size for `--sizes`: a [`parse_size`] of at most [`MAX_OBJECT_SIZE`].
pub fn parse_object_size(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s)?;
    if bytes > MAX_OBJECT_SIZE {
        return Err(format!(
            "`{s}` is over 1GiB: each worker holds its object in memory, use a smaller size"
        ));
    }
    Ok(bytes)
}

/// Parses a duration: seconds as a number ("5", "2.5"), or with a unit `s` or `ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use seconds, e.g. 5, 2.5s or 500ms"))?;
    let secs = v * scale;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(format!(
            "`{s}` is out of range: use more than 0 and at most 3600 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a byte size with the largest binary unit that divides it ("4 KiB", "64 MiB"),
/// or with two decimals when none does.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    for (unit, name) in UNITS {
        if bytes >= unit {
            return format!("{:.2} {name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes} B")
}

/// Bytes per second as MiB/s.
pub fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 / (1 << 20) as f64 / secs
}

/// The median of `values` (the mean of the two middle ones for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p`-th percentile (0-100) of ascending `sorted` values, nearest-rank method: the
/// smallest value with at least `p` % of the values at or below it; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Index in `values` of the median element (the lower middle for an even count), so that a
/// whole round can be reported rather than a mix of rounds. `None` when empty.
pub fn median_index(values: &[f64]) -> Option<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    idx.get(values.len().checked_sub(1)? / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size(" 64 MiB "), Ok(64 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("1kB"), Ok(1000));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
    }

    #[test]
    fn bad_sizes_are_refused_with_a_hint() {
        for bad in [
            "",
            "MiB",
            "4XB",
            "0",
            "0KiB",
            "-1",
            "1.1B",
            "1..5MiB",
            "99999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("4XB").unwrap_err().contains("e.g. 4KiB"));
        assert!(parse_object_size("2GiB").is_err());
        assert_eq!(parse_object_size("1GiB"), Ok(1 << 30));
    }

    #[test]
    fn durations_parse_with_or_without_unit() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "0", "-1", "x", "4000", "1h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sizes_format_back_to_human_units() {
        assert_eq!(format_size(4096), "4 KiB");
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1500), "1.46 KiB");
        assert_eq!(format_size(10), "10 B");
        for s in ["4KiB", "1MiB", "64MiB"] {
            let b = parse_size(s).unwrap();
            assert_eq!(parse_size(&format_size(b).replace(' ', "")), Ok(b));
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        // Few samples: p99 is the largest one, never past the end.
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 99.0), 3.0);
        assert_eq!(percentile(&[5.0], 50.0), 5.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn median_index_picks_a_real_round() {
        assert_eq!(median_index(&[30.0, 10.0, 20.0]), Some(2));
        assert_eq!(median_index(&[1.0, 4.0, 3.0, 2.0]), Some(3));
        assert_eq!(median_index(&[5.0]), Some(0));
        assert_eq!(median_index(&[]), None);
    }

    #[test]
    fn throughput_in_mib_per_s() {
        assert_eq!(mib_per_s(64 << 20, 2.0), 32.0);
        assert_eq!(mib_per_s(1, 0.0), 0.0);
    }
}
