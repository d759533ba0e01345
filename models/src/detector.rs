//! The streaming detector: features → scaling → isolation forest → decision.
//!
//! Points arrive in time order. Each point's features are computed on
//! arrival from it and earlier points only, and stored with it in a ring of
//! the last [`window`](DetectorConfig::window) points. Once
//! [`min_points`](DetectorConfig::min_points) points are stored, a scaler and
//! a forest are fitted on the stored window and every later point is scored
//! *before* it joins the window (so a point never helps to explain itself).
//! The model is refitted after every
//! [`retrain_every`](DetectorConfig::retrain_every) scored points. Nothing is
//! ever recomputed for past points, so appending points never changes an
//! earlier score: there is no look-ahead.
//!
//! # Around the forest
//!
//! * **Seasonal features** ([`seasonal`](DetectorConfig::seasonal), on by
//!   default): each value's difference from the same 5-minute bucket
//!   yesterday and last week. A seasonal feature joins the model only once
//!   every point of the training window has that history, and a series
//!   whose level yesterday explains (the spread of the difference from
//!   yesterday is under half the spread of the values) is modelled without
//!   its level features (value, moving averages): the time of day explains
//!   the level, and a missing peak shows only against yesterday.
//! * **Robust scaling**: features are standardised with the window's median
//!   and `1.4826 · MAD`. Isolation-forest splits are invariant under a
//!   per-feature affine map, so this does not change scores; it makes the
//!   explanation's z ("first_difference at 7.3σ") relative to ordinary
//!   behaviour rather than to a spread the window's own outliers inflated.
//! * **Confirmation** ([`confirm_n`](DetectorConfig::confirm_n) of
//!   [`confirm_m`](DetectorConfig::confirm_m), default 1 of 1).
//! * **Re-baselining** after a lasting level shift
//!   ([`rebaseline_after`](DetectorConfig::rebaseline_after), default off):
//!   when nine in ten of the last L points lie beyond the 1st–99th
//!   percentile range of the window before them (judged after a first day,
//!   and not for series a daily pattern explains), the older points are
//!   dropped and the model is retrained on the new regime, then again each
//!   time the young window doubles. The score history is kept.
//!
//! # Scoring
//!
//! Points are scored with [`IsolationForest::mean_path_length_extrapolated`]:
//! the standard isolation-forest path length, except that a value beyond
//! the range a node was split in counts as isolated there with the
//! probability a split drawn over the widened range would have had. Plain
//! isolation forests score a point far outside the training data like the
//! most extreme training point, so a spike to 100× the usual value would
//! score like the window's own largest value; streaming detection scores
//! exactly such unseen points. Calendar features do not extrapolate (an
//! unseen weekday is not an outlier). Training points score as in
//! scikit-learn.
//!
//! # The decision
//!
//! The forest score alone is a poor alarm: its level differs from series to
//! series (a noisy series scores higher everywhere) and the forest's
//! contamination threshold flags a fixed share of every window. So a point is
//! anomalous when all of
//!
//! 1. the forest calls it an outlier (score above the contamination
//!    threshold of the current model, from its training scores);
//! 2. its score is extreme *for this series*: the robust z-score
//!    `(score − median) / (1.4826 · MAD)` over the score history (the scores
//!    of the last `window` points, taken when the model was trained) reaches
//!    [`score_z`](DetectorConfig::score_z) (default 5), or, where the
//!    history is spread so widely that even the forest's highest possible
//!    score ([`IsolationForest::max_score`], about 0.93) falls short of
//!    that, nine tenths of that highest score's z-score (a detector
//!    whose bar no point can reach is blind). The history holds
//!    only scores of points scored as new (training scores are in-sample and
//!    lower), so the detector decides once `min_points` points have been
//!    scored: with the defaults, from point 201 on;
//! 3. its score ranks at or above
//!    [`min_score_percentile`](DetectorConfig::min_score_percentile) of that
//!    history (default 99.5: the alarm is for scores this series has rarely
//!    produced, which keeps noisy and heavy-tailed series quiet). With a
//!    confirmation span M the rank is taken against the history before the
//!    last M − 1 scores, so the points of one episode do not raise the bar
//!    for each other;
//! 4. the seasonal gate ([`seasonal_gate`](DetectorConfig::seasonal_gate))
//!    does not explain it: for a series whose level the time of day
//!    explains, differences from yesterday and last week within that many
//!    robust σ make a point ordinary, however steep its daily jump;
//! 5. the recurrence gate ([`recurrence`](DetectorConfig::recurrence)) does
//!    not explain it: no stored point lies within that share of the
//!    point's own distance from the window's median (a burst the series
//!    has had recently is not news). Not applied within an episode, so a
//!    lasting anomaly stays anomalous;
//! 6. with confirmation N of M, at least N of the last M scored points
//!    (this one included) passed 1–5.
//!
//! The gates only remove anomalies: scores, history and models are the
//! same with them on or off.
//!
//! The defaults were chosen by leave-one-out cross-validation over the NAB
//! tuning series among a small grid of round values (see the crate's
//! README); they are not tuned per file.
//!
//! Its severity is the score's percentile in the score history: above
//! `critical_percentile` (p99) critical, above `warning_percentile` (p95)
//! warning, else info. An anomalous point within
//! [`suppression`](DetectorConfig::suppression) of the previous anomalous
//! point belongs to the same episode and does not alert again.
//!
//! # Explanations
//!
//! Each anomaly names the feature with the largest absolute standardised
//! value (|z| under the window's scaler). That is the feature furthest from
//! the window's typical behaviour, which is what isolates a point in random
//! axis-parallel splits; it is cheap, deterministic, and easy to read
//! ("first_difference at 7.3σ"). It is carried with the value's historical
//! mean, standard deviation and percentile in the window.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::config::DetectorConfig;
use crate::features::{FeatureExtractor, RobustScaler, SERIES_FEATURES, TIME_FEATURES};
use crate::forest::IsolationForest;
use crate::rng::Rng;
use crate::stats::{mean_std, median_mad, percentile, percentile_rank};
use crate::{Error, Matrix};

mod seasonal;

use seasonal::SeasonalMemory;
pub use seasonal::{BUCKET_MS, SEASONAL_FEATURES};

/// Consistency constant that makes the MAD estimate σ for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Share of the highest possible score's z-score that passes the z test
/// where `score_z` itself is out of reach (see `z_bar`): nine tenths of the
/// way from the usual score to the forest's ceiling.
const ATTAINABLE_Z_SHARE: f64 = 0.9;

/// Identifies a persisted detector; checked on load.
const FORMAT: &str = "vigil-models/streaming-detector";
/// Bumped whenever the persisted layout changes incompatibly.
const FORMAT_VERSION: u32 = 2;

/// How serious an anomaly is, from its score's rank in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Anomalous, but the score is not in the top 5% of the history.
    Info,
    /// Score above the warning percentile (p95) of the history.
    Warning,
    /// Score above the critical percentile (p99) of the history.
    Critical,
}

impl Severity {
    /// The lowercase label value (`info`, `warning`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The context an anomaly carries into an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyDetails {
    /// Mean of the explained series' values in the window.
    pub historical_mean: f64,
    /// Population standard deviation of those values.
    pub historical_std: f64,
    /// Percentile rank (0–100) of the current value among them.
    pub value_percentile: f64,
    /// The feature with the largest |z| (see the module docs).
    pub top_feature: String,
    /// Its standardised value.
    pub top_feature_z: f64,
}

/// The verdict on one scored point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Timestamp of the point, Unix milliseconds.
    pub timestamp_ms: i64,
    /// The isolation-forest score, in (0, 1].
    pub score: f64,
    /// Robust z-score of `score` against the score history; `None` while the
    /// detector is warming up (fewer than `min_points` scores in the history
    /// at the last retrain), when it makes no decisions.
    pub score_z: Option<f64>,
    /// Percentile rank (0–100) of `score` in the score history.
    pub score_percentile: f64,
    /// Whether the point is anomalous (see the module docs).
    pub is_anomaly: bool,
    /// Severity from `score_percentile`.
    pub severity: Severity,
    /// An anomaly in an episode that has already alerted.
    pub suppressed: bool,
    /// Explanation, present exactly when `is_anomaly`.
    pub details: Option<AnomalyDetails>,
}

impl Score {
    /// Whether this point should raise an alert: anomalous and not suppressed.
    pub fn should_alert(&self) -> bool {
        self.is_anomaly && !self.suppressed
    }
}

/// One stored point: its inputs and its (unscaled) features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    values: Vec<f64>,
    features: Vec<f64>,
    /// Indices of seasonal features whose lagged history did not exist yet
    /// (usually empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    missing: Vec<u32>,
}

/// The fitted part of the detector, replaced on every retrain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Model {
    scaler: RobustScaler,
    forest: IsolationForest,
    /// Per feature: whether scoring extrapolates beyond the training range
    /// (false for the cyclic calendar features).
    extrapolate: Vec<bool>,
    /// Median and `1.4826 · MAD` of the score history when this model was
    /// trained; `None` while the history is shorter than `min_points` (no
    /// decisions yet).
    score_scale: Option<ScoreScale>,
    /// Per series, the 1st and 99th percentile of the values trained on,
    /// leaving out the last `rebaseline_after` points: the regime a lasting
    /// shift is judged against. `None` when re-baselining is off or the
    /// window is too short to hold a reference.
    reference: Option<Vec<Option<(f64, f64)>>>,
    /// Seasonal features this model ignores (set to 0), because some
    /// training row had no history for them.
    masked: Vec<usize>,
}

/// Robust location and scale of the score history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct ScoreScale {
    median: f64,
    /// `1.4826 · MAD`, floored so a perfectly regular history cannot divide
    /// by zero.
    sigma: f64,
}

/// A streaming anomaly detector over one series or several aligned series.
///
/// See the [module documentation](self) for the algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamingDetector {
    cfg: DetectorConfig,
    extractor: FeatureExtractor,
    /// Per series, when `seasonal` is on (empty otherwise).
    seasonal: Vec<SeasonalMemory>,
    /// All feature names: the extractor's, then the seasonal ones.
    names: Vec<String>,
    points: VecDeque<Point>,
    model: Option<Model>,
    scored_since_train: usize,
    /// The scores given to the last `window` points: the history for
    /// severities and for the robust normalisation.
    scores: VecDeque<f64>,
    rng: Rng,
    last_anomaly_ms: Option<i64>,
    /// Bit `i` set: the `i`-th last scored point passed the score tests
    /// (bit 0 is the latest); the confirmation counts these.
    candidates: u64,
    points_seen: u64,
    models_trained: u64,
    /// Level shifts re-baselined on.
    rebaselines: u64,
    /// Timestamp of the first point accepted.
    first_ms: Option<i64>,
    #[serde(skip)]
    scratch: Vec<f64>,
}

impl StreamingDetector {
    /// A univariate detector.
    pub fn new(cfg: DetectorConfig) -> Result<Self, Error> {
        Self::with_extractor(cfg, FeatureExtractor::univariate())
    }

    /// A detector over several aligned series of one host, fed with
    /// [`push_row`](Self::push_row) in the order of `series_names`.
    pub fn multivariate<S: AsRef<str>>(
        cfg: DetectorConfig,
        series_names: &[S],
    ) -> Result<Self, Error> {
        Self::with_extractor(cfg, FeatureExtractor::multivariate(series_names)?)
    }

    fn with_extractor(cfg: DetectorConfig, extractor: FeatureExtractor) -> Result<Self, Error> {
        cfg.validate()?;
        let n_series = extractor.n_series();
        let mut names = extractor.feature_names().to_vec();
        let seasonal = if cfg.seasonal {
            let prefixes: Vec<String> = if n_series == 1 {
                vec![String::new()]
            } else {
                // The extractor names series features `<series>.<feature>`.
                names
                    .iter()
                    .step_by(SERIES_FEATURES.len())
                    .take(n_series)
                    .map(|n| {
                        n.strip_suffix(SERIES_FEATURES[0])
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect()
            };
            for p in &prefixes {
                names.extend(SEASONAL_FEATURES.iter().map(|f| format!("{p}{f}")));
            }
            vec![SeasonalMemory::default(); n_series]
        } else {
            Vec::new()
        };
        Ok(Self {
            rng: Rng::seed_from_u64(cfg.seed),
            points: VecDeque::with_capacity(cfg.window),
            cfg,
            extractor,
            seasonal,
            names,
            model: None,
            scored_since_train: 0,
            scores: VecDeque::new(),
            last_anomaly_ms: None,
            candidates: 0,
            points_seen: 0,
            models_trained: 0,
            rebaselines: 0,
            first_ms: None,
            scratch: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Feature names, in row order.
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// Whether a model has been trained (points are being scored).
    pub fn is_trained(&self) -> bool {
        self.model.is_some()
    }

    /// Points accepted so far.
    pub fn points_seen(&self) -> u64 {
        self.points_seen
    }

    /// Models trained so far (the first one plus every retrain).
    pub fn models_trained(&self) -> u64 {
        self.models_trained
    }

    /// Lasting level shifts the detector re-baselined on so far.
    pub fn rebaselines(&self) -> u64 {
        self.rebaselines
    }

    /// Consumes one point of a univariate detector; `None` until `min_points`
    /// points have been seen.
    pub fn push(&mut self, ts_ms: i64, value: f64) -> Result<Option<Score>, Error> {
        self.push_row(ts_ms, &[value])
    }

    /// Consumes one row (one value per series). Rejects non-finite values
    /// (e.g. Prometheus stale markers) and points older than the previous one
    /// without changing any state.
    pub fn push_row(&mut self, ts_ms: i64, values: &[f64]) -> Result<Option<Score>, Error> {
        let mut features = Vec::with_capacity(self.names.len());
        self.extractor.push_into(ts_ms, values, &mut features)?;
        let mut missing = Vec::new();
        for (memory, &v) in self.seasonal.iter_mut().zip(values) {
            let at = features.len();
            for (k, available) in memory.push(ts_ms, v, &mut features).into_iter().enumerate() {
                if !available {
                    missing.push((at + k) as u32);
                }
            }
        }
        self.points_seen += 1;
        self.first_ms.get_or_insert(ts_ms);
        let due = match self.model {
            None => self.points.len() >= self.cfg.min_points,
            // A young window (after a re-baseline) is retrained as soon as
            // it has doubled, so the model of a new regime firms up fast.
            Some(_) => self.scored_since_train >= self.cfg.retrain_every.min(self.points.len()),
        };
        if due {
            self.retrain()?;
        }
        let score = match &self.model {
            Some(model) => {
                self.scored_since_train += 1;
                let (score, candidates) =
                    self.score_point(model, ts_ms, values, &features, self.candidates);
                self.candidates = candidates;
                Some(score)
            }
            None => None,
        };
        if let Some(s) = &score {
            if s.is_anomaly {
                self.last_anomaly_ms = Some(ts_ms);
            }
            // Anomalous scores stay in the history: excluding them keeps a
            // level shift alarming until the window has absorbed it, which
            // on NAB costs far more in false positives than it gains.
            if self.scores.len() == self.cfg.window {
                self.scores.pop_front();
            }
            self.scores.push_back(s.score);
            // End the warm-up as soon as the history is long enough rather
            // than waiting for the next retrain.
            if self.model.as_ref().is_some_and(|m| m.score_scale.is_none()) {
                let scale = self.score_scale();
                if let Some(m) = self.model.as_mut() {
                    m.score_scale = scale;
                }
            }
        }
        if self.points.len() == self.cfg.window {
            self.points.pop_front();
        }
        self.points.push_back(Point {
            values: values.to_vec(),
            features,
            missing,
        });
        if self.shift_has_lasted(ts_ms) {
            self.rebaseline()?;
        }
        Ok(score)
    }

    /// Whether, for some series, nine in ten of the last `rebaseline_after`
    /// values lie beyond the 1st–99th percentile range of the values before
    /// them, on the same side: a change of level that has lasted, not a
    /// spike or a burst. Judged only once the detector has seen a day of
    /// the series, so the first daily peak is not taken for a new regime.
    fn shift_has_lasted(&self, ts_ms: i64) -> bool {
        if self
            .first_ms
            .is_none_or(|first| ts_ms - first < seasonal::DAY_MS)
        {
            return false;
        }
        let l = self.rebaseline_len();
        let Some(reference) = self.model.as_ref().and_then(|m| m.reference.as_ref()) else {
            return false;
        };
        if self.points.len() < l {
            return false;
        }
        let mut recent = Vec::with_capacity(l);
        reference.iter().enumerate().any(|(series, range)| {
            let Some((lo, hi)) = *range else {
                return false;
            };
            recent.clear();
            recent.extend(self.points.iter().rev().take(l).map(|p| p.values[series]));
            // Nine in ten of the recent points beyond the old range, on one
            // side: a regime, not a burst.
            let low = percentile(&mut recent, 10.0);
            let high = crate::stats::percentile_sorted(&recent, 90.0);
            low > hi || high < lo
        })
    }

    /// Starts over on the new regime: keeps only the points since the shift
    /// and retrains on them (then again each time the window doubles). The
    /// score history is kept: it is the series' measure of how unusual a
    /// score is, and clearing it would leave the detector deciding against
    /// a handful of scores.
    fn rebaseline(&mut self) -> Result<(), Error> {
        let keep = self.rebaseline_len();
        let drop = self.points.len().saturating_sub(keep);
        self.points.drain(..drop);
        self.rebaselines += 1;
        tracing::debug!(
            kept = self.points.len(),
            "level shift: anomaly model re-baselined"
        );
        self.retrain()
    }

    /// Fits scaler and forest on the stored window.
    fn retrain(&mut self) -> Result<(), Error> {
        let cols = self.names.len();
        // A seasonal feature is used only once every training row has its
        // lag: rows where it is 0 for want of history would teach the
        // forest that the feature is constant, and every later point, with
        // a real difference, would look new. Until then the model ignores it.
        let mut masked: Vec<usize> = self
            .points
            .iter()
            .flat_map(|p| p.missing.iter().map(|&j| j as usize))
            .collect();
        masked.sort_unstable();
        masked.dedup();
        self.mask_explained_levels(&mut masked);
        let mut data = Vec::with_capacity(self.points.len() * cols);
        for p in &self.points {
            let start = data.len();
            data.extend_from_slice(&p.features);
            for &j in &masked {
                data[start + j] = 0.0;
            }
        }
        let raw = Matrix::new(self.points.len(), cols, data)?;
        let scaler = RobustScaler::fit(&raw)?;
        let mut scaled = Vec::with_capacity(raw.as_slice().len());
        let mut row = Vec::with_capacity(cols);
        for r in raw.iter_rows() {
            scaler.transform_into(r, &mut row);
            scaled.extend_from_slice(&row);
        }
        let x = Matrix::new(raw.rows(), cols, scaled)?;
        let forest = IsolationForest::fit_with_rng(&x, &self.cfg.forest(), &mut self.rng)?;
        // The robust statistics come from real streamed scores only: the
        // first model's training scores are in-sample and systematically
        // lower than the scores of new points, so seeding with them would make
        // the first new points look extreme. Until `min_points` scores exist
        // the detector scores but does not decide (`warming up`).
        let score_scale = self.score_scale();
        tracing::debug!(
            points = self.points.len(),
            nodes = forest.n_nodes(),
            threshold = forest.threshold(),
            score_median = score_scale.map(|s| s.median),
            score_sigma = score_scale.map(|s| s.sigma),
            "anomaly model retrained"
        );
        let extrapolate = self
            .names
            .iter()
            .map(|name| !TIME_FEATURES.contains(&name.as_str()))
            .collect();
        self.model = Some(Model {
            scaler,
            forest,
            extrapolate,
            score_scale,
            reference: self.reference(&masked),
            masked,
        });
        self.scored_since_train = 0;
        self.models_trained += 1;
        Ok(())
    }

    /// For a series whose level yesterday explains today's (a daily
    /// pattern: the spread of the difference from yesterday is under half
    /// the spread of the values), the level features are left out of the
    /// model: the time of day already explains the level, and keeping them
    /// would let the daily swing dominate the splits while a missing or
    /// misplaced peak, visible only against yesterday, gets diluted.
    fn mask_explained_levels(&self, masked: &mut Vec<usize>) {
        let plain = self.extractor.n_features();
        let per = SERIES_FEATURES.len();
        for series in 0..self.seasonal.len() {
            let day = plain + series * SEASONAL_FEATURES.len();
            if masked.contains(&day) || self.points.len() < 2 {
                continue;
            }
            // Mean absolute deviations from the median: not the MAD, since a
            // day/night series spends more than half its time at one level
            // and the MAD of its values is that level's noise, blind to the
            // daily swing; not the standard deviation either, which one
            // anomalous day in the window (a missing peak: large differences
            // from yesterday for hours) inflates enough to unmask the levels
            // just after it.
            let diffs = mean_abs_deviation(self.points.iter().map(|p| p.features[day]));
            let levels = mean_abs_deviation(self.points.iter().map(|p| p.values[series]));
            if diffs < 0.5 * levels {
                // value, ma5, ma15 of this series.
                masked.extend([series * per, series * per + 2, series * per + 3]);
            }
        }
        masked.sort_unstable();
        masked.dedup();
    }

    /// How long a shift must last before the detector re-baselines
    /// (`rebaseline_after`, capped at half the window; below 2: off).
    fn rebaseline_len(&self) -> usize {
        self.cfg.rebaseline_after.min(self.cfg.window / 2)
    }

    /// The regime a shift is judged against (see [`Model::reference`]).
    ///
    /// Series whose level features are masked (a daily pattern explains
    /// their level) are not judged: a peak that lasts hours is their normal,
    /// and a lasting shift of such a series shows in the difference from
    /// yesterday for one day, then is yesterday's level too.
    fn reference(&self, masked: &[usize]) -> Option<Vec<Option<(f64, f64)>>> {
        let l = self.rebaseline_len();
        let before = self.points.len().checked_sub(l)?;
        if l < 2 || before < l {
            return None;
        }
        let mut work = Vec::with_capacity(before);
        Some(
            (0..self.extractor.n_series())
                .map(|series| {
                    if masked.contains(&(series * SERIES_FEATURES.len())) {
                        return None;
                    }
                    work.clear();
                    work.extend(self.points.iter().take(before).map(|p| p.values[series]));
                    let lo = percentile(&mut work, 1.0);
                    Some((lo, crate::stats::percentile_sorted(&work, 99.0)))
                })
                .collect(),
        )
    }

    /// Robust location and scale of the score history, once it holds
    /// `min_points` scores.
    fn score_scale(&self) -> Option<ScoreScale> {
        (self.scores.len() >= self.cfg.min_points).then(|| {
            let mut work: Vec<f64> = self.scores.iter().copied().collect();
            let (median, mad) = median_mad(&mut work);
            // 1e-3 of a score unit is far below any meaningful difference.
            ScoreScale {
                median,
                sigma: (MAD_TO_SIGMA * mad).max(1e-3),
            }
        })
    }

    /// Scores one point; also returns the confirmation bits updated with it.
    fn score_point(
        &self,
        model: &Model,
        ts_ms: i64,
        values: &[f64],
        features: &[f64],
        candidates: u64,
    ) -> (Score, u64) {
        let mut z = Vec::with_capacity(features.len());
        if model.masked.is_empty() {
            model.scaler.transform_into(features, &mut z);
        } else {
            let mut f = features.to_vec();
            for &j in &model.masked {
                f[j] = 0.0;
            }
            model.scaler.transform_into(&f, &mut z);
        }
        // Widths were checked when the point was accepted and at load time.
        let score = model
            .forest
            .score_extrapolated_unchecked(&z, &model.extrapolate);
        let score_z = model.score_scale.map(|s| (score - s.median) / s.sigma);
        // The rank is taken against the history before the confirmation
        // span: the points of the episode being confirmed must not raise
        // the bar for each other.
        let span = self.cfg.confirm_m.saturating_sub(1);
        let judged = self.scores.len().saturating_sub(span);
        let score_percentile = percentile_rank(self.scores.iter().take(judged).copied(), score);
        let severity = if score_percentile > self.cfg.critical_percentile {
            Severity::Critical
        } else if score_percentile > self.cfg.warning_percentile {
            Severity::Warning
        } else {
            Severity::Info
        };
        // While warming up (no z-score yet) nothing is anomalous.
        let candidate = model.forest.is_outlier(score)
            && score_z.is_some_and(|z| z >= self.z_bar(model))
            && score_percentile >= self.cfg.min_score_percentile
            && !self.season_explains(model, &z)
            && (self.in_episode(ts_ms) || !self.recurs(model, &z));
        let candidates = (candidates << 1) | u64::from(candidate);
        let span = self.cfg.confirm_m.min(64) as u32;
        let mask = if span == 64 {
            u64::MAX
        } else {
            (1u64 << span) - 1
        };
        let is_anomaly =
            candidate && (candidates & mask).count_ones() as usize >= self.cfg.confirm_n;
        let suppressed = is_anomaly && self.in_episode(ts_ms);
        let details = is_anomaly.then(|| self.explain(&z, values));
        let verdict = Score {
            timestamp_ms: ts_ms,
            score,
            score_z,
            score_percentile,
            is_anomaly,
            severity,
            suppressed,
            details,
        };
        (verdict, candidates)
    }

    /// The robust z-score a point must reach: `score_z`, or, where the
    /// score history is spread so widely that no point could reach it (the
    /// forest's scores stop at [`IsolationForest::max_score`]),
    /// [`ATTAINABLE_Z_SHARE`] of the z-score of that highest possible score.
    /// Without the cap such a detector is blind: a spike a hundred times the
    /// series' range, isolated at the first split in most trees, was
    /// measured at z 4.2 against a bar of 5 it could never pass.
    fn z_bar(&self, model: &Model) -> f64 {
        let reachable = model
            .score_scale
            .map(|s| (model.forest.max_score() - s.median) / s.sigma);
        match reachable {
            Some(z_max) => self.cfg.score_z.min(ATTAINABLE_Z_SHARE * z_max),
            None => self.cfg.score_z,
        }
    }

    /// The seasonal gate: whether every series is one whose level the time
    /// of day explains (its level features are masked) and whose point lies
    /// within `seasonal_gate` robust σ of its usual difference from
    /// yesterday and from last week (those of the two the model uses). Such
    /// a point repeats what the series did at this time before: a daily
    /// jump, not an anomaly, however steep.
    fn season_explains(&self, model: &Model, z: &[f64]) -> bool {
        let gate = self.cfg.seasonal_gate;
        if gate <= 0.0 || self.seasonal.is_empty() {
            return false;
        }
        let plain = self.extractor.n_features();
        let per = SERIES_FEATURES.len();
        (0..self.seasonal.len()).all(|series| {
            if !model.masked.contains(&(series * per)) {
                return false;
            }
            let first = plain + series * SEASONAL_FEATURES.len();
            let used: Vec<usize> = (first..first + SEASONAL_FEATURES.len())
                .filter(|j| !model.masked.contains(j))
                .collect();
            !used.is_empty() && used.iter().all(|&j| z[j].abs() <= gate)
        })
    }

    /// Whether a point at `ts_ms` falls within `suppression` of the last
    /// anomalous point: the same episode.
    fn in_episode(&self, ts_ms: i64) -> bool {
        self.last_anomaly_ms.is_some_and(|last| {
            u128::try_from(ts_ms.saturating_sub(last)).unwrap_or(0)
                < self.cfg.suppression.as_millis()
        })
    }

    /// The recurrence gate: whether some stored point lies within
    /// `recurrence` times the point's own distance from the window's median
    /// (robustly scaled features; calendar and masked features left out).
    /// A burst this series has had before, in the window, is its behaviour,
    /// not news. Only computed for points that passed the score tests, and
    /// not inside an episode: a lasting anomaly keeps being one (its own
    /// earlier points must not explain it away), so an anomaly rule's alert
    /// stays firing while it lasts.
    fn recurs(&self, model: &Model, z: &[f64]) -> bool {
        let share = self.cfg.recurrence;
        if share <= 0.0 {
            return false;
        }
        let used: Vec<usize> = (0..z.len())
            .filter(|&j| model.extrapolate[j] && !model.masked.contains(&j))
            .collect();
        let norm2: f64 = used.iter().map(|&j| z[j] * z[j]).sum();
        let bound = share * share * norm2;
        let mut scaled = Vec::with_capacity(z.len());
        self.points.iter().any(|p| {
            model.scaler.transform_into(&p.features, &mut scaled);
            used.iter()
                .map(|&j| (scaled[j] - z[j]) * (scaled[j] - z[j]))
                .sum::<f64>()
                <= bound
        })
    }

    /// The series a feature (by row index) describes: series features and
    /// seasonal features belong to their series, calendar features to the
    /// first.
    fn series_of(&self, feature: usize) -> usize {
        let n_series = self.extractor.n_series();
        let per = SERIES_FEATURES.len();
        let plain = self.extractor.n_features();
        let series = if feature < per * n_series {
            feature / per
        } else if feature < plain {
            0
        } else {
            (feature - plain) / SEASONAL_FEATURES.len()
        };
        series.min(n_series.saturating_sub(1))
    }

    /// Builds the explanation of an anomalous point with standardised
    /// features `z` and raw inputs `values`.
    fn explain(&self, z: &[f64], values: &[f64]) -> AnomalyDetails {
        let (top, top_z) = z.iter().enumerate().fold((0, 0.0f64), |best, (i, &v)| {
            if v.abs() > best.1.abs() { (i, v) } else { best }
        });
        let series = self.series_of(top);
        let history = self.points.iter().map(|p| p.values[series]);
        let (historical_mean, historical_std) = mean_std(history.clone());
        AnomalyDetails {
            historical_mean,
            historical_std,
            value_percentile: percentile_rank(history, values[series]),
            top_feature: self.names[top].clone(),
            top_feature_z: top_z,
        }
    }

    /// Serialises the whole detector (configuration, window, model, random
    /// state) so that a restored copy continues exactly where this one is.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&Envelope {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            detector: self.clone(),
        })
        .map_err(|e| Error::Encode(e.to_string()))
    }

    /// Restores a detector written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| Error::Decode(e.to_string()))?;
        if env.format != FORMAT || env.version != FORMAT_VERSION {
            return Err(Error::Decode(format!(
                "expected {FORMAT} version {FORMAT_VERSION}, found {} version {}",
                env.format, env.version
            )));
        }
        let d = env.detector;
        d.cfg.validate()?;
        d.check_consistency()?;
        Ok(d)
    }

    /// Writes [`to_bytes`](Self::to_bytes) to `w`.
    pub fn save(&self, mut w: impl std::io::Write) -> Result<(), Error> {
        w.write_all(&self.to_bytes()?)?;
        w.flush()?;
        Ok(())
    }

    /// Reads a detector saved with [`save`](Self::save).
    pub fn load(mut r: impl std::io::Read) -> Result<Self, Error> {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)?;
        Self::from_bytes(&buf)
    }

    /// Guards the invariants scoring relies on, so a hand-edited or corrupt
    /// file fails to load instead of panicking later.
    fn check_consistency(&self) -> Result<(), Error> {
        let n_features = self.names.len();
        let n_series = self.extractor.n_series();
        let seasonal_width = if self.cfg.seasonal { n_series } else { 0 };
        if self.seasonal.len() != seasonal_width
            || !self.seasonal.iter().all(SeasonalMemory::is_consistent)
            || n_features != self.extractor.n_features() + seasonal_width * SEASONAL_FEATURES.len()
        {
            return Err(Error::Decode("inconsistent model: seasonal memory".into()));
        }
        let bad = |what: &str| Err(Error::Decode(format!("inconsistent model: {what}")));
        if self
            .points
            .iter()
            .any(|p| p.features.len() != n_features || p.values.len() != n_series)
        {
            return bad("stored point of the wrong width");
        }
        if self.points.len() > self.cfg.window || self.scores.len() > self.cfg.window {
            return bad("more points than the window");
        }
        if let Some(m) = &self.model {
            if m.forest.n_features() != n_features
                || m.scaler.n_features() != n_features
                || m.extrapolate.len() != n_features
            {
                return bad("model width differs from the features");
            }
            if !m.forest.is_consistent() {
                return bad("forest structure");
            }
            if m.masked.iter().any(|&j| j >= n_features)
                || self
                    .points
                    .iter()
                    .any(|p| p.missing.iter().any(|&j| j as usize >= n_features))
            {
                return bad("masked feature out of range");
            }
            if m.reference.as_ref().is_some_and(|r| r.len() != n_series) {
                return bad("reference of the wrong width");
            }
        }
        Ok(())
    }
}

/// Mean absolute deviation from the median.
fn mean_abs_deviation(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    if v.is_empty() {
        return 0.0;
    }
    let median = percentile(&mut v, 50.0);
    v.iter().map(|x| (x - median).abs()).sum::<f64>() / v.len() as f64
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    version: u32,
    detector: StreamingDetector,
}

#[cfg(test)]
mod tests;
