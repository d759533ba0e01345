//! The rule manager end to end over an in-memory store: recorded series
//! visible to later rules, stale markers, `ALERTS`/`ALERTS_FOR_STATE`,
//! restore of `for` state after a restart, reload keeping alert state, the
//! API JSON, self-metrics and the scheduler.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vigil_promql::{Engine, EngineOptions, MemStorage, Queryable, SeriesData, StorageError};
use vigil_rules::{
    AlertSender, ManagerOptions, OutgoingAlert, RuleManager, RuleSet, SampleAppender, parse_rules,
};
use vigil_wire::{Labels, Matcher, Sample, is_stale_nan};

#[derive(Default)]
struct Store(RwLock<MemStorage>);

impl Queryable for Store {
    fn select(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<SeriesData>, StorageError> {
        self.0.read().select(m, start, end)
    }
}

impl SampleAppender for Store {
    fn append(&self, samples: Vec<(Labels, Sample)>) -> Result<(), String> {
        let mut s = self.0.write();
        for (l, x) in samples {
            s.add(l, vec![x]);
        }
        Ok(())
    }
}

impl Store {
    fn put(&self, labels: &[(&str, &str)], t_s: i64, v: f64) {
        self.0.write().add(
            Labels::from_pairs(labels.iter().copied()),
            vec![Sample::new(t_s * 1000, v)],
        );
    }

    fn series(&self, name: &str) -> Vec<(Labels, Vec<Sample>)> {
        self.0
            .read()
            .iter()
            .filter(|(l, _)| l.metric_name() == Some(name))
            .map(|(l, s)| (l.clone(), s.to_vec()))
            .collect()
    }
}

#[derive(Default)]
struct Outbox(Mutex<Vec<OutgoingAlert>>);

impl AlertSender for Outbox {
    fn send(&self, alerts: Vec<OutgoingAlert>) {
        self.0.lock().extend(alerts);
    }
}

fn set(text: &str) -> RuleSet {
    match parse_rules("rules.yml", text) {
        Ok(groups) => RuleSet {
            groups,
            files: vec!["rules.yml".into()],
        },
        Err(e) => panic!("{e:?}"),
    }
}

fn manager(store: &Arc<Store>, outbox: &Arc<Outbox>, restore: bool) -> Arc<RuleManager> {
    RuleManager::new(
        Arc::new(Engine::new(EngineOptions::default())),
        store.clone(),
        store.clone(),
        outbox.clone(),
        ManagerOptions {
            external_labels: Labels::from_pairs([("cluster", "eu1")]),
            external_url: "http://vigil:9800".into(),
            restore,
            ..ManagerOptions::default()
        },
    )
}

const RULES: &str = r#"
groups:
  - name: g
    interval: 1m
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: JobDegraded
        expr: job:up:sum < 2
        for: 2m
        labels: {severity: warning}
        annotations:
          summary: "{{ $labels.job }} has {{ $value }} up ({{ $externalLabels.cluster }})"
"#;

#[test]
fn evaluation_writes_series_alerts_and_stale_markers() {
    let store = Arc::new(Store::default());
    let outbox = Arc::new(Outbox::default());
    let m = manager(&store, &outbox, false);
    m.update(set(RULES));
    for t in 0..=5 {
        store.put(
            &[("__name__", "up"), ("job", "api"), ("instance", "a")],
            t * 60,
            1.0,
        );
        // Instance b goes down at 1m and its series disappears at 5m.
        if t < 5 {
            store.put(
                &[("__name__", "up"), ("job", "api"), ("instance", "b")],
                t * 60,
                if t >= 1 { 0.0 } else { 1.0 },
            );
        }
        m.eval_all_at(t * 60_000);
    }
    // The recording rule's output fed the alert in the same evaluation.
    let rec = store.series("job:up:sum");
    assert_eq!(rec.len(), 1);
    assert_eq!(
        rec[0].1.iter().map(|s| s.value).collect::<Vec<_>>(),
        vec![2.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    );
    // pending at 1m, firing from 3m: ALERTS for both states.
    let alerts = store.series("ALERTS");
    let pending = alerts
        .iter()
        .find(|(l, _)| l.get("alertstate") == Some("pending"));
    let firing = alerts
        .iter()
        .find(|(l, _)| l.get("alertstate") == Some("firing"));
    let times = |s: &Vec<Sample>| {
        s.iter()
            .filter(|x| !is_stale_nan(x.value))
            .map(|x| x.timestamp_ms / 1000)
            .collect::<Vec<_>>()
    };
    assert_eq!(pending.map(|p| times(&p.1)), Some(vec![60, 120]));
    assert_eq!(firing.map(|f| times(&f.1)), Some(vec![180, 240, 300]));
    // The pending series went stale when the alert started firing.
    assert!(pending.is_some_and(|p| {
        p.1.iter()
            .any(|x| x.timestamp_ms == 180_000 && is_stale_nan(x.value))
    }));
    let fs = store.series("ALERTS_FOR_STATE");
    assert_eq!(fs.len(), 1);
    assert!(
        fs[0].1.iter().all(|s| s.value == 60.0),
        "value is activeAt in seconds"
    );
    // Sent when it starts firing (3m) and re-sent once resend_delay (1m)
    // has passed (5m, not 4m), with external labels and Prometheus's endsAt.
    let sent = outbox.0.lock().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].ends_at_ms, Some(300_000 + 4 * 60_000));
    assert_eq!(sent[0].labels.get("cluster"), Some("eu1"));
    assert_eq!(sent[0].starts_at_ms, 180_000);
    assert_eq!(sent[0].ends_at_ms, Some(180_000 + 4 * 60_000));
    assert_eq!(
        sent[0].annotations.get("summary").map(String::as_str),
        Some("api has 1 up (eu1)")
    );
    assert!(
        sent[0]
            .generator_url
            .starts_with("http://vigil:9800/graph?g0.expr=job%3Aup%3Asum+%3C+2")
    );
}

#[test]
fn templates_can_query_at_evaluation_time() {
    let store = Arc::new(Store::default());
    let outbox = Arc::new(Outbox::default());
    let m = manager(&store, &outbox, false);
    m.update(set(r#"
groups:
  - name: g
    rules:
      - alert: Low
        expr: up == 0
        annotations:
          total: '{{ with query "sum(up)" }}{{ . | first | value }}{{ end }} of {{ with query "count(up)" }}{{ . | first | value }}{{ end }} up'
          bad: '{{ query "sum(" }}'
"#));
    store.put(&[("__name__", "up"), ("instance", "a")], 0, 0.0);
    store.put(&[("__name__", "up"), ("instance", "b")], 0, 1.0);
    store.put(&[("__name__", "up"), ("instance", "c")], 0, 1.0);
    m.eval_all_at(0);
    let a = &m.alerts_json()["alerts"][0]["annotations"];
    assert_eq!(a["total"], "2 of 3 up");
    // A failing query becomes Prometheus's inline error text.
    assert!(
        a["bad"]
            .as_str()
            .is_some_and(|s| s.starts_with("<error expanding template: ")),
        "{a}"
    );
}

#[test]
fn failing_rule_is_reported_and_the_group_continues() {
    let store = Arc::new(Store::default());
    let outbox = Arc::new(Outbox::default());
    let m = manager(&store, &outbox, false);
    m.update(set(r#"
groups:
  - name: g
    rules:
      - record: collide
        expr: m
        labels: {a: same}
      - record: fine
        expr: m * 2
"#));
    store.put(&[("__name__", "m"), ("a", "1")], 0, 1.0);
    store.put(&[("__name__", "m"), ("a", "2")], 0, 1.0);
    m.eval_all_at(0);
    let rules = m.rules_json(None);
    let r = &rules["groups"][0]["rules"];
    assert_eq!(r[0]["health"], "err");
    assert_eq!(
        r[0]["lastError"],
        "vector contains metrics with the same labelset after applying rule labels"
    );
    assert_eq!(r[1]["health"], "ok");
    assert!(r[1].get("lastError").is_none());
    assert_eq!(store.series("fine").len(), 2);
    let mut metrics = String::new();
    m.render_metrics(&mut metrics);
    assert!(
        metrics.contains("vigil_rule_evaluation_failures_total{rule_group=\"rules.yml;g\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_rule_evaluations_total{rule_group=\"rules.yml;g\"} 2"),
        "{metrics}"
    );
}

#[test]
fn api_json_has_prometheus_shape() {
    let store = Arc::new(Store::default());
    let outbox = Arc::new(Outbox::default());
    let m = manager(&store, &outbox, false);
    m.update(set(RULES));
    store.put(
        &[("__name__", "up"), ("job", "api"), ("instance", "a")],
        0,
        0.0,
    );
    m.eval_all_at(0);
    let all = m.rules_json(None);
    let g = &all["groups"][0];
    assert_eq!(g["name"], "g");
    assert_eq!(g["file"], "rules.yml");
    assert_eq!(g["interval"], json!(60));
    assert_eq!(g["limit"], json!(0));
    let rec = &g["rules"][0];
    assert_eq!(rec["type"], "recording");
    assert_eq!(rec["query"], "sum by (job) (up)");
    assert!(
        rec.get("labels").is_none(),
        "recording labels are omitted when empty"
    );
    let alert = &g["rules"][1];
    let keys: Vec<&str> = alert
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for k in [
        "state",
        "name",
        "query",
        "duration",
        "keepFiringFor",
        "labels",
        "annotations",
        "alerts",
        "health",
        "evaluationTime",
        "lastEvaluation",
        "type",
    ] {
        assert!(keys.contains(&k), "{k} missing: {keys:?}");
    }
    assert_eq!(alert["state"], "pending");
    assert_eq!(alert["duration"], json!(120));
    assert_eq!(alert["labels"], json!({"severity": "warning"}));
    assert_eq!(alert["alerts"][0]["value"], "0e+00");
    assert_eq!(alert["alerts"][0]["activeAt"], "1970-01-01T00:00:00Z");
    assert_eq!(
        alert["alerts"][0]["labels"],
        json!({"alertname": "JobDegraded", "job": "api", "severity": "warning"})
    );
    assert_eq!(
        m.rules_json(Some("record"))["groups"][0]["rules"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        m.rules_json(Some("alert"))["groups"][0]["rules"][0]["type"],
        "alerting"
    );
    let alerts = m.alerts_json();
    assert_eq!(alerts["alerts"].as_array().map(Vec::len), Some(1));
    assert_eq!(alerts["alerts"][0]["state"], "pending");
}

const SLOW_RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: Slow
        expr: up == 0
        for: 30m
"#;

/// Runs the first "process": the alert is active from 0 and the last
/// `ALERTS_FOR_STATE` sample is at `down_s`.
fn first_run(store: &Arc<Store>, down_s: i64) {
    let outbox = Arc::new(Outbox::default());
    let m = manager(store, &outbox, false);
    m.update(set(SLOW_RULES));
    let mut t = 0;
    while t <= down_s {
        store.put(&[("__name__", "up"), ("instance", "a")], t, 0.0);
        m.eval_all_at(t * 1000);
        t += 60;
    }
}

fn active_at_after_restart(store: &Arc<Store>, restart_s: i64) -> serde_json::Value {
    let outbox = Arc::new(Outbox::default());
    let m = manager(store, &outbox, true);
    m.update(set(SLOW_RULES));
    for t in [restart_s, restart_s + 60] {
        store.put(&[("__name__", "up"), ("instance", "a")], t, 0.0);
        m.eval_all_at(t * 1000);
    }
    m.alerts_json()["alerts"][0]["activeAt"].clone()
}

#[test]
fn restore_shifts_active_at_by_the_downtime() {
    let store = Arc::new(Store::default());
    first_run(&store, 600);
    // Restored at 16m after being down from 10m: activeAt moves by 6m.
    assert_eq!(
        active_at_after_restart(&store, 900),
        json!("1970-01-01T00:06:00Z")
    );
}

#[test]
fn restore_keeps_the_grace_period() {
    let store = Arc::new(Store::default());
    first_run(&store, 1500);
    // 5m of `for` left (< 10m grace): fires 10m after the restore at 26m.
    assert_eq!(
        active_at_after_restart(&store, 1500),
        json!("1970-01-01T00:06:00Z")
    );
}

#[test]
fn restore_keeps_firing_alerts_active_at() {
    let store = Arc::new(Store::default());
    first_run(&store, 2400);
    assert_eq!(
        active_at_after_restart(&store, 2460),
        json!("1970-01-01T00:00:00Z")
    );
}

#[test]
fn restore_ignores_state_older_than_the_outage_tolerance() {
    let store = Arc::new(Store::default());
    first_run(&store, 600);
    // Two hours later the stored state is too old: activeAt is the restart.
    assert_eq!(
        active_at_after_restart(&store, 600 + 7200),
        json!("1970-01-01T02:10:00Z")
    );
}

#[test]
fn reload_keeps_state_of_continuing_alerts_and_stales_removed_rules() {
    let store = Arc::new(Store::default());
    let outbox = Arc::new(Outbox::default());
    let m = manager(&store, &outbox, false);
    let two = r#"
groups:
  - name: g
    rules:
      - record: doubled
        expr: up * 2
      - alert: Down
        expr: up == 0
        for: 10m
"#;
    m.update(set(two));
    for t in 0..3 {
        store.put(&[("__name__", "up"), ("instance", "a")], t * 60, 0.0);
        m.eval_all_at(t * 60_000);
    }
    assert_eq!(
        m.alerts_json()["alerts"][0]["activeAt"],
        "1970-01-01T00:00:00Z"
    );
    // Reload: the recording rule is gone, the alert's annotations changed.
    m.update(set(r#"
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 10m
        annotations: {summary: changed}
"#));
    store.put(&[("__name__", "up"), ("instance", "a")], 180, 0.0);
    m.eval_all_at(180_000);
    let alerts = m.alerts_json();
    assert_eq!(
        alerts["alerts"][0]["activeAt"], "1970-01-01T00:00:00Z",
        "state survived the reload"
    );
    assert_eq!(
        alerts["alerts"][0]["annotations"],
        json!({"summary": "changed"})
    );
    let doubled = store.series("doubled");
    assert!(
        doubled[0]
            .1
            .last()
            .is_some_and(|s| s.timestamp_ms == 180_000 && is_stale_nan(s.value)),
        "{doubled:?}"
    );
    // Removing the group marks its series stale at once.
    m.update(RuleSet::default());
    let fs = store.series("ALERTS_FOR_STATE");
    assert!(fs[0].1.last().is_some_and(|s| is_stale_nan(s.value)));
    assert_eq!(m.rules_json(None), json!({"groups": []}));
}

/// Polls `series` until it holds at least `n` samples; a generous deadline
/// (a loaded machine evaluates late, never early), no minimum rate.
async fn wait_for_samples(store: &Store, series: &str, n: usize) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = store
            .series(series)
            .first()
            .map(|s| s.1.clone())
            .unwrap_or_default();
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series}: {} of {n} evaluations after 60s",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Evaluation timestamps lie on the group's interval grid: consecutive
/// ones are whole intervals apart (more than one when the machine was too
/// busy and iterations were missed, as Prometheus counts them).
fn on_the_grid(samples: &[Sample], interval_ms: i64) {
    for w in samples.windows(2) {
        let step = w[1].timestamp_ms - w[0].timestamp_ms;
        assert!(
            step > 0 && step % interval_ms == 0,
            "evaluations {} and {} are not whole intervals apart",
            w[0].timestamp_ms,
            w[1].timestamp_ms
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_evaluates_on_the_interval_and_picks_up_reloads() {
    let store = Arc::new(Store::default());
    let outbox = Arc::new(Outbox::default());
    let m = manager(&store, &outbox, false);
    m.update(set("groups:\n  - name: fast\n    interval: 100ms\n    rules:\n      - record: one\n        expr: vector(1)\n"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(m.clone().run(shutdown.clone()));
    // Repeated evaluations, counted rather than timed.
    on_the_grid(&wait_for_samples(&store, "one", 3).await, 100);
    m.update(set("groups:\n  - name: fast\n    interval: 100ms\n    rules:\n      - record: two\n        expr: vector(2)\n"));
    on_the_grid(&wait_for_samples(&store, "two", 2).await, 100);
    // The old rule stopped: its series was marked stale and got nothing
    // after that.
    let one = store.series("one");
    let last = one.first().and_then(|s| s.1.last().copied());
    assert!(
        last.is_some_and(|s| is_stale_nan(s.value)),
        "the removed rule's series ends in a stale marker: {one:?}"
    );
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(30), task).await {
        Ok(Ok(())) => {}
        other => panic!("run did not stop: {other:?}"),
    }
}

#[test]
fn a_bad_file_rejects_the_whole_reload() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let good = dir.path().join("good.rules.yml");
    let bad = dir.path().join("bad.rules.yml");
    let write = |p: &std::path::Path, t: &str| {
        if let Err(e) = std::fs::write(p, t) {
            panic!("{e}");
        }
    };
    write(&good, SLOW_RULES);
    write(
        &bad,
        "groups:\n  - name: b\n    rules:\n      - alert: X\n        expr: rate(up[5m]\n",
    );
    let pattern = format!("{}/*.rules.yml", dir.path().display());
    let errs = match vigil_rules::load_rule_files(&[pattern.as_str()]) {
        Ok(_) => panic!("a set with a bad file must be rejected"),
        Err(e) => e,
    };
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].file, bad.display().to_string());
    assert_eq!((errs[0].line, errs[0].column), (5, 15));
    // A rejected set never reaches a manager, so whether the running rules
    // survive it is a property of the process doing the reload:
    // tests/tests/rules_e2e.rs reloads a bad file through `/-/reload` and
    // watches the old rules keep evaluating. Here: once fixed, the set
    // loads with both files and the good file's group.
    let store = Arc::new(Store::default());
    let outbox = Arc::new(Outbox::default());
    let m = manager(&store, &outbox, false);
    write(&bad, "groups: []\n");
    match vigil_rules::load_rule_files(&[format!("{}/*.rules.yml", dir.path().display())]) {
        Ok(set) => {
            assert_eq!(set.files.len(), 2);
            m.update(set);
        }
        Err(e) => panic!("{e:?}"),
    }
    assert_eq!(
        m.rules_json(None)["groups"][0]["file"],
        json!(good.display().to_string())
    );
    // A missing explicit path is an error, not an empty set.
    assert!(vigil_rules::load_rule_files(&["/nonexistent/x.yml"]).is_err());
}
