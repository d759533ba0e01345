//! What reaches an anomaly rule's detectors, and when a rule starts to
//! score.
//!
//! Points are checked as `vigil anomaly score` checks CSV lines
//! ([`vigil_models::check_point`]): a NaN or infinite value, a timestamp
//! equal to or before the series' previous point (a clock step back) is
//! skipped and counted by reason in `vigil_anomaly_points_skipped_total`,
//! and the series goes on. A new detector scores only after `min_points`
//! points; [`Warmup`] says when that will be, for `/api/v1/rules` and the
//! log.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde_json::{Value as Json, json};
use vigil_models::{SkipReason, StreamingDetector};
use vigil_rules::api::rfc3339;

/// Skipped points, by reason.
#[derive(Default)]
pub(crate) struct SkipCounters(Mutex<BTreeMap<&'static str, u64>>);

impl SkipCounters {
    pub(crate) fn skip(&self, reason: SkipReason) {
        *self.0.lock().entry(reason.as_str()).or_insert(0) += 1;
    }

    pub(crate) fn render(&self, out: &mut String) {
        crate::telemetry::labelled_counter(
            out,
            "vigil_anomaly_points_skipped_total",
            "Points not given to an anomaly detector, by reason (non_finite, duplicate or out_of_order timestamp, rejected); the series goes on.",
            "reason",
            self.0.lock().iter().map(|(k, v)| (k.to_string(), *v)),
        );
    }
}

/// Whether `value` at `ts_ms` may follow the series' last point
/// (`i64::MIN`: none yet).
pub(crate) fn admit(last_ts_ms: i64, ts_ms: i64, value: f64) -> Result<(), SkipReason> {
    let last = (last_ts_ms != i64::MIN).then_some(last_ts_ms);
    vigil_models::check_point(last, ts_ms, value)
}

/// How far a rule is from its first score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Warmup {
    /// Points the most advanced of the rule's detectors has seen
    /// (stored history included).
    pub points_seen: u64,
    /// Points a detector needs before it scores (`min_points` + 1: the
    /// model is trained on `min_points`, the next point is the first
    /// scored).
    pub points_needed: u64,
    /// When the rule scored first (in this run), or when it is expected
    /// to; `None` while it has no series at all.
    pub first_score_at_ms: Option<i64>,
    pub scoring: bool,
}

impl Warmup {
    /// The progress after an evaluation at `now_ms`, given the rule's
    /// detectors and its group interval.
    pub(crate) fn after_eval<'a>(
        detectors: impl Iterator<Item = &'a StreamingDetector>,
        min_points: usize,
        now_ms: i64,
        interval_ms: i64,
        first_scored_ms: Option<i64>,
    ) -> Self {
        let needed = min_points as u64 + 1;
        let mut any = false;
        let mut seen = 0u64;
        let mut trained = false;
        for d in detectors {
            any = true;
            seen = seen.max(d.points_seen());
            trained |= d.is_trained();
        }
        let scoring = first_scored_ms.is_some() || trained;
        let first_score_at_ms = match first_scored_ms {
            Some(t) => Some(t),
            None if trained => Some(now_ms),
            None if any => {
                let remaining = needed.saturating_sub(seen) as i64;
                Some(now_ms.saturating_add(remaining.saturating_mul(interval_ms)))
            }
            None => None,
        };
        Warmup {
            points_seen: seen,
            points_needed: needed,
            first_score_at_ms,
            scoring,
        }
    }

    /// The `warmup` object of a rule in `/api/v1/rules`.
    pub(crate) fn json(&self) -> Json {
        json!({
            "scoring": self.scoring,
            "firstScoreAt": self.first_score_at_ms.map(|t| rfc3339(Some(t))),
            "pointsSeen": self.points_seen,
            "pointsNeeded": self.points_needed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_models::DetectorConfig;

    #[test]
    fn the_first_score_is_expected_after_the_missing_points() {
        let cfg = DetectorConfig {
            min_points: 10,
            ..DetectorConfig::default()
        };
        let mut d = StreamingDetector::new(cfg).expect("valid");
        for i in 0..4 {
            d.push(i * 60_000, 1.0 + i as f64).expect("push");
        }
        let w = Warmup::after_eval([&d].into_iter(), 10, 1_000_000, 60_000, None);
        assert_eq!((w.points_seen, w.points_needed, w.scoring), (4, 11, false));
        assert_eq!(w.first_score_at_ms, Some(1_000_000 + 7 * 60_000));
        // Seven more points: the seventh is scored, as predicted.
        let mut first = None;
        for i in 4..11 {
            if d.push(i * 60_000, 1.0 + (i % 3) as f64)
                .expect("push")
                .is_some()
            {
                first.get_or_insert(i);
            }
        }
        assert_eq!(first, Some(10));
        let none = Warmup::after_eval(std::iter::empty(), 10, 5, 60_000, None);
        assert_eq!(none.first_score_at_ms, None);
    }

    mod through_the_manager {
        use std::sync::Arc;
        use std::time::Duration;

        use vigil_promql::Engine;
        use vigil_rules::{AlertSender, OutgoingAlert, RuleTypeFilter};
        use vigil_tsdb::{Db, SeriesSamples};
        use vigil_wire::{Labels, Sample};

        use crate::anomaly::{AnomalyManager, AnomalyOptions, AnomalyRuleSet};
        use crate::pipeline::StoreAppender;
        use crate::storage::TsdbQueryable;

        struct Nowhere;
        impl AlertSender for Nowhere {
            fn send(&self, _: Vec<OutgoingAlert>) {}
        }

        const RULES: &str = "groups:\n  - name: g\n    interval: 1m\n    rules:\n      - anomaly: A\n        expr: m\n";

        fn write(db: &Db, t: i64, v: f64) {
            let labels = Labels::from_pairs([("__name__", "m"), ("job", "x")]);
            db.append(
                vec![SeriesSamples {
                    labels,
                    samples: vec![Sample::new(t, v)],
                }],
                crate::params::now_ms(),
            )
            .expect("append");
        }

        fn manager(dir: &std::path::Path, db: &Arc<Db>) -> Arc<AnomalyManager> {
            let m = AnomalyManager::new(
                Arc::new(Engine::default()),
                Arc::new(TsdbQueryable(db.clone())),
                Arc::new(StoreAppender(db.clone())),
                Arc::new(Nowhere),
                AnomalyOptions {
                    models_dir: dir.join("models"),
                    default_interval: Duration::from_secs(60),
                    save_interval: Duration::from_secs(300),
                    external_url: String::new(),
                    external_labels: Labels::empty(),
                    for_grace_period: Duration::from_secs(600),
                    outage_tolerance: Duration::from_secs(3600),
                },
            );
            let parsed = crate::anomaly::parse_anomaly_rules("r.yml", RULES).expect("valid");
            m.update(AnomalyRuleSet {
                groups: parsed
                    .groups
                    .into_iter()
                    .map(|g| ("r.yml".into(), g))
                    .collect(),
            });
            m
        }

        fn warmup(m: &AnomalyManager) -> serde_json::Value {
            m.rules_json(RuleTypeFilter::All)[0]["rules"][0]["warmup"].clone()
        }

        fn metrics(m: &AnomalyManager) -> String {
            let mut out = String::new();
            m.render_metrics(&mut out);
            out
        }

        #[test]
        fn a_fresh_rule_says_when_it_will_score_and_skips_a_nan() {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = Arc::new(Db::open(&dir.path().join("tsdb"), Default::default()).expect("db"));
            let t = crate::params::now_ms() / 60_000 * 60_000 - 3_600_000;
            let m = manager(dir.path(), &db);
            write(&db, t, 1.0);
            m.evaluate_due(t);
            let w = warmup(&m);
            assert_eq!(w["scoring"], false, "{w}");
            assert_eq!(
                (w["pointsSeen"].as_u64(), w["pointsNeeded"].as_u64()),
                (Some(1), Some(11))
            );
            let expected = vigil_rules::api::rfc3339(Some(t + 10 * 60_000));
            assert_eq!(w["firstScoreAt"], expected.as_str());

            write(&db, t + 60_000, f64::NAN);
            m.evaluate_due(t + 60_000);
            assert!(
                metrics(&m)
                    .contains("vigil_anomaly_points_skipped_total{reason=\"non_finite\"} 1\n"),
                "{}",
                metrics(&m)
            );
            // The NaN took no place in the detector; the series goes on.
            assert_eq!(warmup(&m)["pointsSeen"].as_u64(), Some(1));
            write(&db, t + 120_000, 2.0);
            m.evaluate_due(t + 120_000);
            assert_eq!(warmup(&m)["pointsSeen"].as_u64(), Some(2));
        }

        #[test]
        fn stored_history_makes_a_new_rule_score_at_once() {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = Arc::new(Db::open(&dir.path().join("tsdb"), Default::default()).expect("db"));
            let t = crate::params::now_ms() / 60_000 * 60_000 - 3_600_000;
            for i in 0..30i64 {
                write(&db, t - (30 - i) * 60_000, 1.0 + (i % 4) as f64);
            }
            write(&db, t, 2.0);
            let m = manager(dir.path(), &db);
            m.evaluate_due(t);
            let w = warmup(&m);
            assert_eq!(w["scoring"], true, "{w}");
            assert_eq!(
                w["firstScoreAt"],
                vigil_rules::api::rfc3339(Some(t)).as_str()
            );
            assert!(w["pointsSeen"].as_u64() > Some(11), "{w}");
        }
    }

    #[test]
    fn bad_points_are_refused_with_their_reason() {
        assert_eq!(admit(i64::MIN, 5, 1.0), Ok(()));
        assert_eq!(admit(5, 5, 1.0), Err(SkipReason::Duplicate));
        assert_eq!(admit(5, 4, 1.0), Err(SkipReason::OutOfOrder));
        assert_eq!(admit(5, 6, f64::NAN), Err(SkipReason::NonFinite));
        assert_eq!(admit(5, 6, f64::INFINITY), Err(SkipReason::NonFinite));
    }
}
