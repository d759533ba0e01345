//! Property tests of the forest, the detector, persistence and the CSV
//! path: the guarantees other crates rely on, checked on random inputs.

use proptest::prelude::*;
use vigil_models::{
    Contamination, DetectorConfig, ForestConfig, IsolationForest, Matrix, StreamingDetector,
    parse_timestamp, score_csv,
};

/// Small forests keep the debug-build test run short; the properties do not
/// depend on the number of trees.
fn forest_cfg(seed: u64) -> ForestConfig {
    ForestConfig {
        n_estimators: 25,
        seed,
        ..ForestConfig::default()
    }
}

fn detector_cfg(seed: u64) -> DetectorConfig {
    DetectorConfig {
        n_estimators: 20,
        min_points: 30,
        window: 120,
        retrain_every: 25,
        seed,
        ..DetectorConfig::default()
    }
}

/// A matrix of `rows × cols` values in [-1, 1].
fn unit_matrix() -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    (2usize..120, 1usize..6).prop_flat_map(|(rows, cols)| {
        (
            Just(rows),
            Just(cols),
            prop::collection::vec(-1.0f64..1.0, rows * cols),
        )
    })
}

/// A series of (timestamp, value) points with random gaps and values,
/// including repeated values and repeated timestamps.
fn series() -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop::collection::vec(
        (
            0i64..600_000,
            prop_oneof![-1e6f64..1e6, Just(0.0), Just(1.0)],
        ),
        40..200,
    )
    .prop_map(|steps| {
        let mut t = 1_700_000_000_000i64;
        steps
            .into_iter()
            .map(|(dt, v)| {
                t += dt;
                (t, v)
            })
            .collect()
    })
}

/// A cut point past the detector's warm-up (so at least one scored point
/// lies before it), at fraction `cut` of the points that follow it.
fn past_warm_up(len: usize, cut: f64) -> usize {
    let warm = detector_cfg(0).min_points + 1;
    warm + ((len.saturating_sub(warm) as f64) * cut) as usize
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn forest_scores_are_in_unit_interval((rows, cols, data) in unit_matrix(), seed in any::<u64>(), probe in prop::collection::vec(-1e9f64..1e9, 5)) {
        let x = Matrix::new(rows, cols, data).expect("finite");
        let f = IsolationForest::fit(&x, &forest_cfg(seed)).expect("fit");
        for s in f.score_matrix(&x).expect("shape") {
            prop_assert!(s.is_finite() && s > 0.0 && s <= 1.0, "score {s}");
        }
        let p = &probe[..cols];
        let mask = vec![true; cols];
        for s in [f.score(p).expect("shape"), f.score_extrapolated(p, &mask).expect("shape")] {
            prop_assert!(s.is_finite() && s > 0.0 && s <= 1.0, "score {s}");
        }
    }

    #[test]
    fn an_obvious_outlier_outranks_every_inlier((rows, cols, mut data) in unit_matrix(), seed in any::<u64>()) {
        prop_assume!(rows >= 16);
        // Inliers in [-1, 1]^d, one point 1000 away in every direction.
        data.extend(std::iter::repeat_n(1000.0, cols));
        let x = Matrix::new(rows + 1, cols, data).expect("finite");
        let cfg = ForestConfig { n_estimators: 100, ..forest_cfg(seed) };
        let f = IsolationForest::fit(&x, &cfg).expect("fit");
        let scores = f.score_matrix(&x).expect("shape");
        let outlier = scores[rows];
        prop_assert!(scores[..rows].iter().all(|&s| s < outlier), "outlier {outlier} vs max inlier {:?}",
            scores[..rows].iter().cloned().fold(f64::MIN, f64::max));
        // An unseen far point, scored with extrapolation, also outranks them.
        let inliers = Matrix::new(rows, cols, x.as_slice()[..rows * cols].to_vec()).expect("finite");
        let f = IsolationForest::fit(&inliers, &cfg).expect("fit");
        let far = f.score_extrapolated(&vec![1000.0; cols], &vec![true; cols]).expect("shape");
        let mask = vec![true; cols];
        for r in inliers.iter_rows() {
            prop_assert!(f.score_extrapolated(r, &mask).expect("shape") < far);
        }
    }

    #[test]
    fn fixed_seed_gives_identical_scores((rows, cols, data) in unit_matrix(), seed in any::<u64>()) {
        let x = Matrix::new(rows, cols, data).expect("finite");
        let a = IsolationForest::fit(&x, &forest_cfg(seed)).expect("fit");
        let b = IsolationForest::fit(&x, &forest_cfg(seed)).expect("fit");
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.score_matrix(&x).expect("shape"), b.score_matrix(&x).expect("shape"));
    }

    #[test]
    fn training_rows_score_the_same_with_extrapolation((rows, cols, data) in unit_matrix(), seed in any::<u64>()) {
        // With ψ = n every tree saw every row, so no row is outside any
        // node's range and the extrapolated score equals the standard one.
        let x = Matrix::new(rows, cols, data).expect("finite");
        let f = IsolationForest::fit(&x, &ForestConfig { sample_size: rows, ..forest_cfg(seed) }).expect("fit");
        let mask = vec![true; cols];
        for r in x.iter_rows() {
            let (a, b) = (f.score(r).expect("shape"), f.score_extrapolated(r, &mask).expect("shape"));
            prop_assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn persisted_forest_scores_identically((rows, cols, data) in unit_matrix(), seed in any::<u64>(), contamination in prop_oneof![Just(Contamination::Auto), (0.01f64..0.5).prop_map(Contamination::Fraction)]) {
        let x = Matrix::new(rows, cols, data).expect("finite");
        let f = IsolationForest::fit(&x, &ForestConfig { contamination, ..forest_cfg(seed) }).expect("fit");
        let json = serde_json::to_vec(&f).expect("serialise");
        let g: IsolationForest = serde_json::from_slice(&json).expect("deserialise");
        prop_assert!(g.is_consistent());
        prop_assert_eq!(f.threshold().to_bits(), g.threshold().to_bits());
        let (a, b) = (f.score_matrix(&x).expect("shape"), g.score_matrix(&x).expect("shape"));
        prop_assert_eq!(a.iter().map(|s| s.to_bits()).collect::<Vec<_>>(), b.iter().map(|s| s.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn detector_scores_are_finite_and_bounded(points in series(), seed in any::<u64>()) {
        let cfg = detector_cfg(seed);
        let mut d = StreamingDetector::new(cfg.clone()).expect("valid");
        let n = points.len();
        let mut scored = 0;
        for (t, v) in points {
            if let Some(s) = d.push(t, v).expect("valid point") {
                scored += 1;
                prop_assert!(s.score.is_finite() && s.score > 0.0 && s.score <= 1.0);
                prop_assert!((0.0..=100.0).contains(&s.score_percentile));
                prop_assert_eq!(s.details.is_some(), s.is_anomaly);
                prop_assert!(!s.suppressed || s.is_anomaly);
                if let Some(d) = s.details {
                    prop_assert!(d.historical_mean.is_finite() && d.historical_std >= 0.0);
                    prop_assert!((0.0..=100.0).contains(&d.value_percentile));
                }
            }
        }
        // Every point after the warm-up is scored: the checks above ran.
        prop_assert!(scored + cfg.min_points >= n, "{scored} of {n} points scored");
    }

    #[test]
    fn no_look_ahead(points in series(), cut in 0.0f64..1.0, seed in any::<u64>()) {
        // The prefix always reaches past the warm-up, so scores (not only
        // `None`s) are compared.
        let k = past_warm_up(points.len(), cut);
        let mut full = StreamingDetector::new(detector_cfg(seed)).expect("valid");
        let all: Vec<_> = points.iter().map(|&(t, v)| full.push(t, v).expect("valid")).collect();
        let mut prefix = StreamingDetector::new(detector_cfg(seed)).expect("valid");
        for (i, &(t, v)) in points[..k].iter().enumerate() {
            prop_assert_eq!(&prefix.push(t, v).expect("valid"), &all[i], "point {}", i);
        }
        prop_assert!(all[..k].iter().any(Option::is_some), "no score in the first {k} points");
    }

    #[test]
    fn restored_detector_continues_identically(points in series(), cut in 0.0f64..1.0, seed in any::<u64>()) {
        // Saved after the warm-up, so a trained model is persisted, with at
        // least one point left to push after the restore.
        let k = past_warm_up(points.len(), cut).min(points.len() - 1);
        let mut a = StreamingDetector::new(detector_cfg(seed)).expect("valid");
        for &(t, v) in &points[..k] {
            a.push(t, v).expect("valid");
        }
        let mut b = StreamingDetector::from_bytes(&a.to_bytes().expect("encode")).expect("decode");
        prop_assert_eq!(&a, &b);
        let mut scored = 0;
        for &(t, v) in &points[k..] {
            let (x, y) = (a.push(t, v).expect("valid"), b.push(t, v).expect("valid"));
            scored += usize::from(x.is_some());
            prop_assert_eq!(x, y);
        }
        prop_assert!(scored > 0, "no point scored after the restore");
    }

    #[test]
    fn timestamps_parse_in_every_accepted_form(secs in 0i64..4_000_000_000, millis in 0i64..1000) {
        let ms = secs * 1000 + millis;
        let dt = chrono::DateTime::from_timestamp_millis(ms).expect("in range");
        prop_assert_eq!(parse_timestamp(&dt.format("%Y-%m-%d %H:%M:%S%.3f").to_string()), Some(ms));
        prop_assert_eq!(parse_timestamp(&dt.to_rfc3339()), Some(ms));
        prop_assert_eq!(parse_timestamp(&dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()), Some(ms));
        prop_assert_eq!(parse_timestamp(&secs.to_string()), Some(secs * 1000));
        prop_assert_eq!(parse_timestamp(&dt.format("%Y-%m-%d %H:%M:%S").to_string()), Some(secs * 1000));
    }

    #[test]
    fn csv_scoring_echoes_every_row(points in series()) {
        let mut input = String::from("timestamp,value\n");
        for &(t, v) in &points {
            let dt = chrono::DateTime::from_timestamp_millis(t).expect("in range");
            input.push_str(&format!("{},{v}\n", dt.format("%Y-%m-%d %H:%M:%S%.3f")));
        }
        let mut out = Vec::new();
        let summary = score_csv(input.as_bytes(), &mut out, &detector_cfg(1)).expect("valid csv");
        prop_assert_eq!(summary.rows, points.len());
        let text = String::from_utf8(out).expect("utf-8");
        let mut lines = text.lines();
        prop_assert_eq!(lines.next(), Some("timestamp,value,score,is_anomaly"));
        let mut n = 0;
        for (line, input_line) in lines.zip(input.lines().skip(1)) {
            let fields: Vec<&str> = line.split(',').collect();
            prop_assert_eq!(fields.len(), 4);
            prop_assert_eq!(format!("{},{}", fields[0], fields[1]), input_line);
            let score: f64 = fields[2].parse().expect("a number");
            prop_assert!((0.0..=1.0).contains(&score));
            prop_assert!(fields[3] == "0" || fields[3] == "1");
            n += 1;
        }
        prop_assert_eq!(n, points.len());
    }
}
