//! Prometheus's duration syntax (`1h30m`, `5m`, `90d`, `0`) and the two
//! ways Go prints durations (`model.Duration` as `5m`, `time.Duration` as
//! `5m0s`), which promtool's messages use.

use std::time::Duration;

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus duration: units `y w d h m s ms` in that order,
/// each at most once, integers only; `0` alone is allowed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("not a valid duration string: {s:?}");
    let mut rest = s;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (idx, unit) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())
            .ok_or_else(bad)?;
        rest = &rest[unit.0.len()..];
        total = n
            .checked_mul(unit.1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration out of range".to_string())?;
        next_unit = idx + 1;
    }
    Ok(Duration::from_millis(total))
}

/// Go's `model.Duration.String()`: `0s`, `5m`, `1h30m`, `2w`.
pub fn format_model_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (i, (unit, mult)) in UNITS.iter().enumerate() {
        // Years and weeks only when they divide exactly ("90d", not "12w6d").
        if i < 2 && !ms.is_multiple_of(*mult) {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            ms -= v * mult;
        }
    }
    out
}

/// Go's `time.Duration.String()`: `5m0s`, `1h0m0s`, `1.5s`, `500ms`, `0s`.
pub fn format_go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (div, unit) = if ns < 1_000 {
            (1, "ns")
        } else if ns < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{unit}", trim_frac(ns, div));
    }
    let secs = ns / 1_000_000_000;
    let frac_ns = ns % 1_000_000_000;
    let h = secs / 3600;
    let m = (secs / 60) % 60;
    let s = secs % 60;
    let sec_str = trim_frac(s * 1_000_000_000 + frac_ns, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{sec_str}s")
    } else if m > 0 {
        format!("{m}m{sec_str}s")
    } else {
        format!("{sec_str}s")
    }
}

fn trim_frac(v: u128, div: u128) -> String {
    let int = v / div;
    let frac = v % div;
    if frac == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{int}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "5", "1.5m", "m", "5m1h", "5mm", "-1m", "1x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_model_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_model_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_model_duration(Duration::from_secs(14 * 86400)), "2w");
        assert_eq!(
            format_model_duration(Duration::from_secs(90 * 86400)),
            "90d"
        );
        assert_eq!(format_model_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn model_duration_round_trips(ms in 0u64..10_000_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_model_duration(d)), Ok(d));
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,20}") {
            let _ = parse_duration(&s);
        }
    }
}
