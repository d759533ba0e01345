//! Scoring a `timestamp,value` CSV file as a stream: the library half of
//! `vigil anomaly score --input SERIES.csv`.
//!
//! Input is NAB's layout: an optional header line naming the columns (the
//! `timestamp` and `value` columns are found by name; without a header the
//! first two columns are used), then one row per point. Timestamps may be
//! `2014-04-01 00:00:00` (UTC, optional fraction, `T` separator allowed),
//! RFC 3339 (`2014-04-01T00:00:00Z`, any offset) or Unix seconds (integer or
//! fractional). Output is `timestamp,value,score,is_anomaly`, one row per
//! good input row, written as soon as the row is read; timestamp and value
//! are echoed as given. Rows before the model is trained have score `0`
//! (never a real score, which is in (0, 1]) and `is_anomaly` `0`.
//!
//! Lines a detector cannot take — blank, malformed, a NaN or infinite value,
//! a timestamp equal to (a duplicate) or before the previous good point's —
//! are skipped, counted by [`SkipReason`] and reported one by one to the
//! caller ([`score_csv_reporting`]); the series goes on. Only a first line
//! that is neither data nor a header naming `timestamp` and `value` stops
//! the run, since then no column can be found.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use chrono::{DateTime, NaiveDateTime};
use serde::Serialize;

use crate::{DetectorConfig, Error, StreamingDetector};

/// What a [`score_csv`] run saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScoreSummary {
    /// Data rows read and scored or passed to the detector (skipped lines
    /// not included).
    pub rows: usize,
    /// Rows that received a score (after `min_points`).
    pub scored: usize,
    /// Rows flagged as anomalous.
    pub anomalies: usize,
    /// Anomalous rows that would alert (not suppressed).
    pub alerts: usize,
    /// Highest score seen (0 if nothing was scored).
    pub max_score: f64,
    /// Lines skipped, by [`SkipReason::as_str`].
    pub skipped: BTreeMap<&'static str, usize>,
}

impl ScoreSummary {
    /// Lines skipped, all reasons together.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// Why a point (a CSV line, or a collector rule's output) did not reach the
/// detector. Real exports have all of these: clock steps, duplicated rows,
/// gaps written as `NaN`; each is skipped and counted, never the end of the
/// series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// An empty line.
    Blank,
    /// A line that is not `timestamp,value` (missing column, unparseable
    /// timestamp or value).
    Malformed,
    /// A NaN or infinite value (including Prometheus stale markers).
    NonFinite,
    /// The same timestamp as the previous point.
    Duplicate,
    /// A timestamp before the previous point's.
    OutOfOrder,
    /// The detector refused the point for another reason.
    Rejected,
}

impl SkipReason {
    /// The name used in messages and as the collector's metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Blank => "blank",
            SkipReason::Malformed => "malformed",
            SkipReason::NonFinite => "non_finite",
            SkipReason::Duplicate => "duplicate",
            SkipReason::OutOfOrder => "out_of_order",
            SkipReason::Rejected => "rejected",
        }
    }
}

/// Whether a point at `ts_ms` with `value` may follow a point at
/// `last_ts_ms` (`None`: it is the first) into a streaming detector.
pub fn check_point(last_ts_ms: Option<i64>, ts_ms: i64, value: f64) -> Result<(), SkipReason> {
    if !value.is_finite() {
        return Err(SkipReason::NonFinite);
    }
    match last_ts_ms {
        Some(last) if ts_ms == last => Err(SkipReason::Duplicate),
        Some(last) if ts_ms < last => Err(SkipReason::OutOfOrder),
        _ => Ok(()),
    }
}

/// One skipped line, as [`score_csv_reporting`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedLine {
    /// 1-based line number in the input.
    pub line: usize,
    pub reason: SkipReason,
    /// What was wrong, for a person.
    pub detail: String,
}

impl std::fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: skipped ({}): {}",
            self.line,
            self.reason.as_str(),
            self.detail
        )
    }
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
            // A data row whose timestamp is broken: a malformed line, not a
            // header.
            _ if fields.len() >= 2 && fields[1].trim().trim_matches('"').parse::<f64>().is_ok() => {
                Ok(None)
            }
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
/// Bad lines are skipped and counted in the summary (see the module docs);
/// [`score_csv_reporting`] also hands each one to the caller.
pub fn score_csv(
    input: impl BufRead,
    out: impl Write,
    cfg: &DetectorConfig,
) -> Result<ScoreSummary, Error> {
    let mut det = StreamingDetector::new(cfg.clone())?;
    score_csv_reporting(&mut det, input, out, |_| {})
}

/// [`score_csv`] with a caller-provided detector (e.g. one restored with
/// [`StreamingDetector::from_bytes`]), which keeps its state afterwards.
pub fn score_csv_with(
    det: &mut StreamingDetector,
    input: impl BufRead,
    out: impl Write,
) -> Result<ScoreSummary, Error> {
    score_csv_reporting(det, input, out, |_| {})
}

/// [`score_csv_with`], handing every skipped line to `on_skip` as it is met
/// (`vigil anomaly score` names each on stderr).
pub fn score_csv_reporting(
    det: &mut StreamingDetector,
    input: impl BufRead,
    mut out: impl Write,
    mut on_skip: impl FnMut(&SkippedLine),
) -> Result<ScoreSummary, Error> {
    let mut summary = ScoreSummary::default();
    let mut columns: Option<Columns> = None;
    let mut last_ts: Option<(i64, String)> = None;
    let mut skip = |summary: &mut ScoreSummary, line: usize, reason: SkipReason, detail: String| {
        *summary.skipped.entry(reason.as_str()).or_insert(0) += 1;
        on_skip(&SkippedLine {
            line,
            reason,
            detail,
        });
    };
    writeln!(out, "timestamp,value,score,is_anomaly")?;
    for (idx, line) in input.lines().enumerate() {
        let line_no = idx + 1;
        let line = line?;
        let text = line.trim_end_matches('\r');
        if text.trim().is_empty() {
            skip(
                &mut summary,
                line_no,
                SkipReason::Blank,
                "empty line".into(),
            );
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
        let (Some(ts_text), Some(value_text)) = (
            fields.get(cols.ts).map(|f| f.trim()),
            fields.get(cols.value).map(|f| f.trim()),
        ) else {
            let detail = format!("{} fields, no timestamp and value columns", fields.len());
            skip(&mut summary, line_no, SkipReason::Malformed, detail);
            continue;
        };
        let Some(ts) = parse_timestamp(ts_text.trim_matches('"')) else {
            let detail = format!("cannot parse timestamp {ts_text:?}");
            skip(&mut summary, line_no, SkipReason::Malformed, detail);
            continue;
        };
        let Ok(value) = value_text.trim_matches('"').parse::<f64>() else {
            let detail = format!("cannot parse value {value_text:?}");
            skip(&mut summary, line_no, SkipReason::Malformed, detail);
            continue;
        };
        if let Err(reason) = check_point(last_ts.as_ref().map(|(t, _)| *t), ts, value) {
            let detail = match (reason, &last_ts) {
                (SkipReason::NonFinite, _) => format!("value {value_text} is not a finite number"),
                (SkipReason::Duplicate, Some((_, prev))) => {
                    format!("timestamp {ts_text} repeats the previous point's ({prev})")
                }
                (_, Some((_, prev))) => {
                    format!("timestamp {ts_text} is before the previous point's ({prev})")
                }
                (_, None) => reason.as_str().to_string(),
            };
            skip(&mut summary, line_no, reason, detail);
            continue;
        }
        let verdict = match det.push(ts, value) {
            Ok(v) => v,
            Err(e) => {
                skip(&mut summary, line_no, SkipReason::Rejected, e.to_string());
                continue;
            }
        };
        last_ts = Some((ts, ts_text.to_string()));
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
    fn bad_lines_are_skipped_named_and_counted_and_the_series_goes_on() {
        let input = "timestamp,value\n\
            1396310400,1\n\
            1396310700,2\n\
            1396310700,2\n\
            1396310100,9\n\
            1396311000,NaN\n\
            \n\
            1396311300,x\n\
            oops\n\
            1396311600,+Inf\n\
            1396311900,3\n";
        let mut out = Vec::new();
        let mut det = StreamingDetector::new(DetectorConfig {
            min_points: 2,
            ..DetectorConfig::default()
        })
        .expect("valid");
        let mut skipped = Vec::new();
        let summary = score_csv_reporting(&mut det, input.as_bytes(), &mut out, |s| {
            skipped.push((s.line, s.reason))
        })
        .expect("never aborts");
        let text = String::from_utf8(out).expect("utf-8");
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].starts_with("1396310400,1,"));
        assert!(rows[1].starts_with("1396310700,2,"));
        assert!(rows[2].starts_with("1396311900,3,"));
        assert_eq!(
            skipped,
            [
                (4, SkipReason::Duplicate),
                (5, SkipReason::OutOfOrder),
                (6, SkipReason::NonFinite),
                (7, SkipReason::Blank),
                (8, SkipReason::Malformed),
                (9, SkipReason::Malformed),
                (10, SkipReason::NonFinite),
            ]
        );
        assert_eq!(summary.rows, 3);
        assert_eq!(summary.skipped_total(), 7);
        assert_eq!(summary.skipped["non_finite"], 2);
        assert_eq!(summary.skipped["malformed"], 2);
    }

    #[test]
    fn a_first_line_with_a_broken_timestamp_is_data_not_a_header() {
        let mut out = Vec::new();
        let summary = score_csv(
            "2014-13-45 00:00:00,3\n1396310400,1\n".as_bytes(),
            &mut out,
            &DetectorConfig::default(),
        )
        .expect("skips the bad first line");
        assert_eq!((summary.rows, summary.skipped["malformed"]), (1, 1));
    }

    #[test]
    fn header_columns_found_by_name_and_errors_carry_lines() {
        let input = "value,timestamp\n1.5,2014-04-01 00:00:00\n";
        let mut out = Vec::new();
        score_csv(input.as_bytes(), &mut out, &DetectorConfig::default()).expect("valid");
        assert!(String::from_utf8_lossy(&out).contains("2014-04-01 00:00:00,1.5,0.000000,0"));

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
