//! Feature extraction and standard scaling.
//!
//! The features are those of the original design, computed causally: the
//! features of the point at time `t` use only points at or before `t`, so a
//! streaming detector can compute each row once, on arrival.
//!
//! Per series (in this order):
//!
//! | name | definition |
//! |---|---|
//! | `value` | the value itself |
//! | `rate_of_change` | first difference divided by the time step in seconds (0 for the first point or a zero step) |
//! | `ma5`, `ma15` | mean of the last 5 / 15 values, the current one included (fewer at the start) |
//! | `volatility` | population standard deviation of the last 10 values |
//! | `first_difference` | `v[t] − v[t−1]` (0 for the first point) |
//! | `relative_change` | `(v[t] − v[t−1]) / abs(v[t−1])`, clamped to ±[`RELATIVE_CHANGE_CLAMP`]; 0 when `v[t−1] = 0` |
//!
//! and once per row: `hour_of_day` (0–23, UTC) and `day_of_week` (0 = Monday,
//! UTC). A multivariate extractor (several aligned series of one host)
//! concatenates each series' seven features, names prefixed with the series
//! name, then the two time features.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::stats::mean_std;
use crate::{Error, Matrix};

/// Names of the per-series features, in row order.
pub const SERIES_FEATURES: [&str; 7] = [
    "value",
    "rate_of_change",
    "ma5",
    "ma15",
    "volatility",
    "first_difference",
    "relative_change",
];

/// Names of the per-row calendar features, appended after the series features.
pub const TIME_FEATURES: [&str; 2] = ["hour_of_day", "day_of_week"];

/// Bound on `relative_change`: a value leaving a near-zero baseline would
/// otherwise produce ratios of 1e9 and more that swamp the scaler's moments.
pub const RELATIVE_CHANGE_CLAMP: f64 = 100.0;

/// The longest look-back any feature needs (the 15-point moving average).
const LOOKBACK: usize = 15;

/// `(hour_of_day, day_of_week)` of a Unix timestamp in milliseconds, UTC,
/// with Monday = 0 as in pandas.
pub fn time_features(ts_ms: i64) -> (f64, f64) {
    let hour = ts_ms.div_euclid(3_600_000).rem_euclid(24);
    // 1970-01-01 was a Thursday (3 when Monday is 0).
    let dow = (ts_ms.div_euclid(86_400_000) + 3).rem_euclid(7);
    (hour as f64, dow as f64)
}

/// The causal state of one series: its last [`LOOKBACK`] values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SeriesState {
    recent: VecDeque<f64>,
}

impl SeriesState {
    /// Appends `value` (observed `dt_s` seconds after the previous point) and
    /// writes its seven features to `out`.
    fn push(&mut self, value: f64, dt_s: f64, out: &mut Vec<f64>) {
        let prev = self.recent.back().copied();
        if self.recent.len() == LOOKBACK {
            self.recent.pop_front();
        }
        self.recent.push_back(value);
        let diff = prev.map_or(0.0, |p| value - p);
        let rate = if dt_s > 0.0 { diff / dt_s } else { 0.0 };
        let relative = match prev {
            Some(p) if p != 0.0 => {
                (diff / p.abs()).clamp(-RELATIVE_CHANGE_CLAMP, RELATIVE_CHANGE_CLAMP)
            }
            _ => 0.0,
        };
        let tail_mean = |k: usize| {
            let k = k.min(self.recent.len());
            self.recent.iter().rev().take(k).sum::<f64>() / k as f64
        };
        let (_, volatility) = mean_std(self.recent.iter().rev().take(10).copied());
        out.extend_from_slice(&[
            value,
            rate,
            tail_mean(5),
            tail_mean(15),
            volatility,
            diff,
            relative,
        ]);
    }
}

/// Turns (timestamp, values) rows into feature rows, causally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureExtractor {
    series: Vec<SeriesState>,
    names: Vec<String>,
    last_ts_ms: Option<i64>,
}

impl FeatureExtractor {
    /// Features of a single series (nine per row).
    pub fn univariate() -> Self {
        Self {
            series: vec![SeriesState::default()],
            names: SERIES_FEATURES
                .iter()
                .chain(TIME_FEATURES.iter())
                .map(|s| s.to_string())
                .collect(),
            last_ts_ms: None,
        }
    }

    /// Features of several aligned series (`7 × k + 2` per row); feature names
    /// are `<series>.<feature>`.
    pub fn multivariate<S: AsRef<str>>(series_names: &[S]) -> Result<Self, Error> {
        if series_names.is_empty() {
            return Err(Error::Config(
                "a multivariate model needs at least one series".into(),
            ));
        }
        let mut names = Vec::with_capacity(series_names.len() * SERIES_FEATURES.len() + 2);
        for s in series_names {
            for f in SERIES_FEATURES {
                names.push(format!("{}.{f}", s.as_ref()));
            }
        }
        names.extend(TIME_FEATURES.iter().map(|s| s.to_string()));
        Ok(Self {
            series: vec![SeriesState::default(); series_names.len()],
            names,
            last_ts_ms: None,
        })
    }

    /// Number of input series per row.
    pub fn n_series(&self) -> usize {
        self.series.len()
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    /// Feature names, in row order.
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// Consumes one row and writes its features into `out` (cleared first).
    ///
    /// Rows must come in time order (equal timestamps are accepted) with one
    /// finite value per series; a rejected row leaves the state unchanged.
    pub fn push_into(
        &mut self,
        ts_ms: i64,
        values: &[f64],
        out: &mut Vec<f64>,
    ) -> Result<(), Error> {
        if values.len() != self.series.len() {
            return Err(Error::Shape(format!(
                "expected {} values per row, got {}",
                self.series.len(),
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "input value",
                at: format!("timestamp {ts_ms} ms, series {i}"),
            });
        }
        if let Some(last) = self.last_ts_ms
            && ts_ms < last
        {
            return Err(Error::OutOfOrder {
                last_ms: last,
                got_ms: ts_ms,
            });
        }
        let dt_s = self
            .last_ts_ms
            .map_or(0.0, |last| (ts_ms - last) as f64 / 1000.0);
        self.last_ts_ms = Some(ts_ms);
        out.clear();
        for (state, &v) in self.series.iter_mut().zip(values) {
            state.push(v, dt_s, out);
        }
        let (hour, dow) = time_features(ts_ms);
        out.push(hour);
        out.push(dow);
        Ok(())
    }

    /// Consumes one row and returns its features.
    pub fn push(&mut self, ts_ms: i64, values: &[f64]) -> Result<Vec<f64>, Error> {
        let mut out = Vec::with_capacity(self.n_features());
        self.push_into(ts_ms, values, &mut out)?;
        Ok(out)
    }
}

/// The univariate feature matrix of a whole series (row `i` uses points `..=i`).
pub fn extract_univariate(timestamps_ms: &[i64], values: &[f64]) -> Result<Matrix, Error> {
    if timestamps_ms.len() != values.len() {
        return Err(Error::Shape(
            "timestamps and values differ in length".into(),
        ));
    }
    let mut fx = FeatureExtractor::univariate();
    let mut data = Vec::with_capacity(values.len() * fx.n_features());
    let mut row = Vec::with_capacity(fx.n_features());
    for (&t, &v) in timestamps_ms.iter().zip(values) {
        fx.push_into(t, &[v], &mut row)?;
        data.extend_from_slice(&row);
    }
    Matrix::new(values.len(), fx.n_features(), data)
}

/// Per-feature standardisation `(x − mean) / std`, fitted on a training window.
///
/// A constant feature gets scale 1 (as scikit-learn's `StandardScaler`), so it
/// maps to 0 instead of dividing by zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl StandardScaler {
    /// Fits the per-column mean and population standard deviation.
    pub fn fit(x: &Matrix) -> Result<Self, Error> {
        if x.rows() == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        let (mean, scale) = (0..x.cols())
            .map(|j| {
                let (m, s) = mean_std((0..x.rows()).map(|i| x.get(i, j)));
                (
                    m,
                    if s > f64::EPSILON * m.abs().max(1.0) {
                        s
                    } else {
                        1.0
                    },
                )
            })
            .unzip();
        Ok(Self { mean, scale })
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.mean.len()
    }

    /// Scales one row into `out` (cleared first).
    pub fn transform_into(&self, row: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(
            row.iter()
                .zip(self.mean.iter().zip(&self.scale))
                .map(|(x, (m, s))| (x - m) / s),
        );
    }

    /// Scales every row of `x`.
    pub fn transform(&self, x: &Matrix) -> Result<Matrix, Error> {
        if x.cols() != self.n_features() {
            return Err(Error::Shape(format!(
                "the scaler has {} features, the matrix {}",
                self.n_features(),
                x.cols()
            )));
        }
        let mut data = Vec::with_capacity(x.as_slice().len());
        let mut row = Vec::with_capacity(x.cols());
        for r in x.iter_rows() {
            self.transform_into(r, &mut row);
            data.extend_from_slice(&row);
        }
        Matrix::new(x.rows(), x.cols(), data)
    }
}

/// Per-feature robust standardisation `(x − median) / (1.4826 · MAD)`,
/// fitted on a training window.
///
/// The median and MAD ignore the few extreme rows a window of live data
/// holds (the spike being explained, an earlier incident), so a feature's
/// standardised value says how unusual it is against the series' ordinary
/// behaviour rather than against a spread the outliers inflated. A feature
/// whose MAD is 0 (mostly constant, e.g. the relative change of a flat
/// series) falls back to its standard deviation, and a constant one to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustScaler {
    center: Vec<f64>,
    scale: Vec<f64>,
}

impl RobustScaler {
    /// Fits the per-column median and scale.
    pub fn fit(x: &Matrix) -> Result<Self, Error> {
        if x.rows() == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        let mut col = Vec::with_capacity(x.rows());
        let (center, scale) = (0..x.cols())
            .map(|j| {
                col.clear();
                col.extend((0..x.rows()).map(|i| x.get(i, j)));
                let (_, std) = mean_std(col.iter().copied());
                let (median, mad) = crate::stats::median_mad(&mut col);
                let tiny = f64::EPSILON * median.abs().max(1.0);
                let scale = if mad * 1.4826 > tiny {
                    mad * 1.4826
                } else if std > tiny {
                    std
                } else {
                    1.0
                };
                (median, scale)
            })
            .unzip();
        Ok(Self { center, scale })
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.center.len()
    }

    /// Scales one row into `out` (cleared first).
    pub fn transform_into(&self, row: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(
            row.iter()
                .zip(self.center.iter().zip(&self.scale))
                .map(|(x, (m, s))| (x - m) / s),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_features() {
        // 2014-04-01 00:00:00 UTC was a Tuesday.
        assert_eq!(time_features(1_396_310_400_000), (0.0, 1.0));
        // 1970-01-01 00:00 Thursday; one hour before was Wednesday 23:00.
        assert_eq!(time_features(0), (0.0, 3.0));
        assert_eq!(time_features(-3_600_000), (23.0, 2.0));
    }

    #[test]
    fn univariate_rows() {
        let ts: Vec<i64> = (0..20).map(|i| i * 300_000).collect();
        let vs: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let m = extract_univariate(&ts, &vs).expect("valid");
        assert_eq!(m.cols(), 9);
        // First row: no history.
        assert_eq!(&m.row(0)[..7], &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let r = m.row(19);
        assert_eq!(r[0], 19.0);
        assert!((r[1] - 1.0 / 300.0).abs() < 1e-15);
        assert_eq!(r[2], 17.0); // mean of 15..=19
        assert_eq!(r[3], 12.0); // mean of 5..=19
        let expected_vol = (99.0f64 / 12.0).sqrt(); // std of 10 consecutive integers
        assert!((r[4] - expected_vol).abs() < 1e-12);
        assert_eq!(r[5], 1.0);
        assert!((r[6] - 1.0 / 18.0).abs() < 1e-15);
    }

    #[test]
    fn rows_are_validated() {
        let mut fx = FeatureExtractor::multivariate(&["cpu", "mem"]).expect("names");
        assert_eq!(fx.n_features(), 16);
        assert_eq!(fx.feature_names()[7], "mem.value");
        assert!(fx.push(10, &[1.0]).is_err());
        assert!(fx.push(10, &[1.0, f64::NAN]).is_err());
        fx.push(10, &[1.0, 2.0]).expect("valid");
        assert!(matches!(
            fx.push(9, &[1.0, 2.0]),
            Err(Error::OutOfOrder { .. })
        ));
        // Zero previous value: relative change is defined as 0, not infinite.
        let mut fx = FeatureExtractor::univariate();
        fx.push(0, &[0.0]).expect("valid");
        let row = fx.push(1000, &[5.0]).expect("valid");
        assert_eq!(row[6], 0.0);
        let row = fx.push(2000, &[5e12]).expect("valid");
        assert_eq!(row[6], RELATIVE_CHANGE_CLAMP);
    }

    #[test]
    fn scaler_standardises_and_handles_constants() {
        let x = Matrix::from_rows(&[[1.0, 5.0], [3.0, 5.0]]).expect("finite");
        let s = StandardScaler::fit(&x).expect("rows");
        let t = s.transform(&x).expect("shape");
        assert_eq!(t.row(0), &[-1.0, 0.0]);
        assert_eq!(t.row(1), &[1.0, 0.0]);
    }

    #[test]
    fn robust_scaler_ignores_outliers_and_falls_back() {
        // Column 0: 1..=9 plus one huge outlier; median 5.5, MAD 2.5.
        // Column 1: constant except one value (MAD 0 → standard deviation).
        // Column 2: constant (→ scale 1).
        let rows: Vec<[f64; 3]> = (1..=10)
            .map(|i| {
                let a = if i == 10 { 1e6 } else { i as f64 };
                let b = if i == 10 { 3.0 } else { 1.0 };
                [a, b, 7.0]
            })
            .collect();
        let x = Matrix::from_rows(&rows).expect("finite");
        let s = RobustScaler::fit(&x).expect("rows");
        let mut out = Vec::new();
        s.transform_into(&[5.5 + 1.4826 * 2.5, 1.0, 8.0], &mut out);
        assert!((out[0] - 1.0).abs() < 1e-12, "{out:?}");
        // Column 1: median 1, std 0.6.
        assert!((out[1] - 0.0).abs() < 1e-12);
        assert_eq!(out[2], 1.0);
        s.transform_into(&[5.5, 2.2, 7.0], &mut out);
        assert!((out[1] - 2.0).abs() < 1e-12, "{out:?}");
        assert_eq!(s.n_features(), 3);
        assert!(RobustScaler::fit(&Matrix::new(0, 3, vec![]).expect("empty")).is_err());
    }
}
