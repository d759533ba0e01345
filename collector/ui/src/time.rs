//! Durations and times as Prometheus's expression browser writes them in
//! its URL parameters (`1h`, `2h30m`; `2026-12-06 16:00:00` in UTC).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

/// `1h30m`, `15s`, `500ms`, `1w` or plain seconds → milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs > 0.0).then_some((secs * 1000.0) as i64);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (total > 0).then_some(total)
}

/// Milliseconds → the shortest Prometheus duration (`1h`, `90s` → `1m30s`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, len) in [
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    out
}

/// An end/evaluation time: `YYYY-MM-DD HH:MM[:SS]` (UTC), RFC 3339 or a
/// Unix timestamp in seconds. Empty means now.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then_some((secs * 1000.0) as i64);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    None
}

/// `2026-12-06 16:00:00` (UTC), as the end input shows it.
pub fn format_time_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => ms.to_string(),
    }
}

/// An RFC 3339 timestamp from the API → `2026-12-06 16:00:00 UTC (5m ago)`.
pub fn since(rfc3339: &str, now: DateTime<Utc>) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            let ago = (now - t).num_milliseconds();
            let rel = if ago >= 0 {
                format!("{} ago", format_duration_ms(ago.max(1000) / 1000 * 1000))
            } else {
                format!("in {}", format_duration_ms(-ago / 1000 * 1000))
            };
            format!("{} UTC ({rel})", t.format("%Y-%m-%d %H:%M:%S"))
        }
        Err(_) => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("2h30m"), Some(9_000_000));
        assert_eq!(parse_duration_ms("15"), Some(15_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("1x"), None);
        assert_eq!(parse_duration_ms("h"), None);
        assert_eq!(format_duration_ms(9_000_000), "2h30m");
        assert_eq!(format_duration_ms(90_000), "1m30s");
    }

    #[test]
    fn times() {
        let t = parse_time_ms("2026-12-06 16:00:00").expect("parses");
        assert_eq!(format_time_ms(t), "2026-12-06 16:00:00");
        assert_eq!(parse_time_ms("2026-12-06T16:00:00Z"), Some(t));
        assert_eq!(parse_time_ms("1796572800"), Some(1_796_572_800_000));
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
