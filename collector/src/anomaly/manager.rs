//! The anomaly rule manager: evaluates every anomaly rule on its group's
//! interval, feeds each output series to its own streaming detector, writes
//! the scores to the store, runs the alert state machine and sends alerts
//! through the same pipeline as the threshold rules.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use vigil_models::{Score, StreamingDetector};
use vigil_promql::{Engine, QueryContext, Queryable, Value};
use vigil_rules::{AlertSender, OutgoingAlert, SampleAppender};
use vigil_wire::{Labels, Sample};

use super::persist;
use super::state::{self, SeriesAlert, Verdict};
use super::{AnomalyGroup, AnomalyRule};

/// Default stored history a new detector is warmed on.
const DEFAULT_TRAINING_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most points one warm-up range query may ask for (the engine's limit is
/// 11,000 per series).
const MAX_WARM_POINTS: i64 = 10_000;
/// A detector whose series has been absent this long (and has no alert
/// left to send) is dropped, so series churn cannot grow memory without
/// bound. Should the series return, a new detector is warmed on history.
const STALE_SERIES_MS: i64 = 3_600_000;

/// A validated set of anomaly rule files, ready for
/// [`AnomalyManager::update`].
#[derive(Debug, Clone, Default)]
pub struct AnomalyRuleSet {
    /// `(file, group)` in file order.
    pub groups: Vec<(String, AnomalyGroup)>,
}

impl AnomalyRuleSet {
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|(_, g)| g.rules.len()).sum()
    }
}

/// Settings of the manager that come from the collector's configuration.
#[derive(Debug, Clone)]
pub struct AnomalyOptions {
    /// Where detectors are saved (`<data_dir>/models`).
    pub models_dir: PathBuf,
    /// Interval of groups that set none.
    pub default_interval: Duration,
    /// How often detectors are saved while running.
    pub save_interval: Duration,
    pub external_url: String,
    pub external_labels: Labels,
}

struct SeriesState {
    detector: StreamingDetector,
    /// Timestamp of the last point pushed, so no point goes in twice.
    last_ts_ms: i64,
    /// When the rule's output last contained the series (or it was loaded).
    last_seen_ms: i64,
    alert: Option<SeriesAlert>,
}

struct RuleState {
    def: AnomalyRule,
    fingerprint: u64,
    for_ms: i64,
    training_ms: i64,
    /// Whether saved detectors have been looked for.
    loaded: bool,
    series: HashMap<Labels, SeriesState>,
}

struct GroupState {
    name: String,
    interval_ms: i64,
    next_due_ms: i64,
    rules: Vec<RuleState>,
}

#[derive(Default)]
struct Metrics {
    evaluations: AtomicU64,
    failures: AtomicU64,
    anomalies: AtomicU64,
    alerts_sent: AtomicU64,
    saves_failed: AtomicU64,
    restored: AtomicU64,
    warmed: AtomicU64,
}

/// Runs the anomaly rules. Shared; [`AnomalyManager::run`] drives it.
pub struct AnomalyManager {
    engine: Arc<Engine>,
    storage: Arc<dyn Queryable>,
    appender: Arc<dyn SampleAppender>,
    sender: Arc<dyn AlertSender>,
    opts: AnomalyOptions,
    groups: Mutex<Vec<GroupState>>,
    metrics: Metrics,
}

/// FNV-1a, stable across builds (unlike `DefaultHasher`), for the rule
/// fingerprints that name saved model directories.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// What a saved detector depends on: the query, the model settings and the
/// training window. Labels, annotations and `for` may change freely.
fn fingerprint(rule: &AnomalyRule) -> u64 {
    let model = serde_json::to_string(&rule.model).unwrap_or_default();
    fnv1a(&[
        &rule.anomaly,
        &rule.expr,
        &model,
        rule.training_window.as_deref().unwrap_or(""),
    ])
}

fn duration_ms(text: Option<&str>, default: Duration) -> i64 {
    // The rule set was validated at load, so parse errors cannot occur here;
    // fall back to the default rather than panic if they somehow do.
    text.and_then(|t| crate::config::parse_duration(t).ok())
        .unwrap_or(default)
        .as_millis() as i64
}

impl AnomalyManager {
    pub fn new(
        engine: Arc<Engine>,
        storage: Arc<dyn Queryable>,
        appender: Arc<dyn SampleAppender>,
        sender: Arc<dyn AlertSender>,
        opts: AnomalyOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            storage,
            appender,
            sender,
            opts,
            groups: Mutex::new(Vec::new()),
            metrics: Metrics::default(),
        })
    }

    /// Replaces the running rules. Rules whose definition is unchanged keep
    /// their detectors and alert states.
    pub fn update(&self, set: AnomalyRuleSet) {
        let mut groups = self.groups.lock();
        let mut old: HashMap<(String, String, u64), RuleState> = HashMap::new();
        for g in groups.drain(..) {
            for r in g.rules {
                old.insert((g.name.clone(), r.def.anomaly.clone(), r.fingerprint), r);
            }
        }
        for (_file, g) in set.groups {
            let interval_ms = duration_ms(g.interval.as_deref(), self.opts.default_interval).max(1);
            let rules = g
                .rules
                .into_iter()
                .map(|def| {
                    let fp = fingerprint(&def);
                    let for_ms = duration_ms(def.for_duration.as_deref(), Duration::ZERO);
                    let training_ms =
                        duration_ms(def.training_window.as_deref(), DEFAULT_TRAINING_WINDOW);
                    match old.remove(&(g.name.clone(), def.anomaly.clone(), fp)) {
                        Some(mut kept) => {
                            kept.def = def;
                            kept.for_ms = for_ms;
                            kept
                        }
                        None => RuleState {
                            def,
                            fingerprint: fp,
                            for_ms,
                            training_ms,
                            loaded: false,
                            series: HashMap::new(),
                        },
                    }
                })
                .collect();
            groups.push(GroupState {
                name: g.name,
                interval_ms,
                // Due at the next tick.
                next_due_ms: i64::MIN,
                rules,
            });
        }
    }

    /// Evaluates due groups until `shutdown`, saving detectors periodically
    /// and once more on the way out.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut save = tokio::time::interval(self.opts.save_interval);
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        save.tick().await;
        loop {
            let saving = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => false,
                _ = save.tick() => true,
            };
            let me = self.clone();
            let work = tokio::task::spawn_blocking(move || {
                if saving {
                    me.save_all();
                } else {
                    me.evaluate_due(crate::params::now_ms());
                }
            });
            if let Err(e) = work.await {
                tracing::error!(error = %e, "anomaly evaluation task failed");
            }
        }
        let me = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || me.save_all()).await {
            tracing::error!(error = %e, "saving anomaly models on shutdown failed");
        }
    }

    /// Evaluates every group whose time has come.
    pub fn evaluate_due(&self, now_ms: i64) {
        let mut groups = self.groups.lock();
        for g in groups.iter_mut() {
            if g.next_due_ms > now_ms {
                continue;
            }
            // Keep the cadence, but never queue up missed evaluations.
            g.next_due_ms = (g.next_due_ms + g.interval_ms).max(now_ms + g.interval_ms / 2);
            for r in &mut g.rules {
                self.evaluate_rule(r, g.interval_ms, now_ms);
            }
        }
    }

    fn evaluate_rule(&self, rule: &mut RuleState, interval_ms: i64, now_ms: i64) {
        self.metrics.evaluations.fetch_add(1, Ordering::Relaxed);
        let name = rule.def.anomaly.clone();
        if !rule.loaded {
            rule.loaded = true;
            for (labels, detector) in
                persist::load_rule(&self.opts.models_dir, &name, rule.fingerprint)
            {
                let last_ts_ms = i64::MIN;
                self.metrics.restored.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(rule = %name, series = %labels, "loaded saved anomaly model");
                rule.series.insert(
                    labels,
                    SeriesState {
                        detector,
                        last_ts_ms,
                        last_seen_ms: now_ms,
                        alert: None,
                    },
                );
            }
        }
        let outputs = match self.instant(&rule.def.expr, now_ms) {
            Ok(o) => o,
            Err(e) => {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(rule = %name, error = %e, "anomaly rule evaluation failed");
                Vec::new()
            }
        };
        let new: Vec<&Labels> = outputs
            .iter()
            .filter(|(l, _)| !rule.series.contains_key(l))
            .map(|(l, _)| l)
            .collect();
        if !new.is_empty() {
            let history = self.history(rule, interval_ms, now_ms);
            for labels in new {
                let mut detector = match StreamingDetector::new(rule.def.model.clone()) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!(rule = %name, error = %e, "anomaly model rejected");
                        continue;
                    }
                };
                let mut last_ts_ms = i64::MIN;
                for s in history.get(labels).into_iter().flatten() {
                    if s.timestamp_ms < now_ms && s.value.is_finite() {
                        if let Err(e) = detector.push(s.timestamp_ms, s.value) {
                            tracing::warn!(rule = %name, error = %e, "warm-up point rejected");
                        }
                        last_ts_ms = s.timestamp_ms;
                    }
                }
                self.metrics.warmed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(rule = %name, series = %labels, points = detector.points_seen(), "anomaly detector created");
                rule.series.insert(
                    labels.clone(),
                    SeriesState {
                        detector,
                        last_ts_ms,
                        last_seen_ms: now_ms,
                        alert: None,
                    },
                );
            }
        }

        // Scores and `ALERTS` samples, written in one batch.
        let mut samples = Vec::new();
        let mut outgoing = Vec::new();
        let values: HashMap<&Labels, f64> = outputs.iter().map(|(l, v)| (l, *v)).collect();
        for (labels, series) in rule.series.iter_mut() {
            let score = match values.get(labels) {
                Some(v) if v.is_finite() && now_ms > series.last_ts_ms => {
                    series.last_ts_ms = now_ms;
                    match series.detector.push(now_ms, *v) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(rule = %name, series = %labels, error = %e, "scoring failed");
                            None
                        }
                    }
                }
                _ => None,
            };
            let value = values.get(labels).copied().unwrap_or(f64::NAN);
            if values.contains_key(labels) {
                series.last_seen_ms = now_ms;
            }
            let verdict = match &score {
                Some(s) if s.should_alert() => Verdict::Alert,
                Some(s) if s.is_anomaly => Verdict::StillAnomalous,
                _ => Verdict::Normal,
            };
            if let Some(s) = &score {
                if s.should_alert() {
                    self.metrics.anomalies.fetch_add(1, Ordering::Relaxed);
                }
                let mut out = labels.clone();
                out.set("rule", name.clone());
                out.set("__name__", "vigil_anomaly_score");
                samples.push((
                    out,
                    Sample {
                        timestamp_ms: now_ms,
                        value: s.score,
                    },
                ));
            }
            let rule_def = &rule.def;
            let fresh = || self.alert_content(rule_def, labels, value, score.as_ref());
            series.alert = state::step(series.alert.take(), verdict, now_ms, rule.for_ms, fresh);
            // The `ALERTS` series, as Prometheus writes it for active alerts.
            if let Some(a) = &series.alert {
                let alertstate = match a.phase {
                    state::Phase::Pending => Some("pending"),
                    state::Phase::Firing => Some("firing"),
                    state::Phase::Resolved { .. } => None,
                };
                if let Some(alertstate) = alertstate {
                    let mut out = a.labels.clone();
                    out.set("__name__", "ALERTS");
                    out.set("alertstate", alertstate);
                    samples.push((
                        out,
                        Sample {
                            timestamp_ms: now_ms,
                            value: 1.0,
                        },
                    ));
                }
            }
            if let Some(a) = series.alert.as_mut()
                && let Some(o) = state::due(a, now_ms, &self.generator_url(&rule.def.expr))
            {
                outgoing.push(o);
            }
        }
        rule.series
            .retain(|_, s| s.alert.is_some() || now_ms - s.last_seen_ms < STALE_SERIES_MS);
        if !samples.is_empty()
            && let Err(e) = self.appender.append(samples)
        {
            tracing::warn!(rule = %name, error = %e, "writing anomaly scores failed");
        }
        self.send(outgoing);
    }

    fn send(&self, alerts: Vec<OutgoingAlert>) {
        if !alerts.is_empty() {
            self.metrics
                .alerts_sent
                .fetch_add(alerts.len() as u64, Ordering::Relaxed);
            self.sender.send(alerts);
        }
    }

    fn generator_url(&self, expr: &str) -> String {
        let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        format!(
            "{}/graph?g0.expr={q}&g0.tab=1",
            self.opts.external_url.trim_end_matches('/')
        )
    }

    /// Runs `expr` at `at_ms`; each output series by its labels without the
    /// metric name.
    fn instant(&self, expr: &str, at_ms: i64) -> Result<Vec<(Labels, f64)>, String> {
        let v = self
            .engine
            .instant(self.storage.as_ref(), expr, at_ms, &QueryContext::default())
            .map_err(|e| e.to_string())?;
        match v {
            Value::Vector(vs) => Ok(vs
                .into_iter()
                .map(|s| (s.labels.without_metric_name(), s.v))
                .collect()),
            Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
            _ => Err("expression must return an instant vector or a scalar".into()),
        }
    }

    /// Stored history of the rule's expression at the group interval, over
    /// the training window but never more points than the detector keeps.
    fn history(
        &self,
        rule: &RuleState,
        interval_ms: i64,
        now_ms: i64,
    ) -> HashMap<Labels, Vec<Sample>> {
        let keep = (rule.def.model.window as i64).clamp(1, MAX_WARM_POINTS);
        let span = rule.training_ms.min(interval_ms.saturating_mul(keep));
        let (start, end) = (now_ms - span, now_ms - interval_ms);
        if end <= start {
            return HashMap::new();
        }
        let result = self.engine.range(
            self.storage.as_ref(),
            &rule.def.expr,
            start,
            end,
            interval_ms,
            &QueryContext::default(),
        );
        match result {
            Ok(Value::Matrix(series)) => series
                .into_iter()
                .map(|s| (s.labels.without_metric_name(), s.samples))
                .collect(),
            Ok(_) => HashMap::new(),
            Err(e) => {
                tracing::warn!(rule = %rule.def.anomaly, error = %e, "warm-up query failed; the detector starts cold");
                HashMap::new()
            }
        }
    }

    /// Labels and annotations of the alert of one series.
    fn alert_content(
        &self,
        rule: &AnomalyRule,
        series: &Labels,
        value: f64,
        score: Option<&Score>,
    ) -> (Labels, BTreeMap<String, String>) {
        let data = template_data(series, &self.opts, value);
        let mut labels = series.clone();
        for (k, v) in &rule.labels {
            labels.set(k, expand(&rule.anomaly, v, &data));
        }
        if labels.get("severity").is_none()
            && let Some(s) = score
        {
            labels.set("severity", s.severity.as_str());
        }
        for l in self.opts.external_labels.iter() {
            if labels.get(&l.name).is_none() {
                labels.set(&l.name, l.value.clone());
            }
        }
        labels.set("alertname", rule.anomaly.clone());
        let mut annotations: BTreeMap<String, String> = rule
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), expand(&rule.anomaly, v, &data)))
            .collect();
        if let Some(s) = score {
            annotations.insert("anomaly_score".into(), format!("{:.4}", s.score));
            if let Some(d) = &s.details {
                annotations.insert(
                    "historical_mean".into(),
                    format!("{:.6}", d.historical_mean),
                );
                annotations.insert("historical_std".into(), format!("{:.6}", d.historical_std));
                annotations.insert("percentile".into(), format!("{:.1}", d.value_percentile));
                annotations.insert("top_feature".into(), d.top_feature.clone());
            }
        }
        (labels, annotations)
    }

    /// Saves every detector; failures are logged and counted.
    pub fn save_all(&self) {
        let groups = self.groups.lock();
        for g in groups.iter() {
            for r in &g.rules {
                let mut encoded = Vec::with_capacity(r.series.len());
                for (labels, s) in &r.series {
                    match persist::encode(labels, &s.detector) {
                        Ok(b) => encoded.push((labels.clone(), b)),
                        Err(e) => {
                            self.metrics.saves_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(rule = %r.def.anomaly, error = %e, "encoding anomaly model failed");
                        }
                    }
                }
                if encoded.is_empty() && !r.loaded {
                    // Nothing evaluated yet: leave what is on disk alone.
                    continue;
                }
                if let Err(e) = persist::save_rule(
                    &self.opts.models_dir,
                    &r.def.anomaly,
                    r.fingerprint,
                    &encoded,
                ) {
                    self.metrics.saves_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rule = %r.def.anomaly, error = %e, "saving anomaly models failed");
                }
            }
        }
    }

    /// The `vigil_anomaly_*` self-metrics in text exposition format.
    pub fn render_metrics(&self, out: &mut String) {
        use crate::telemetry::{counter, gauge};
        let (rules, detectors) = {
            let groups = self.groups.lock();
            let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
            let detectors: usize = groups
                .iter()
                .flat_map(|g| &g.rules)
                .map(|r| r.series.len())
                .sum();
            (rules, detectors)
        };
        let m = &self.metrics;
        gauge(
            out,
            "vigil_anomaly_rules",
            "Anomaly rules loaded.",
            rules as f64,
        );
        gauge(
            out,
            "vigil_anomaly_detectors",
            "Streaming detectors, one per watched series.",
            detectors as f64,
        );
        counter(
            out,
            "vigil_anomaly_evaluations_total",
            "Anomaly rule evaluations.",
            m.evaluations.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_anomaly_evaluation_failures_total",
            "Anomaly rule evaluations whose query failed.",
            m.failures.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_anomaly_anomalies_total",
            "Points the detectors flagged as new anomalies.",
            m.anomalies.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_anomaly_alerts_sent_total",
            "Anomaly alert notifications sent to alerting.",
            m.alerts_sent.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_anomaly_model_save_failures_total",
            "Detectors that could not be saved.",
            m.saves_failed.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_anomaly_detectors_restored_total",
            "Detectors loaded from saved models (a warm restart).",
            m.restored.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_anomaly_detectors_created_total",
            "Detectors created for new series and warmed on stored history.",
            m.warmed.load(Ordering::Relaxed),
        );
    }

    /// The points each detector has seen, by rule and series (for tests and
    /// debugging).
    pub fn points_seen(&self) -> Vec<(String, Labels, u64)> {
        let groups = self.groups.lock();
        groups
            .iter()
            .flat_map(|g| &g.rules)
            .flat_map(|r| {
                r.series
                    .iter()
                    .map(|(l, s)| (r.def.anomaly.clone(), l.clone(), s.detector.points_seen()))
            })
            .collect()
    }
}

fn template_data(series: &Labels, opts: &AnomalyOptions, value: f64) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = series
        .iter()
        .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
        .collect();
    let external: serde_json::Map<String, serde_json::Value> = opts
        .external_labels
        .iter()
        .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
        .collect();
    serde_json::json!({
        "Labels": labels,
        "ExternalLabels": external,
        "ExternalURL": opts.external_url,
        "Value": if value.is_finite() { serde_json::json!(value) } else { serde_json::Value::Null },
    })
}

/// Expands a label or annotation template as Prometheus does for alerting
/// rules; failures become the inline error text rather than dropping the
/// alert.
fn expand(alert: &str, text: &str, data: &serde_json::Value) -> String {
    let name = vigil_rules::template::template_name(alert);
    let result = vigil_rules::template::parse_rule_template(&name, text)
        .map_err(|e| e.to_string())
        .and_then(|t| t.execute_json(data).map_err(|e| e.to_string()));
    result.unwrap_or_else(|e| {
        tracing::warn!(template = %name, error = %e, "expanding anomaly alert template failed");
        format!("<error expanding template: {e}>")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::StoreAppender;
    use crate::storage::TsdbQueryable;
    use vigil_tsdb::{Db, SeriesSamples};

    /// Records what would go to alerting.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<OutgoingAlert>>);

    impl AlertSender for Recorder {
        fn send(&self, alerts: Vec<OutgoingAlert>) {
            self.0.lock().extend(alerts);
        }
    }

    const RULES: &str = r#"groups:
  - name: g
    interval: 15s
    rules:
      - anomaly: LatencyAnomaly
        expr: latency_seconds
        for: 0s
        model:
          n_estimators: 50
          min_points: 50
          window: 300
          retrain_every: 50
          suppression: 1ms
        annotations:
          summary: "{{ $labels.job }} at {{ $value }}"
"#;

    fn write(db: &Db, t: i64, v: f64) {
        let labels = Labels::from_pairs([("__name__", "latency_seconds"), ("job", "api")]);
        let samples = vec![Sample {
            timestamp_ms: t,
            value: v,
        }];
        db.append(
            vec![SeriesSamples { labels, samples }],
            crate::params::now_ms(),
        )
        .expect("append");
    }

    #[test]
    fn warms_on_history_scores_into_the_store_and_alerts_on_a_spike() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(&dir.path().join("tsdb"), Default::default()).expect("db"));
        let step = 15_000;
        // Ten minutes before the top of the hour: the live points' hour of
        // day is then the one most of the 75-minute history shares, so the
        // calendar features cannot flag them whatever time the test runs.
        let hour = 3_600_000;
        let t = crate::params::now_ms() / hour * hour - 10 * 60_000;
        for i in 0..300i64 {
            let noise = ((i * 7919) % 13) as f64 / 100.0;
            write(&db, t - (300 - i) * step, 0.2 + noise);
        }
        let recorder = Arc::new(Recorder::default());
        let manager = AnomalyManager::new(
            Arc::new(Engine::default()),
            Arc::new(TsdbQueryable(db.clone())),
            Arc::new(StoreAppender(db.clone())),
            recorder.clone(),
            AnomalyOptions {
                models_dir: dir.path().join("models"),
                default_interval: Duration::from_secs(60),
                save_interval: Duration::from_secs(300),
                external_url: "http://vigil:9800".into(),
                external_labels: Labels::from_pairs([("cluster", "eu1")]),
            },
        );
        let parsed = super::super::parse_anomaly_rules("r.yml", RULES).expect("valid");
        manager.update(AnomalyRuleSet {
            groups: parsed
                .groups
                .into_iter()
                .map(|g| ("r.yml".into(), g))
                .collect(),
        });

        write(&db, t, 0.25);
        manager.evaluate_due(t);
        let seen = manager.points_seen();
        assert_eq!(seen.len(), 1);
        // The stored history went in before the live point.
        assert!(seen[0].2 > 250, "{seen:?}");
        let score = db
            .select(
                &[vigil_wire::Matcher::equal(
                    "__name__",
                    "vigil_anomaly_score",
                )],
                t - 60_000,
                t + 60_000,
            )
            .expect("select");
        assert_eq!(score.len(), 1, "{seen:?} {score:?}");
        assert_eq!(score[0].labels.get("rule"), Some("LatencyAnomaly"));
        assert_eq!(score[0].labels.get("job"), Some("api"));

        write(&db, t + step, 25.0);
        manager.evaluate_due(t + step);
        let sent = recorder.0.lock().clone();
        let alert = sent
            .iter()
            .find(|a| a.annotations.get("summary").map(String::as_str) == Some("api at 25"))
            .unwrap_or_else(|| panic!("no alert for the spike: {sent:?}"));
        assert_eq!(alert.labels.get("alertname"), Some("LatencyAnomaly"));
        assert_eq!(alert.labels.get("cluster"), Some("eu1"));
        assert!(alert.labels.get("severity").is_some());
        assert_eq!(alert.ends_at_ms, Some(t + step + 4 * 60_000));
        assert!(alert.annotations.contains_key("historical_mean"));
        let alerts_series = db
            .select(
                &[
                    vigil_wire::Matcher::equal("__name__", "ALERTS"),
                    vigil_wire::Matcher::equal("alertstate", "firing"),
                ],
                t + step,
                t + step,
            )
            .expect("select");
        assert_eq!(alerts_series.len(), 1);
        assert_eq!(
            alerts_series[0].labels.get("alertname"),
            Some("LatencyAnomaly")
        );

        // Saved and restored: a new manager loads the detector instead of
        // creating one.
        manager.save_all();
        let saved = persist::load_rule(
            &dir.path().join("models"),
            "LatencyAnomaly",
            manager.groups.lock()[0].rules[0].fingerprint,
        );
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].1.points_seen(), seen[0].2 + 1);
    }
}
