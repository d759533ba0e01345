//! Unit tests of the streaming detector.

use super::*;

fn wave(i: i64) -> f64 {
    // Deterministic noise-like wiggle around a slow wave.
    50.0 + 10.0 * (i as f64 / 30.0).sin() + ((i * 7919) % 13) as f64 / 13.0
}

fn cfg() -> DetectorConfig {
    DetectorConfig {
        n_estimators: 50,
        ..DetectorConfig::default()
    }
}

#[test]
fn waits_for_min_points_then_scores() {
    let mut d = StreamingDetector::new(cfg()).expect("valid");
    for i in 0..100 {
        assert!(d.push(i * 60_000, wave(i)).expect("valid").is_none());
    }
    assert!(!d.is_trained());
    let s = d
        .push(100 * 60_000, wave(100))
        .expect("valid")
        .expect("scored");
    assert!(d.is_trained());
    assert!(s.score > 0.0 && s.score <= 1.0);
    assert!(!s.is_anomaly);
    assert!(s.details.is_none());
    // Warming up: scores, but no decisions until the history is long enough.
    assert!(s.score_z.is_none());
    for i in 101..=200 {
        let s = d.push(i * 60_000, wave(i)).expect("valid").expect("scored");
        assert_eq!(s.score_z.is_some(), i == 200, "point {i}");
    }
}

#[test]
fn spike_alerts_once_per_episode_with_details() {
    // A 300-point window: spikes older than that leave the score history,
    // so a spike of the same size is extreme again.
    // The wave makes the score history wide, so this episode test uses
    // the lower z bar of 4: it checks episodes, not sensitivity.
    let c = DetectorConfig {
        window: 300,
        score_z: 4.0,
        ..cfg()
    };
    let mut d = StreamingDetector::new(c).expect("valid");
    let mut alerts = Vec::new();
    let mut anomalies = Vec::new();
    for i in 0..800 {
        // A spike at 400 and another 10 minutes later (same episode), the
        // same spike at 750 (a new episode).
        let v = match i {
            400 | 410 | 750 => 200.0,
            _ => wave(i),
        };
        if let Some(s) = d.push(i * 60_000, v).expect("valid") {
            if s.is_anomaly {
                anomalies.push(i);
            }
            if s.should_alert() {
                assert_eq!(s.severity, Severity::Critical);
                let det = s.details.clone().expect("details");
                assert!(det.value_percentile > 99.0);
                assert!((det.historical_mean - 50.0).abs() < 5.0);
                assert!(det.top_feature_z.abs() > 3.0);
                alerts.push(i);
            }
        }
    }
    assert!(anomalies.contains(&410), "anomalies: {anomalies:?}");
    assert_eq!(alerts, vec![400, 750]);
}

#[test]
fn bad_points_are_rejected_without_changing_state() {
    let mut d = StreamingDetector::new(cfg()).expect("valid");
    d.push(1_000, 1.0).expect("valid");
    let before = d.clone();
    assert!(matches!(d.push(999, 1.0), Err(Error::OutOfOrder { .. })));
    assert!(d.push(2_000, f64::NAN).is_err());
    assert!(d.push(2_000, f64::INFINITY).is_err());
    assert_eq!(d, before);
}

#[test]
fn window_is_bounded_and_retrains_on_schedule() {
    let c = DetectorConfig {
        window: 150,
        retrain_every: 20,
        ..cfg()
    };
    let mut d = StreamingDetector::new(c).expect("valid");
    let mut thresholds = Vec::new();
    for i in 0..400 {
        d.push(i * 1000, wave(i)).expect("valid");
        assert!(d.points.len() <= 150);
        if let Some(m) = &d.model
            && thresholds.last() != Some(&m.forest.threshold())
        {
            thresholds.push(m.forest.threshold());
        }
    }
    // Trained at 100, then every 20 scored points: 15 models over 300 scores.
    assert!(
        thresholds.len() >= 10,
        "only {} distinct models",
        thresholds.len()
    );
}

#[test]
fn multivariate_explains_the_right_series() {
    // One extreme series among two dilutes the score (7 of 16 features are
    // extreme, not 7 of 9), so this test uses a lower z cut-off; it checks
    // the explanation, not the sensitivity.
    let c = DetectorConfig {
        score_z: 3.0,
        ..cfg()
    };
    let mut d = StreamingDetector::multivariate(c, &["cpu", "mem"]).expect("valid");
    let mut explained = None;
    for i in 0..500 {
        let mem = if i == 450 { 900.0 } else { 500.0 + wave(i) };
        let scored = d.push_row(i * 60_000, &[wave(i), mem]).expect("valid");
        if i == 450 {
            explained = scored.and_then(|s| s.details);
        }
    }
    let det = explained.expect("the memory spike is anomalous");
    assert!(det.top_feature.starts_with("mem."), "{}", det.top_feature);
    assert!((det.historical_mean - 550.0).abs() < 10.0);
    assert!(d.push_row(500 * 60_000, &[1.0]).is_err());
}

#[test]
fn persistence_round_trips_exactly() {
    let mut d = StreamingDetector::new(cfg()).expect("valid");
    for i in 0..250 {
        d.push(i * 60_000, wave(i)).expect("valid");
    }
    let mut bytes = Vec::new();
    d.save(&mut bytes).expect("save");
    let mut restored = StreamingDetector::load(bytes.as_slice()).expect("load");
    assert_eq!(restored, d);
    for i in 250..400 {
        let v = if i == 333 { 500.0 } else { wave(i) };
        assert_eq!(
            restored.push(i * 60_000, v).expect("valid"),
            d.push(i * 60_000, v).expect("valid")
        );
    }
    assert!(StreamingDetector::from_bytes(b"{}").is_err());
    assert!(StreamingDetector::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    let other = String::from_utf8(bytes)
        .expect("json")
        .replace(FORMAT, "something-else");
    assert!(matches!(
        StreamingDetector::from_bytes(other.as_bytes()),
        Err(Error::Decode(_))
    ));
}

/// A series whose ordinary scores spread so widely that `score_z` (5) lies
/// above the highest score the forest can give: the e2e anomaly rule's
/// history (a 13-step sawtooth of two-decimal values, 294 points at a
/// second) then a spike a hundred times its range. The spike scores 0.926,
/// within a hair of the forest's ceiling, at z 4.2; without the capped bar
/// the detector could not flag it, nor anything else.
#[test]
fn a_spike_at_the_score_ceiling_is_anomalous_when_score_z_is_out_of_reach() {
    let cfg = DetectorConfig {
        n_estimators: 50,
        min_points: 50,
        window: 300,
        retrain_every: 50,
        suppression: std::time::Duration::from_secs(1),
        ..DetectorConfig::default()
    };
    let level = |i: i64| 0.2 + ((i * 7919) % 13) as f64 / 100.0;
    let mut d = StreamingDetector::new(cfg).expect("valid");
    // The calendar features take part: this is a morning in December 2026.
    let t0 = 1_796_000_000_000;
    for i in 306..600 {
        let s = d.push(t0 + i * 1000, level(i)).expect("valid");
        // The lower bar does not flag the ordinary points.
        assert!(!s.is_some_and(|s| s.is_anomaly), "point {i}");
    }
    let s = d
        .push(t0 + 600 * 1000, 25.0)
        .expect("valid")
        .expect("scored");
    let model = d.model.as_ref().expect("trained");
    let ceiling = model.forest.max_score();
    let z = s.score_z.expect("decides");
    assert!(
        z < d.cfg.score_z,
        "the case needs score_z out of reach: {s:?}"
    );
    assert!(
        s.score <= ceiling && s.score > ceiling - 0.02,
        "score {} ceiling {ceiling}",
        s.score
    );
    assert!(s.is_anomaly && s.should_alert(), "{s:?}");
}
