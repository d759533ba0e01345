//! Scoring detections the way the Numenta Anomaly Benchmark (NAB) does, so
//! benchmarks can grade a detector on labelled public data.
//!
//! From NAB's sweeper: the first 15% of a file (at most 750 rows) is
//! probation and is not scored. A detection inside a labelled window is a
//! true positive worth `A_TP · σ(position) / σ(−1)`, where `σ(y) = 2 /
//! (1 + e^{5y}) − 1` and `position` runs from −1 at the window's start to 0
//! at its end, so earlier is better; only a window's best (earliest)
//! detection counts. A window without detection costs `A_FN`. A detection
//! outside every window is a false positive worth `A_FP · σ(distance past the
//! previous window, in window widths)`, or `−A_FP` when no window precedes
//! it. Scores are normalised per corpus as `100 · (raw − null) / (perfect −
//! null)`, where the null detector flags nothing and the perfect one flags
//! the first row of every window.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Error, parse_timestamp};

/// Weights of an application profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    /// Weight of a true positive.
    pub a_tp: f64,
    /// Weight of a false positive (entered as a positive number).
    pub a_fp: f64,
    /// Weight of a missed window (entered as a positive number).
    pub a_fn: f64,
}

/// NAB's standard profile.
pub const STANDARD: Profile = Profile {
    a_tp: 1.0,
    a_fp: 0.11,
    a_fn: 1.0,
};

/// NAB's reward-low-false-positives profile.
pub const REWARD_LOW_FP: Profile = Profile {
    a_tp: 1.0,
    a_fp: 0.22,
    a_fn: 1.0,
};

/// NAB's reward-low-false-negatives profile.
pub const REWARD_LOW_FN: Profile = Profile {
    a_tp: 1.0,
    a_fp: 0.11,
    a_fn: 2.0,
};

/// NAB's scaled sigmoid: 1 well before a window's end, 0 at it, → −1 after.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Number of unscored leading rows: `min(floor(0.15 n), 0.15 · 5000)`.
pub fn probation_length(rows: usize) -> usize {
    ((0.15 * rows as f64).floor() as usize).min(750)
}

/// Reads NAB's `combined_windows.json`: file name → `[start, end]` pairs, as
/// Unix milliseconds.
pub fn parse_windows(json: &str) -> Result<BTreeMap<String, Vec<(i64, i64)>>, Error> {
    let raw: BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(json).map_err(|e| Error::Decode(e.to_string()))?;
    raw.into_iter()
        .map(|(file, windows)| {
            let parsed = windows
                .iter()
                .map(|[a, b]| match (parse_timestamp(a), parse_timestamp(b)) {
                    (Some(a), Some(b)) => Ok((a, b)),
                    _ => Err(Error::Decode(format!("{file}: bad window [{a}, {b}]"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((file, parsed))
        })
        .collect()
}

/// The grade of one file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileScore {
    /// Labelled windows that reach past probation.
    pub windows: usize,
    /// Windows with at least one detection.
    pub detected: usize,
    /// Scored detections outside every window.
    pub false_positives: usize,
    /// Per detected window, time from the window's start to its first
    /// detection, in milliseconds.
    pub delays_ms: Vec<i64>,
    /// Per detected window, that delay as a share of the window's length (0–1).
    pub relative_delays: Vec<f64>,
    /// Raw NAB score of the detections.
    pub raw: f64,
    /// Raw score of the null detector (no detections).
    pub null: f64,
    /// Raw score of the perfect detector.
    pub perfect: f64,
}

impl FileScore {
    /// Normalised score of this file alone (100 perfect, 0 null).
    pub fn normalized(&self) -> f64 {
        normalize(self.raw, self.null, self.perfect)
    }

    /// Adds another file's counts and raw scores (for corpus totals).
    pub fn accumulate(&mut self, other: &FileScore) {
        self.windows += other.windows;
        self.detected += other.detected;
        self.false_positives += other.false_positives;
        self.delays_ms.extend_from_slice(&other.delays_ms);
        self.relative_delays
            .extend_from_slice(&other.relative_delays);
        self.raw += other.raw;
        self.null += other.null;
        self.perfect += other.perfect;
    }
}

/// `100 · (raw − null) / (perfect − null)`. When there is nothing to find
/// (perfect = null, a file without windows) the ratio is undefined; we report
/// `100 + 100 · raw`, so each full-cost false positive there costs 11 points.
pub fn normalize(raw: f64, null: f64, perfect: f64) -> f64 {
    if perfect == null {
        100.0 + 100.0 * (raw - null)
    } else {
        100.0 * (raw - null) / (perfect - null)
    }
}

/// Grades binary `detections` (one per row, rows in time order at
/// `timestamps_ms`) against labelled `windows` (inclusive `[start, end]`).
pub fn score_file(
    timestamps_ms: &[i64],
    detections: &[bool],
    windows: &[(i64, i64)],
    profile: Profile,
) -> Result<FileScore, Error> {
    if timestamps_ms.len() != detections.len() {
        return Err(Error::Shape("one detection per row is needed".into()));
    }
    let n = timestamps_ms.len();
    let probation = probation_length(n);
    // Windows as inclusive row ranges; empty ones (no rows inside) dropped.
    let mut spans: Vec<(usize, usize)> = windows
        .iter()
        .filter_map(|&(start, end)| {
            let first = timestamps_ms.partition_point(|&t| t < start);
            let last = timestamps_ms.partition_point(|&t| t <= end);
            (last > first).then(|| (first, last - 1))
        })
        .collect();
    spans.sort_unstable();
    let max_tp = scaled_sigmoid(-1.0);
    let mut out = FileScore::default();
    let mut best_in_window: Vec<Option<(f64, usize)>> = vec![None; spans.len()];
    let mut prev_span: Option<(usize, usize)> = None;
    let mut next = 0;
    for (i, &detected) in detections.iter().enumerate() {
        while next < spans.len() && spans[next].1 < i {
            prev_span = Some(spans[next]);
            next += 1;
        }
        let inside = next < spans.len() && spans[next].0 <= i;
        if i < probation || !detected {
            continue;
        }
        if inside {
            let (first, last) = spans[next];
            let width = (last - first + 1) as f64;
            let position = -((last - i + 1) as f64) / width;
            let weighted = scaled_sigmoid(position) * profile.a_tp / max_tp;
            if best_in_window[next].is_none_or(|(w, _)| weighted > w) {
                best_in_window[next] = Some((weighted, i));
            }
        } else {
            let unweighted = match prev_span {
                None => -1.0,
                Some((first, last)) => {
                    let width = (last - first + 1) as f64;
                    let past = (i - last) as f64 / (width - 1.0).max(1.0);
                    scaled_sigmoid(past)
                }
            };
            out.false_positives += 1;
            out.raw += unweighted * profile.a_fp;
        }
    }
    for (span, best) in spans.iter().zip(&best_in_window) {
        // A window wholly inside probation cannot be scored, as in NAB.
        if span.1 < probation {
            continue;
        }
        out.windows += 1;
        out.null -= profile.a_fn;
        out.perfect += profile.a_tp;
        match best {
            Some((weighted, row)) => {
                out.detected += 1;
                out.raw += weighted;
                let start = timestamps_ms[span.0];
                let length = (timestamps_ms[span.1] - start).max(1);
                out.delays_ms.push(timestamps_ms[*row] - start);
                out.relative_delays
                    .push((timestamps_ms[*row] - start) as f64 / length as f64);
            }
            None => out.raw -= profile.a_fn,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| i * 300_000).collect()
    }

    #[test]
    fn sigmoid_reference_points() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298_151_430_3).abs() < 1e-12);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
        assert_eq!(probation_length(4032), 604);
        assert_eq!(probation_length(10_000), 750);
    }

    #[test]
    fn null_perfect_and_false_positives() {
        let t = ts(1000);
        let windows = [(t[500], t[599])];
        let none = vec![false; 1000];
        let s = score_file(&t, &none, &windows, STANDARD).expect("shape");
        assert_eq!((s.windows, s.detected, s.raw), (1, 0, -1.0));
        assert_eq!(s.normalized(), 0.0);

        let mut first = none.clone();
        first[500] = true;
        let s = score_file(&t, &first, &windows, STANDARD).expect("shape");
        assert!((s.raw - 1.0).abs() < 1e-12);
        assert_eq!(s.normalized(), 100.0);
        assert_eq!(s.delays_ms, vec![0]);

        // Late detection earns less; a flag in probation is ignored; a flag
        // far from any window costs A_FP.
        let mut late = none.clone();
        late[590] = true;
        late[10] = true;
        late[300] = true;
        let s = score_file(&t, &late, &windows, STANDARD).expect("shape");
        assert_eq!(s.false_positives, 1);
        let tp = scaled_sigmoid(-10.0 / 100.0) / scaled_sigmoid(-1.0);
        assert!((s.raw - (tp - 0.11)).abs() < 1e-12);

        // Just after the window a false positive costs almost nothing.
        let mut after = none;
        after[500] = true;
        after[601] = true;
        let s = score_file(&t, &after, &windows, STANDARD).expect("shape");
        let fp = scaled_sigmoid(2.0 / 99.0) * 0.11;
        assert!((s.raw - (1.0 + fp)).abs() < 1e-12);
    }

    #[test]
    fn windows_file_parses() {
        let w = parse_windows(
            r#"{"a.csv": [["2014-04-10 07:15:00.000000", "2014-04-11 16:45:00.000000"]], "b.csv": []}"#,
        )
        .expect("valid");
        assert_eq!(w["a.csv"].len(), 1);
        assert!(w["a.csv"][0].0 < w["a.csv"][0].1);
        assert!(w["b.csv"].is_empty());
        assert!(parse_windows(r#"{"a.csv": [["x", "y"]]}"#).is_err());
    }
}
