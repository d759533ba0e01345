//! Scoring a `timestamp,value` CSV file as a stream: the library half of
//! `vigil anomaly score --input SERIES.csv`.
//!
//! Input is NAB's layout: an optional header line naming the columns (the
//! `timestamp` and `value` columns are found by name; without a header the
//! first two columns are used), then one row per point. Timestamps may be
//! `2014-04-01 00:00:00` (UTC, optional fraction, `T` separator allowed),
//! RFC 3339 (`2014-04-01T00:00:00Z`, any offset) or Unix seconds (integer or
//! fractional). Output is `timestamp,value,score,is_anomaly`, one row per
//! input row, written as soon as the row is read; timestamp and value are
//! echoed as given. Rows before the model is trained have score `0` (never a
//! real score, which is in (0, 1]) and `is_anomaly` `0`.

use std::io::{BufRead, Write};

use chrono::{DateTime, NaiveDateTime};
use serde::Serialize;

use crate::{DetectorConfig, Error, StreamingDetector};

/// What a [`score_csv`] run saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScoreSummary {
    /// Data rows read.
    pub rows: usize,
    /// Rows that received a score (after `min_points`).
    pub scored: usize,
    /// Rows flagged as anomalous.
    pub anomalies: usize,
    /// Anomalous rows that would alert (not suppressed).
    pub alerts: usize,
    /// Highest score seen (0 if nothing was scored).
    pub max_score: f64,
}

/// Parses a timestamp in any of the accepted forms into Unix milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    match s.parse::<f64>() {
        // Reject values beyond ±292 million years rather than saturating.
        Ok(secs) if secs.is_finite() && (secs * 1000.0).abs() < 9.0e18 => {
            Some((secs * 1000.0).round() as i64)
        }
        _ => None,
    }
}

/// Column positions of the timestamp and the value.
struct Columns {
    ts: usize,
    value: usize,
}

impl Columns {
    /// Reads the header, if `fields` is one: a row whose first field is not a
    /// timestamp. `Ok(None)` means `fields` is already data.
    fn from_header(fields: &[&str], line: usize) -> Result<Option<Self>, Error> {
        if fields.first().and_then(|f| parse_timestamp(f)).is_some() {
            return Ok(None);
        }
        let find = |name: &str| {
            fields
                .iter()
                .position(|f| f.trim().trim_matches('"').eq_ignore_ascii_case(name))
        };
        match (find("timestamp"), find("value")) {
            (Some(ts), Some(value)) => Ok(Some(Self { ts, value })),
            _ => Err(Error::Csv {
                line,
                reason: "the header must name a `timestamp` and a `value` column".into(),
            }),
        }
    }
}

/// Streams `input` through a univariate [`StreamingDetector`] built from
/// `cfg`, writing `timestamp,value,score,is_anomaly` rows to `out`.
///
/// Blank lines are skipped. A malformed row, a non-finite value or a
/// timestamp older than its predecessor stops the run with the line number.
pub fn score_csv(
    input: impl BufRead,
    out: impl Write,
    cfg: &DetectorConfig,
) -> Result<ScoreSummary, Error> {
    let mut det = StreamingDetector::new(cfg.clone())?;
    score_csv_with(&mut det, input, out)
}

/// [`score_csv`] with a caller-provided detector (e.g. one restored with
/// [`StreamingDetector::from_bytes`]), which keeps its state afterwards.
pub fn score_csv_with(
    det: &mut StreamingDetector,
    input: impl BufRead,
    mut out: impl Write,
) -> Result<ScoreSummary, Error> {
    let mut summary = ScoreSummary::default();
    let mut columns: Option<Columns> = None;
    writeln!(out, "timestamp,value,score,is_anomaly")?;
    for (idx, line) in input.lines().enumerate() {
        let line_no = idx + 1;
        let line = line?;
        let text = line.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(',').collect();
        if columns.is_none()
            && let Some(header) = Columns::from_header(&fields, line_no)?
        {
            columns = Some(header);
            continue;
        }
        let cols = columns.get_or_insert(Columns { ts: 0, value: 1 });
        let field = |i: usize, name: &str| {
            fields.get(i).map(|f| f.trim()).ok_or_else(|| Error::Csv {
                line: line_no,
                reason: format!("missing {name} column"),
            })
        };
        let ts_text = field(cols.ts, "timestamp")?;
        let value_text = field(cols.value, "value")?;
        let ts = parse_timestamp(ts_text.trim_matches('"')).ok_or_else(|| Error::Csv {
            line: line_no,
            reason: format!("cannot parse timestamp {ts_text:?}"),
        })?;
        let value: f64 = value_text
            .trim_matches('"')
            .parse()
            .map_err(|_| Error::Csv {
                line: line_no,
                reason: format!("cannot parse value {value_text:?}"),
            })?;
        let verdict = det.push(ts, value).map_err(|e| Error::Csv {
            line: line_no,
            reason: e.to_string(),
        })?;
        summary.rows += 1;
        let (score, flag) = match &verdict {
            Some(s) => {
                summary.scored += 1;
                summary.max_score = summary.max_score.max(s.score);
                if s.is_anomaly {
                    summary.anomalies += 1;
                }
                if s.should_alert() {
                    summary.alerts += 1;
                }
                (s.score, u8::from(s.is_anomaly))
            }
            None => (0.0, 0),
        };
        writeln!(out, "{ts_text},{value_text},{score:.6},{flag}")?;
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_forms() {
        let nab = parse_timestamp("2014-04-01 00:00:00");
        assert_eq!(nab, Some(1_396_310_400_000));
        assert_eq!(parse_timestamp("2014-04-01 00:00:00.000000"), nab);
        assert_eq!(parse_timestamp("2014-04-01T00:00:00"), nab);
        assert_eq!(parse_timestamp("2014-04-01T02:00:00+02:00"), nab);
        assert_eq!(parse_timestamp("2014-04-01T00:00:00Z"), nab);
        assert_eq!(parse_timestamp("1396310400"), nab);
        assert_eq!(parse_timestamp("1396310400.5"), Some(1_396_310_400_500));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("1e300"), None);
    }

    fn csv(rows: usize, spike_at: usize) -> String {
        let mut s = String::from("timestamp,value\n");
        for i in 0..rows {
            let v = if i == spike_at {
                500.0
            } else {
                10.0 + (i % 7) as f64
            };
            s.push_str(&format!("{},{v}\n", 1_396_310_400 + 300 * i as i64));
        }
        s
    }

    #[test]
    fn streams_rows_and_flags_the_spike() {
        let input = csv(300, 250);
        let mut out = Vec::new();
        let summary =
            score_csv(input.as_bytes(), &mut out, &DetectorConfig::default()).expect("valid");
        assert_eq!(summary.rows, 300);
        assert_eq!(summary.scored, 200);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "timestamp,value,score,is_anomaly");
        assert_eq!(lines.len(), 301);
        assert!(lines[1].ends_with(",0.000000,0"));
        assert!(lines[251].starts_with("1396385400,500,"), "{}", lines[251]);
        assert!(
            lines[251].ends_with(",1"),
            "spike not flagged: {}",
            lines[251]
        );
        assert!(summary.anomalies >= 1 && summary.alerts >= 1);
    }

    #[test]
    fn header_columns_found_by_name_and_errors_carry_lines() {
        let input = "value,timestamp\n1.5,2014-04-01 00:00:00\n";
        let mut out = Vec::new();
        score_csv(input.as_bytes(), &mut out, &DetectorConfig::default()).expect("valid");
        assert!(String::from_utf8_lossy(&out).contains("2014-04-01 00:00:00,1.5,0.000000,0"));

        let bad = "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,x\n";
        match score_csv(bad.as_bytes(), Vec::new(), &DetectorConfig::default()) {
            Err(Error::Csv { line: 3, .. }) => {}
            other => panic!("expected a line-3 error, got {other:?}"),
        }
        let backwards = "1396310400,1\n1396310000,2\n";
        assert!(matches!(
            score_csv(backwards.as_bytes(), Vec::new(), &DetectorConfig::default()),
            Err(Error::Csv { line: 2, .. })
        ));
        assert!(
            score_csv(
                "time,val\n".as_bytes(),
                Vec::new(),
                &DetectorConfig::default()
            )
            .is_err()
        );
    }
}
