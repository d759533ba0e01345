//! Anomaly detection for Vigil: features, standard scaling, an isolation
//! forest, a streaming detector with severities and suppression, persistence,
//! and CSV scoring.
//!
//! A pure library: no async runtime and no I/O beyond the `Read`/`Write`
//! values callers pass in.
//!
//! * [`IsolationForest`] — Liu et al. 2008 as scikit-learn implements it
//!   (subsample ψ = 256, height limit ⌈log₂ ψ⌉, `c(n)` normalisation,
//!   scores in (0, 1]); flat arena trees, seeded and reproducible.
//! * [`features`] — value, rate of change, moving averages (5, 15),
//!   volatility, first difference, relative change, hour of day, day of
//!   week; univariate or across several aligned series; [`StandardScaler`]
//!   and the detector's [`RobustScaler`](features::RobustScaler). The
//!   detector adds seasonal features (same time yesterday / last week).
//! * [`StreamingDetector`] — time-ordered points in, [`Score`]s out, with no
//!   look-ahead, scheduled retraining, severities from the score history, an
//!   explanation per anomaly and a suppression window;
//!   [`to_bytes`](StreamingDetector::to_bytes) /
//!   [`from_bytes`](StreamingDetector::from_bytes) for warm restarts.
//! * [`score_csv`] — `timestamp,value` CSV in, `timestamp,value,score,is_anomaly`
//!   out, for `vigil anomaly score`.
//! * [`nab`] — the Numenta Anomaly Benchmark's scoring, for benchmarks.
//!
//! # Example
//!
//! ```
//! use vigil_models::{DetectorConfig, StreamingDetector};
//!
//! // Configuration as an `anomaly:` rule would carry it; omitted fields
//! // take their defaults (100 trees, window 1000, 30m suppression, ...).
//! // A smooth, noise-free wave gives a wide spread of ordinary scores, so
//! // this example asks for z 4 rather than the default 5.
//! let cfg = DetectorConfig::from_json(
//!     r#"{"min_points": 100, "retrain_every": 50, "score_z": 4}"#,
//! )?;
//! let mut detector = StreamingDetector::new(cfg)?;
//!
//! let start_ms = 1_700_000_000_000_i64;
//! let mut alerts = Vec::new();
//! for i in 0..400_i64 {
//!     // A slow wave, and one spike at point 300.
//!     let value = if i == 300 { 95.0 } else { 40.0 + 5.0 * ((i as f64) / 20.0).sin() };
//!     if let Some(score) = detector.push(start_ms + i * 60_000, value)? {
//!         assert!(score.score > 0.0 && score.score <= 1.0);
//!         if score.should_alert() {
//!             alerts.push((i, score));
//!         }
//!     }
//! }
//! let (at, spike) = &alerts[0];
//! assert_eq!(*at, 300);
//! let details = spike.details.as_ref().expect("anomalies carry details");
//! println!(
//!     "{} anomaly, score {:.3}, {} at {:.1}σ, value above {:.0}% of history",
//!     spike.severity.as_str(), spike.score, details.top_feature,
//!     details.top_feature_z, details.value_percentile
//! );
//!
//! // Persist and restore: the copy continues identically.
//! let mut restored = StreamingDetector::from_bytes(&detector.to_bytes()?)?;
//! assert_eq!(restored.push(start_ms + 400 * 60_000, 41.0)?, detector.push(start_ms + 400 * 60_000, 41.0)?);
//! # Ok::<(), vigil_models::Error>(())
//! ```

pub mod config;
pub mod csv;
pub mod detector;
mod error;
pub mod features;
pub mod forest;
mod matrix;
pub mod nab;
pub mod rng;
pub mod stats;

pub use config::DetectorConfig;
pub use csv::{
    ScoreSummary, SkipReason, SkippedLine, check_point, parse_timestamp, score_csv,
    score_csv_reporting, score_csv_with,
};
pub use detector::{AnomalyDetails, Score, Severity, StreamingDetector};
pub use error::Error;
pub use features::{FeatureExtractor, StandardScaler};
pub use forest::{Contamination, ForestConfig, IsolationForest};
pub use matrix::Matrix;
