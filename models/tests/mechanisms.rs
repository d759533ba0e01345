//! Tests of the detector's mechanisms around the forest: the confirmation
//! (N of M) decision rule, seasonal features, re-baselining after a lasting
//! level shift, and the compatibility of the configuration.

use proptest::prelude::*;
use vigil_models::{DetectorConfig, Score, StreamingDetector};

const MINUTE: i64 = 60_000;
const FIVE_MINUTES: i64 = 5 * MINUTE;
const DAY: i64 = 24 * 60 * MINUTE;

/// Deterministic noise in [0, 1).
fn noise(i: i64) -> f64 {
    ((i.wrapping_mul(7919).wrapping_add(104_729)) % 1000) as f64 / 1000.0
}

fn base(seed: u64) -> DetectorConfig {
    DetectorConfig {
        n_estimators: 40,
        seed,
        ..DetectorConfig::default()
    }
}

fn run(cfg: DetectorConfig, points: &[(i64, f64)]) -> (StreamingDetector, Vec<Option<Score>>) {
    let mut d = StreamingDetector::new(cfg).expect("valid config");
    let scores = points
        .iter()
        .map(|&(t, v)| d.push(t, v).expect("valid point"))
        .collect();
    (d, scores)
}

fn anomalies(scores: &[Option<Score>]) -> Vec<usize> {
    scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| s.is_anomaly))
        .map(|(i, _)| i)
        .collect()
}

/// Random walks with jumps and spikes: enough structure for candidates to
/// occur in runs and alone.
fn series() -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop::collection::vec(
        (
            1i64..600_000,
            prop_oneof![8 => -1.0f64..1.0, 1 => -50.0f64..50.0, 1 => Just(0.0)],
        ),
        60..260,
    )
    .prop_map(|steps| {
        let (mut t, mut level) = (1_700_000_000_000i64, 0.0);
        steps
            .into_iter()
            .map(|(dt, step)| {
                t += dt;
                level += step;
                (t, level)
            })
            .collect()
    })
}

fn small(seed: u64) -> DetectorConfig {
    DetectorConfig {
        n_estimators: 20,
        min_points: 30,
        window: 120,
        retrain_every: 25,
        score_z: 2.0,
        min_score_percentile: 90.0,
        rebaseline_after: 0,
        // Off, so the confirmation's property holds exactly: the gate's
        // episode exemption makes a point's test depend on earlier
        // decisions, and so on N. Tests of the gate turn it on.
        recurrence: 0.0,
        seed,
        ..DetectorConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The confirmation only filters: scores are the same whatever N of M
    /// is, and a point is anomalous under N of M exactly when it passed the
    /// score tests and so did at least N − 1 of the M − 1 points before it.
    #[test]
    fn confirmation_is_n_of_m_over_the_same_scores(
        points in series(), seed in any::<u64>(), m in 1usize..6, n_raw in 1usize..6,
    ) {
        let n = n_raw.min(m);
        // Scores and score tests depend on M (the percentile is ranked
        // against the history before the span), not on N.
        let (_, plain) = run(DetectorConfig { confirm_n: 1, confirm_m: m, ..small(seed) }, &points);
        let (_, confirmed) = run(DetectorConfig { confirm_n: n, confirm_m: m, ..small(seed) }, &points);
        let candidate: Vec<bool> = plain.iter().map(|s| s.as_ref().is_some_and(|s| s.is_anomaly)).collect();
        // Only scored points count towards the confirmation.
        let scored: Vec<usize> = (0..points.len()).filter(|&i| plain[i].is_some()).collect();
        for (k, &i) in scored.iter().enumerate() {
            let (a, b) = (plain[i].as_ref().expect("scored"), confirmed[i].as_ref().expect("scored"));
            prop_assert_eq!(a.score, b.score);
            prop_assert_eq!(a.score_z, b.score_z);
            let lo = k.saturating_sub(m - 1);
            let hits = scored[lo..=k].iter().filter(|&&j| candidate[j]).count();
            prop_assert_eq!(b.is_anomaly, candidate[i] && hits >= n, "point {}", i);
        }
    }

    /// Every mechanism on at once keeps the detector causal and restorable.
    #[test]
    fn all_mechanisms_stay_causal_and_persist(points in series(), cut in 0.0f64..1.0, seed in any::<u64>()) {
        let cfg = DetectorConfig {
            confirm_n: 2, confirm_m: 3, rebaseline_after: 6, seasonal: true,
            seasonal_gate: 3.0, recurrence: 0.25, ..small(seed)
        };
        let k = ((points.len() as f64) * cut) as usize;
        let (_, all) = run(cfg.clone(), &points);
        let (prefix, head) = run(cfg, &points[..k]);
        prop_assert_eq!(&head[..], &all[..k]);
        let mut restored = StreamingDetector::from_bytes(&prefix.to_bytes().expect("encode")).expect("decode");
        for (i, &(t, v)) in points.iter().enumerate().skip(k) {
            prop_assert_eq!(&restored.push(t, v).expect("valid"), &all[i]);
        }
    }
}

/// A daily cycle at 5-minute resolution: low at night, a peak at midday.
fn daily(t: i64) -> f64 {
    let hour = (t.rem_euclid(DAY)) as f64 / 3.6e6;
    let peak = (-(hour - 13.0).powi(2) / 4.0).exp();
    10.0 + 30.0 * peak
}

#[test]
fn seasonal_features_catch_a_missing_daily_peak() {
    // Nine days; on the ninth the midday peak does not happen: every value
    // is one the series takes every night, so only "not at this time of
    // day" makes it anomalous.
    let start = 1_700_006_400_000 - 1_700_006_400_000 % DAY;
    let points: Vec<(i64, f64)> = (0..9 * 288)
        .map(|i| {
            let t = start + i * FIVE_MINUTES;
            let missing = (8 * 288 + 10 * 12..8 * 288 + 16 * 12).contains(&i);
            let v = if missing { 10.0 } else { daily(t) };
            (t, v + noise(i))
        })
        .collect();
    let cfg = DetectorConfig {
        window: 2000,
        ..base(42)
    };
    let (d, scores) = run(cfg, &points);
    assert!(
        d.feature_names().iter().any(|n| n == "vs_yesterday"),
        "{:?}",
        d.feature_names()
    );
    let flagged = anomalies(&scores);
    let in_gap: Vec<&usize> = flagged
        .iter()
        .filter(|&&i| (8 * 288 + 10 * 12..8 * 288 + 16 * 12).contains(&(i as i64)))
        .collect();
    let first = **in_gap.first().expect("the missing peak is flagged");
    let top = &scores[first]
        .as_ref()
        .and_then(|s| s.details.as_ref())
        .expect("details")
        .top_feature;
    assert!(top.starts_with("vs_"), "explained by {top}");
    // Ordinary days pass without anomalies once the detector is warm.
    let outside = flagged.iter().filter(|&&i| i < 8 * 288).count();
    assert_eq!(outside, 0, "{flagged:?}");
}

#[test]
fn without_seasonal_features_the_names_are_the_plain_ones() {
    let d = StreamingDetector::new(DetectorConfig {
        seasonal: false,
        ..base(1)
    })
    .expect("valid");
    assert_eq!(d.feature_names().len(), 9);
    let m = StreamingDetector::multivariate(base(1), &["cpu", "mem"]).expect("valid");
    let names = m.feature_names();
    assert_eq!(names.len(), 16 + 4);
    assert_eq!(
        &names[16..],
        [
            "cpu.vs_yesterday",
            "cpu.vs_last_week",
            "mem.vs_yesterday",
            "mem.vs_last_week"
        ]
    );
}

/// A steady level, then a lasting shift to a far higher one.
fn shifted(shift_at: i64, n: i64) -> Vec<(i64, f64)> {
    (0..n)
        .map(|i| {
            let level = if i < shift_at { 10.0 } else { 60.0 };
            (i * FIVE_MINUTES, level + 2.0 * noise(i))
        })
        .collect()
}

#[test]
fn a_lasting_shift_is_flagged_once_then_learned() {
    let points = shifted(600, 2000);
    let cfg = DetectorConfig {
        rebaseline_after: 12,
        seasonal: false,
        ..base(42)
    };
    let (d, scores) = run(cfg, &points);
    let flagged = anomalies(&scores);
    assert_eq!(d.rebaselines(), 1, "{flagged:?}");
    assert!(
        flagged.iter().any(|&i| (600..612).contains(&i)),
        "the shift itself is flagged: {flagged:?}"
    );
    // The new level is the new normal: once it has lasted, no more
    // anomalies than the steady noise before the shift drew.
    let before = flagged.iter().filter(|&&i| i < 600).count();
    let after = flagged.iter().filter(|&&i| i >= 612).count();
    assert!(
        after as f64 / 1388.0 <= (before + 1) as f64 / 600.0,
        "flagged after re-baselining: {flagged:?}"
    );
    // The model after the re-baseline knows only the new regime: its
    // points score as ordinary there.
    let mut zs: Vec<f64> = scores[900..]
        .iter()
        .filter_map(|s| s.as_ref().and_then(|s| s.score_z))
        .collect();
    zs.sort_by(f64::total_cmp);
    assert!(
        zs[zs.len() / 2].abs() < 1.0,
        "median z {}",
        zs[zs.len() / 2]
    );
    // Scores continue through the new warm-up (an SRE still sees them);
    // decisions resume once the new history is long enough.
    assert!(scores[612..].iter().all(Option::is_some));
    let z_from = scores[612..]
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.score_z.is_some()))
        .expect("decisions resume");
    assert!(z_from <= 110, "warm-up lasted {z_from} points");
}

#[test]
fn spikes_and_short_excursions_do_not_rebaseline() {
    let points: Vec<(i64, f64)> = (0..1500)
        .map(|i| {
            let v = match i {
                500 | 900 => 500.0,
                // Shorter than rebaseline_after: an incident, not a regime.
                1000..=1008 => 80.0,
                _ => 10.0 + 2.0 * noise(i),
            };
            (i * FIVE_MINUTES, v)
        })
        .collect();
    let cfg = DetectorConfig {
        rebaseline_after: 12,
        ..base(7)
    };
    let (d, scores) = run(cfg, &points);
    let flagged = anomalies(&scores);
    assert_eq!(d.rebaselines(), 0, "{flagged:?}");
    assert!(flagged.contains(&500), "{flagged:?}");
}

#[test]
fn confirmation_delays_an_episode_to_its_nth_point() {
    // A lasting excursion: with 1 of 3 it is anomalous from its first
    // point; with 3 of 3 from its third, and never where 1 of 3 was not.
    let points: Vec<(i64, f64)> = (0..700)
        .map(|i| {
            let v = match i {
                600..=610 => 300.0 + i as f64,
                _ => 10.0 + 2.0 * noise(i),
            };
            (i * MINUTE, v)
        })
        .collect();
    // Without the recurrence gate, whose episode exemption makes a point's
    // test depend on earlier decisions (and so on N).
    let lenient = DetectorConfig {
        min_score_percentile: 99.0,
        confirm_m: 3,
        recurrence: 0.0,
        ..base(3)
    };
    let plain = anomalies(&run(lenient.clone(), &points).1);
    let confirmed = anomalies(
        &run(
            DetectorConfig {
                confirm_n: 3,
                confirm_m: 3,
                ..lenient
            },
            &points,
        )
        .1,
    );
    assert!(plain.contains(&600) && plain.contains(&601), "{plain:?}");
    assert!(
        confirmed.iter().all(|i| plain.contains(i)),
        "{confirmed:?} vs {plain:?}"
    );
    assert!(
        confirmed.contains(&602) && !confirmed.contains(&600) && !confirmed.contains(&601),
        "{confirmed:?}"
    );
}

#[test]
fn existing_rule_settings_still_parse_and_new_ones_validate() {
    // A model block written before these settings existed.
    let old = DetectorConfig::from_json(
        r#"{"n_estimators":100,"contamination":0.1,"min_points":50,"window":300,"retrain_every":50,"suppression":"1s"}"#,
    )
    .expect("old settings parse");
    assert_eq!(old.confirm_n, DetectorConfig::default().confirm_n);
    assert_eq!(old.seasonal, DetectorConfig::default().seasonal);
    let new = DetectorConfig::from_json(
        r#"{"confirm_n":2,"confirm_m":3,"seasonal":false,"rebaseline_after":24}"#,
    )
    .expect("new settings parse");
    assert_eq!(
        (new.confirm_n, new.confirm_m, new.rebaseline_after),
        (2, 3, 24)
    );
    assert!(!new.seasonal);
    for bad in [
        r#"{"confirm_n":0}"#,
        r#"{"confirm_n":3,"confirm_m":2}"#,
        r#"{"confirm_n":1,"confirm_m":65}"#,
        r#"{"rebaseline_after":1}"#,
        r#"{"seasonal":"yes"}"#,
        r#"{"seasonal_gate":-1}"#,
        r#"{"recurrence":1.0}"#,
        r#"{"recurrence":-0.1}"#,
    ] {
        assert!(DetectorConfig::from_json(bad).is_err(), "{bad} accepted");
    }
}

/// A day/night series at 5-minute steps: 20 at night, 80 from 08:00 to
/// 20:00, with small noise. More than half of its points sit at one level,
/// so the MAD of its values is that level's noise, not the daily swing.
fn day_night(i: i64) -> f64 {
    let hour = (i % 288) / 12;
    let level = if (8..20).contains(&hour) { 80.0 } else { 20.0 };
    level + hashed_noise(i)
}

/// Noise in [0, 1) without the short cycles of [`noise`] (whose differences
/// from one point, or one day, to the next take two values only).
fn hashed_noise(i: i64) -> f64 {
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

#[test]
fn daily_jumps_pass_the_seasonal_gate_and_a_jump_at_the_wrong_time_does_not() {
    // Ten days; on the tenth the day starts at 03:00 instead of 08:00.
    let early = 9 * 288 + 3 * 12..9 * 288 + 8 * 12;
    let points: Vec<(i64, f64)> = (0..10 * 288)
        .map(|i| {
            let v = if early.contains(&i) {
                80.0 + hashed_noise(i)
            } else {
                day_night(i)
            };
            (i * FIVE_MINUTES, v)
        })
        .collect();
    let gated = DetectorConfig {
        seasonal_gate: 3.0,
        score_z: 4.0,
        ..base(42)
    };
    let (_, scores) = run(gated.clone(), &points);
    let flagged = anomalies(&scores);
    // Once the day's history is in the model (the whole training window has
    // a yesterday: from day 5 on), the daily jumps never alarm.
    let ordinary: Vec<usize> = flagged
        .iter()
        .copied()
        .filter(|&i| i >= 5 * 288 && !early.contains(&(i as i64)))
        .collect();
    assert_eq!(ordinary, Vec::<usize>::new(), "all: {flagged:?}");
    let first = *flagged
        .iter()
        .find(|&&i| early.contains(&(i as i64)))
        .expect("the early start is flagged");
    let top = &scores[first]
        .as_ref()
        .and_then(|s| s.details.as_ref())
        .expect("details")
        .top_feature;
    // The level features are left out for a series the time of day
    // explains, even a two-level one (a value of 80 is ordinary here, just
    // not at 03:00).
    assert!(
        !["value", "ma5", "ma15"].contains(&top.as_str()),
        "explained by {top}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// The seasonal and recurrence gates only filter: scores are the same
    /// with and without them, and every point they leave anomalous is
    /// anomalous without them.
    #[test]
    fn the_gates_only_filter(
        bumps in prop::collection::vec((0i64..720, -60.0f64..60.0, 1i64..30), 0..8),
        offset in 0i64..288,
        seed in any::<u64>(),
        gate in prop_oneof![Just(0.0), 0.5f64..6.0],
        recurrence in prop_oneof![Just(0.0), 0.01f64..0.9],
        m in 1usize..4,
    ) {
        let points: Vec<(i64, f64)> = (0..720)
            .map(|i| {
                let bump: f64 = bumps
                    .iter()
                    .filter(|(at, _, len)| (*at..at + len).contains(&i))
                    .map(|(_, size, _)| size)
                    .sum();
                (i * FIVE_MINUTES, day_night(i + offset) + bump)
            })
            .collect();
        let plain = DetectorConfig { confirm_n: 1.max(m - 1), confirm_m: m, ..small(seed) };
        let (_, open) = run(plain.clone(), &points);
        let (_, gated) = run(DetectorConfig { seasonal_gate: gate, recurrence, ..plain }, &points);
        for (a, b) in open.iter().zip(&gated) {
            let (Some(a), Some(b)) = (a, b) else {
                prop_assert_eq!(a.is_some(), b.is_some());
                continue;
            };
            prop_assert_eq!(a.score, b.score);
            prop_assert_eq!(a.score_percentile, b.score_percentile);
            prop_assert!(!b.is_anomaly || a.is_anomaly, "gated anomaly at {}", b.timestamp_ms);
        }
    }
}

#[test]
fn a_recurring_spike_passes_the_recurrence_gate_and_a_larger_burst_does_not() {
    // A quiet series with the same spike (to 50 for one point) every
    // eight hours, and on the last day a burst to 150.
    let big = 4 * 288 + 100..4 * 288 + 112;
    let points: Vec<(i64, f64)> = (0..5 * 288)
        .map(|i| {
            let v = if big.contains(&i) {
                150.0
            } else if i % 96 == 60 {
                50.0
            } else {
                5.0
            };
            (i * FIVE_MINUTES, v + hashed_noise(i))
        })
        .collect();
    let cfg = DetectorConfig {
        recurrence: 0.25,
        seasonal: false,
        score_z: 4.0,
        ..base(7)
    };
    let (_, scores) = run(cfg.clone(), &points);
    let flagged = anomalies(&scores);
    // Spikes like those already in the window are not news...
    let repeats: Vec<usize> = flagged
        .iter()
        .copied()
        .filter(|&i| (2 * 288..big.start).contains(&(i as i64)))
        .collect();
    assert_eq!(repeats, Vec::<usize>::new(), "all: {flagged:?}");
    // ...a burst three times as high is (and so may be its end, a drop
    // from a level the series never had).
    assert!(
        flagged.iter().any(|&i| big.contains(&(i as i64))),
        "all: {flagged:?}"
    );
    // Without the gate the same detector scores the same points the same,
    // and (with this seed) alarms on one of the repeats.
    let (_, open) = run(
        DetectorConfig {
            recurrence: 0.0,
            ..cfg
        },
        &points,
    );
    for (a, b) in open.iter().zip(&scores) {
        assert_eq!(a.as_ref().map(|s| s.score), b.as_ref().map(|s| s.score));
    }
    assert!(
        anomalies(&open)
            .iter()
            .any(|&i| (2 * 288..big.start).contains(&(i as i64))),
        "the ungated detector is quiet too: the test shows nothing"
    );
}

#[test]
fn a_lasting_outlier_stays_anomalous_under_the_recurrence_gate() {
    // The collector keeps an anomaly rule's alert firing while the points
    // stay anomalous: the episode's own earlier points must not explain
    // its later ones away.
    let outlier = 600..640;
    let points: Vec<(i64, f64)> = (0..700)
        .map(|i| {
            let v = if outlier.contains(&i) { 25.0 } else { 0.2 };
            (i * MINUTE, v + 0.1 * hashed_noise(i))
        })
        .collect();
    // As the collector's episode test configures its rule.
    let open = DetectorConfig {
        seasonal: false,
        score_z: 4.0,
        min_score_percentile: 80.0,
        ..base(3)
    };
    let gated = DetectorConfig {
        recurrence: 0.25,
        ..open.clone()
    };
    let in_outlier = |scores: &[Option<Score>]| -> Vec<usize> {
        anomalies(scores)
            .into_iter()
            .filter(|&i| outlier.contains(&(i as i64)))
            .collect()
    };
    let (_, a) = run(open, &points);
    let (_, b) = run(gated, &points);
    let (a, b) = (in_outlier(&a), in_outlier(&b));
    assert!(a.len() > 1, "{a:?}");
    assert_eq!(a, b);
}
