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
//!    [`score_z`](DetectorConfig::score_z) (default 4). The history holds
//!    only scores of points scored as new (training scores are in-sample and
//!    lower), so the detector decides once `min_points` points have been
//!    scored: with the defaults, from point 201 on;
//! 3. its score ranks at or above
//!    [`min_score_percentile`](DetectorConfig::min_score_percentile) of that
//!    history (default 99.9: the alarm is for scores this series has rarely
//!    produced, which keeps noisy and heavy-tailed series quiet).
//!
//! The defaults were chosen on the NAB subset as round values (see the
//! crate's README for the benchmark); they are not tuned per file.
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
use crate::features::{FeatureExtractor, SERIES_FEATURES, StandardScaler, TIME_FEATURES};
use crate::forest::IsolationForest;
use crate::rng::Rng;
use crate::stats::{mean_std, median_mad, percentile_rank};
use crate::{Error, Matrix};

/// Consistency constant that makes the MAD estimate σ for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Identifies a persisted detector; checked on load.
const FORMAT: &str = "vigil-models/streaming-detector";
/// Bumped whenever the persisted layout changes incompatibly.
const FORMAT_VERSION: u32 = 1;

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
}

/// The fitted part of the detector, replaced on every retrain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Model {
    scaler: StandardScaler,
    forest: IsolationForest,
    /// Per feature: whether scoring extrapolates beyond the training range
    /// (false for the cyclic calendar features).
    extrapolate: Vec<bool>,
    /// Median and `1.4826 · MAD` of the score history when this model was
    /// trained; `None` while the history is shorter than `min_points` (no
    /// decisions yet).
    score_scale: Option<ScoreScale>,
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
    points: VecDeque<Point>,
    model: Option<Model>,
    scored_since_train: usize,
    /// The scores given to the last `window` points: the history for
    /// severities and for the robust normalisation.
    scores: VecDeque<f64>,
    rng: Rng,
    last_anomaly_ms: Option<i64>,
    points_seen: u64,
    models_trained: u64,
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
        Ok(Self {
            rng: Rng::seed_from_u64(cfg.seed),
            points: VecDeque::with_capacity(cfg.window),
            cfg,
            extractor,
            model: None,
            scored_since_train: 0,
            scores: VecDeque::new(),
            last_anomaly_ms: None,
            points_seen: 0,
            models_trained: 0,
            scratch: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Feature names, in row order.
    pub fn feature_names(&self) -> &[String] {
        self.extractor.feature_names()
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

    /// Consumes one point of a univariate detector; `None` until `min_points`
    /// points have been seen.
    pub fn push(&mut self, ts_ms: i64, value: f64) -> Result<Option<Score>, Error> {
        self.push_row(ts_ms, &[value])
    }

    /// Consumes one row (one value per series). Rejects non-finite values
    /// (e.g. Prometheus stale markers) and points older than the previous one
    /// without changing any state.
    pub fn push_row(&mut self, ts_ms: i64, values: &[f64]) -> Result<Option<Score>, Error> {
        let mut features = Vec::with_capacity(self.extractor.n_features());
        self.extractor.push_into(ts_ms, values, &mut features)?;
        self.points_seen += 1;
        let due = match self.model {
            None => self.points.len() >= self.cfg.min_points,
            Some(_) => self.scored_since_train >= self.cfg.retrain_every,
        };
        if due {
            self.retrain()?;
        }
        let score = match &self.model {
            Some(model) => {
                self.scored_since_train += 1;
                Some(self.score_point(model, ts_ms, values, &features))
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
        });
        Ok(score)
    }

    /// Fits scaler and forest on the stored window.
    fn retrain(&mut self) -> Result<(), Error> {
        let cols = self.extractor.n_features();
        let mut data = Vec::with_capacity(self.points.len() * cols);
        for p in &self.points {
            data.extend_from_slice(&p.features);
        }
        let raw = Matrix::new(self.points.len(), cols, data)?;
        let scaler = StandardScaler::fit(&raw)?;
        let x = scaler.transform(&raw)?;
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
            .extractor
            .feature_names()
            .iter()
            .map(|name| !TIME_FEATURES.contains(&name.as_str()))
            .collect();
        self.model = Some(Model {
            scaler,
            forest,
            extrapolate,
            score_scale,
        });
        self.scored_since_train = 0;
        self.models_trained += 1;
        Ok(())
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

    fn score_point(&self, model: &Model, ts_ms: i64, values: &[f64], features: &[f64]) -> Score {
        let mut z = Vec::with_capacity(features.len());
        model.scaler.transform_into(features, &mut z);
        // Widths were checked when the point was accepted and at load time.
        let score = model
            .forest
            .score_extrapolated_unchecked(&z, &model.extrapolate);
        let score_z = model.score_scale.map(|s| (score - s.median) / s.sigma);
        let score_percentile = percentile_rank(self.scores.iter().copied(), score);
        let severity = if score_percentile > self.cfg.critical_percentile {
            Severity::Critical
        } else if score_percentile > self.cfg.warning_percentile {
            Severity::Warning
        } else {
            Severity::Info
        };
        // While warming up (no z-score yet) nothing is anomalous.
        let is_anomaly = model.forest.is_outlier(score)
            && score_z.is_some_and(|z| z >= self.cfg.score_z)
            && score_percentile >= self.cfg.min_score_percentile;
        let suppressed = is_anomaly
            && self.last_anomaly_ms.is_some_and(|last| {
                u128::try_from(ts_ms.saturating_sub(last)).unwrap_or(0)
                    < self.cfg.suppression.as_millis()
            });
        let details = is_anomaly.then(|| self.explain(&z, values));
        Score {
            timestamp_ms: ts_ms,
            score,
            score_z,
            score_percentile,
            is_anomaly,
            severity,
            suppressed,
            details,
        }
    }

    /// Builds the explanation of an anomalous point with standardised
    /// features `z` and raw inputs `values`.
    fn explain(&self, z: &[f64], values: &[f64]) -> AnomalyDetails {
        let (top, top_z) = z.iter().enumerate().fold((0, 0.0f64), |best, (i, &v)| {
            if v.abs() > best.1.abs() { (i, v) } else { best }
        });
        // Describe the series the top feature belongs to; calendar features
        // (after all series features) describe the first series.
        let series = (top / SERIES_FEATURES.len()).min(values.len().saturating_sub(1));
        let history = self.points.iter().map(|p| p.values[series]);
        let (historical_mean, historical_std) = mean_std(history.clone());
        AnomalyDetails {
            historical_mean,
            historical_std,
            value_percentile: percentile_rank(history, values[series]),
            top_feature: self.extractor.feature_names()[top].clone(),
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
        let n_features = self.extractor.n_features();
        let n_series = self.extractor.n_series();
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
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    version: u32,
    detector: StreamingDetector,
}

#[cfg(test)]
mod tests;
