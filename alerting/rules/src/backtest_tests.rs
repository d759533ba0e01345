//! Backtests checked against the step-by-step rule group: the same rules
//! over the same data, once through [`run`] (range queries) and once
//! through [`crate::group::Group::eval`] at every step (instant queries),
//! must see the same alert states at every step.

use std::sync::Arc;
use std::time::Duration;

use vigil_promql::{Engine, MemStorage, Queryable};
use vigil_wire::{Labels, Sample};

use super::*;
use crate::group::{EvalEnv, Group};
use crate::{AlertSender, SampleAppender};

const MIN: i64 = 60_000;

fn rules(text: &str) -> RuleSet {
    RuleSet {
        groups: crate::parse_rules("r.yml", text).expect("valid rules"),
        files: vec!["r.yml".into()],
    }
}

fn series(name: &str, inst: &str, values: &[(i64, f64)]) -> (Labels, Vec<Sample>) {
    (
        Labels::from_pairs([("__name__", name), ("instance", inst)]),
        values
            .iter()
            .map(|&(m, v)| Sample::new(m * MIN, v))
            .collect(),
    )
}

fn run_on(data: MemStorage, text: &str, from: i64, to: i64) -> Report {
    let storage: Arc<dyn Queryable> = Arc::new(data);
    let mut opts = Options::new(from * MIN, to * MIN);
    opts.collect_sent = true;
    opts.collect_recorded = true;
    run(
        &rules(text),
        &Arc::new(Engine::default()),
        storage,
        None,
        &opts,
    )
}

fn seen(r: &Report) -> Vec<(i64, String, &'static str)> {
    r.transitions
        .iter()
        .map(|t| {
            (
                t.time_ms / MIN,
                t.labels.get("instance").unwrap_or("").to_string(),
                t.state.as_str(),
            )
        })
        .collect()
}

#[test]
fn for_and_keep_firing_for() {
    let mut data = MemStorage::new();
    // High from minute 10 to 19, then low.
    let v: Vec<(i64, f64)> = (0..=60)
        .map(|m| (m, if (10..20).contains(&m) { 100.0 } else { 1.0 }))
        .collect();
    let (l, s) = series("load", "a", &v);
    data.add(l, s);
    let text = "groups:\n  - name: g\n    rules:\n      - alert: High\n        expr: load > 50\n        for: 3m\n        keep_firing_for: 5m\n";
    let r = run_on(data, text, 0, 60);
    assert_eq!(
        seen(&r),
        [
            (10, "a".into(), "pending"),
            (13, "a".into(), "firing"),
            // Clear at 20; kept firing while now - 20m < 5m.
            (25, "a".into(), "resolved"),
        ]
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // Sent while firing, every minute (resend delay), then resolved.
    let first = r.sent.first().expect("sent");
    assert_eq!(first.0, 13 * MIN);
    let last = r.sent.last().expect("sent");
    assert_eq!(last.1.ends_at_ms, Some(25 * MIN));
}

#[test]
fn a_gap_longer_than_the_lookback_resolves_and_stale_markers_end_series_at_once() {
    let mut data = MemStorage::new();
    // Present 0..=10, gap until 30 (> 5m lookback), present 30..=40.
    let v: Vec<(i64, f64)> = (0..=10).chain(30..=40).map(|m| (m, 1.0)).collect();
    let (l, s) = series("up_ish", "a", &v);
    data.add(l, s);
    // Same, but a stale marker at minute 11 ends it at once.
    let mut w: Vec<(i64, f64)> = (0..=10).map(|m| (m, 1.0)).collect();
    w.push((11, f64::from_bits(vigil_wire::STALE_NAN_BITS)));
    let (l, s) = series("up_ish", "b", &w);
    data.add(l, s);
    let text =
        "groups:\n  - name: g\n    rules:\n      - alert: Present\n        expr: up_ish == 1\n";
    let r = run_on(data, text, 0, 40);
    assert_eq!(
        seen(&r),
        [
            (0, "a".into(), "firing"),
            (0, "b".into(), "firing"),
            (11, "b".into(), "resolved"),
            // The last sample at 10 is seen up to and including 10 + 5m
            // (Prometheus 2.x's closed lookback window).
            (16, "a".into(), "resolved"),
            (30, "a".into(), "firing"),
        ]
    );
}

#[test]
fn recording_rules_feed_later_rules_and_vanish_with_stale_markers() {
    let mut data = MemStorage::new();
    let v: Vec<(i64, f64)> = (0..=30)
        .map(|m| (m, if (5..10).contains(&m) { 9.0 } else { 1.0 }))
        .collect();
    let (l, s) = series("x", "a", &v);
    data.add(l, s);
    let text = "groups:\n  - name: g\n    rules:\n      - record: x:high\n        expr: x > 5\n      - alert: High\n        expr: x:high\n";
    let r = run_on(data, text, 0, 30);
    // Without stale markers the recorded series would linger for the 5m
    // lookback after minute 9; with them the alert resolves at 10.
    assert_eq!(
        seen(&r),
        [(5, "a".into(), "firing"), (10, "a".into(), "resolved")]
    );
    let (labels, samples) = &r.recorded[0];
    assert_eq!(labels.metric_name(), Some("x:high"));
    assert_eq!(samples.len(), 6, "five points and a stale marker");
    assert!(vigil_wire::is_stale_nan(samples[5].value));
}

struct Appender(Arc<parking_lot::Mutex<MemStorage>>);
impl SampleAppender for Appender {
    fn append(&self, samples: Vec<(Labels, Sample)>) -> Result<(), String> {
        let mut m = self.0.lock();
        for (l, s) in samples {
            m.add(l, vec![s]);
        }
        Ok(())
    }
}
struct Shared(Arc<parking_lot::Mutex<MemStorage>>);
impl Queryable for Shared {
    fn select(
        &self,
        matchers: &[vigil_wire::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, vigil_promql::StorageError> {
        self.0.lock().select(matchers, start_ms, end_ms)
    }
}
struct NoSend;
impl AlertSender for NoSend {
    fn send(&self, _: Vec<OutgoingAlert>) {}
}

/// The step-by-step group as `vigil serve` runs it, as the oracle.
fn stepwise(data: &MemStorage, text: &str, from: i64, to: i64) -> Vec<(i64, String, String)> {
    let store = Arc::new(parking_lot::Mutex::new(data.clone()));
    let storage: Arc<dyn Queryable> = Arc::new(Shared(store.clone()));
    let engine = Arc::new(Engine::default());
    let spec = rules(text).groups.remove(0);
    let mut g = Group::new(spec, Duration::from_secs(60), false);
    let ext = Labels::empty();
    let extv = crate::template::labels_value(&ext);
    let appender = Appender(store);
    let env = EvalEnv {
        engine: &engine,
        storage: &storage,
        appender: &appender,
        sender: &NoSend,
        external_labels: &ext,
        external_labels_value: &extv,
        external_url: "",
        resend_delay: Duration::from_secs(60),
    };
    let mut states: BTreeMap<(String, Labels), AlertState> = BTreeMap::new();
    let mut out = Vec::new();
    for m in from..=to {
        g.eval(m * MIN, &env);
        let mut now: BTreeMap<(String, Labels), AlertState> = BTreeMap::new();
        for r in &g.rules {
            if let Some(a) = r.alerting() {
                for al in a.active_alerts() {
                    now.insert((r.spec.name.clone(), al.labels.clone()), al.state);
                }
            }
        }
        for (k, s) in &now {
            if states.get(k) != Some(s) {
                out.push((
                    m,
                    k.1.get("instance").unwrap_or("").to_string(),
                    s.as_str().to_string(),
                ));
            }
        }
        for k in states.keys() {
            if !now.contains_key(k) {
                out.push((
                    m,
                    k.1.get("instance").unwrap_or("").to_string(),
                    "resolved".into(),
                ));
            }
        }
        states = now;
    }
    out
}

#[test]
fn range_evaluation_matches_the_step_by_step_group() {
    // A noisy series per instance, with gaps, stale markers and spikes.
    let mut data = MemStorage::new();
    let mut seed = 7u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for inst in ["a", "b", "c", "d"] {
        let mut v = Vec::new();
        for m in 0..=240 {
            match rnd() % 20 {
                0 => continue,
                1 => v.push((m, f64::from_bits(vigil_wire::STALE_NAN_BITS))),
                _ => v.push((m, (rnd() % 100) as f64)),
            }
        }
        let (l, s) = series("m", inst, &v);
        data.add(l, s);
    }
    let text = "groups:\n  - name: g\n    rules:\n      - record: m:avg3\n        expr: avg_over_time(m[3m])\n      - alert: Hot\n        expr: m:avg3 > 60\n        for: 2m\n        keep_firing_for: 3m\n      - alert: Spike\n        expr: m > 90\n        for: 1m\n";
    let want = stepwise(&data, text, 0, 240);
    let got: Vec<(i64, String, String)> = seen(&run_on(data, text, 0, 240))
        .into_iter()
        .map(|(t, i, s)| (t, i, s.to_string()))
        .collect();
    let sort = |mut v: Vec<(i64, String, String)>| {
        v.sort();
        v
    };
    assert!(!want.is_empty());
    assert_eq!(sort(got), sort(want));
}

#[test]
fn alerts_series_feed_later_rules_that_read_them() {
    let mut data = MemStorage::new();
    let v: Vec<(i64, f64)> = (0..=30)
        .map(|m| (m, if (5..10).contains(&m) { 9.0 } else { 1.0 }))
        .collect();
    let (l, s) = series("x", "a", &v);
    data.add(l, s);
    let text = "groups:\n  - name: g\n    rules:\n      - alert: High\n        expr: x > 5\n      - alert: HighSeen\n        expr: ALERTS{alertname=\"High\", alertstate=\"firing\"}\n";
    let r = run_on(data, text, 0, 30);
    let seen: Vec<(i64, String, &str)> = r
        .transitions
        .iter()
        .map(|t| (t.time_ms / MIN, t.rule.clone(), t.state.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (5, "High".into(), "firing"),
            (5, "HighSeen".into(), "firing"),
            // ALERTS goes stale at 10, so HighSeen resolves at once.
            (10, "High".into(), "resolved"),
            (10, "HighSeen".into(), "resolved"),
        ]
    );
}
