//! The anomaly rule manager: evaluates every anomaly rule on its group's
//! interval, feeds each output series to its own streaming detector, writes
//! the scores to the store, runs the alert state machine and sends alerts
//! through the same pipeline as the threshold rules.
//!
//! Towards the rest of the collector anomaly rules behave as Prometheus
//! alerting rules: their alerts are written as `ALERTS` and
//! `ALERTS_FOR_STATE` series (with stale markers when they end), listed by
//! `/api/v1/rules` and `/api/v1/alerts` ([`AnomalyManager::rules_json`],
//! [`AnomalyManager::alerts_json`]), and restored after a restart from the
//! saved alert state (`persist.rs`), so neither `for` nor the suppression
//! window starts over.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Map, Value as Json, json};
use tokio_util::sync::CancellationToken;
use vigil_models::{Score, StreamingDetector};
use vigil_promql::{Engine, QueryContext, Queryable, Value};
use vigil_rules::api::{format_value_e, go_float, rfc3339};
use vigil_rules::{AlertSender, OutgoingAlert, RuleTypeFilter, SampleAppender};
use vigil_wire::{Labels, Sample, stale_nan};

use super::input::{SkipCounters, Warmup, admit};
use super::persist::{self, SavedAlerts, SavedRule, SavedSeries};
use super::state::{self, Phase, SeriesAlert, Verdict};
use super::{AnomalyGroup, AnomalyRule};

/// Default stored history a new detector is warmed on.
pub(super) const DEFAULT_TRAINING_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
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
    /// Where detectors and alert state are saved (`<data_dir>/models`).
    pub models_dir: PathBuf,
    /// Interval of groups that set none.
    pub default_interval: Duration,
    /// How often detectors are saved while running.
    pub save_interval: Duration,
    pub external_url: String,
    pub external_labels: Labels,
    /// Prometheus's `--rules.alert.for-grace-period`: a pending alert
    /// restored after a restart fires no sooner than this.
    pub for_grace_period: Duration,
    /// Prometheus's `--rules.alert.for-outage-tolerance`: after a longer
    /// outage a pending alert's `for` starts over.
    pub outage_tolerance: Duration,
}

struct SeriesState {
    detector: StreamingDetector,
    /// Timestamp of the last point pushed, so no point goes in twice.
    last_ts_ms: i64,
    /// When the rule's output last contained the series (or it was loaded).
    last_seen_ms: i64,
    alert: Option<SeriesAlert>,
    /// The last anomalous point; the suppression window runs from here. The
    /// detector keeps the same, but only in its periodically saved model:
    /// this copy is saved with the alert state after every evaluation.
    last_anomaly_ms: Option<i64>,
    /// `ALERTS`/`ALERTS_FOR_STATE` series written at the last evaluation;
    /// those not written again get a stale marker, as in Prometheus.
    written: Vec<Labels>,
}

impl SeriesState {
    fn new(detector: StreamingDetector, last_ts_ms: i64, now_ms: i64) -> Self {
        Self {
            detector,
            last_ts_ms,
            last_seen_ms: now_ms,
            alert: None,
            last_anomaly_ms: None,
            written: Vec::new(),
        }
    }
}

/// A rule's health, as `/api/v1/rules` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

struct RuleState {
    def: AnomalyRule,
    fingerprint: u64,
    for_ms: i64,
    training_ms: i64,
    suppression_ms: i64,
    /// Whether saved detectors have been looked for.
    loaded: bool,
    /// Alert state taken over at the first evaluation: saved before a
    /// restart, or held by the rule's previous definition before a reload.
    restore: Option<SavedRule>,
    series: HashMap<Labels, SeriesState>,
    health: Health,
    last_error: Option<String>,
    last_eval_wall_ms: Option<i64>,
    eval_duration: Duration,
    /// When a detector of this rule first scored in this run.
    first_scored_ms: Option<i64>,
    /// How far the rule is from scoring, after its last evaluation.
    warmup: Warmup,
    /// The warm-up has been logged (once per rule definition).
    warmup_logged: bool,
}

struct GroupState {
    name: String,
    file: String,
    interval_ms: i64,
    next_due_ms: i64,
    rules: Vec<RuleState>,
    last_eval_wall_ms: Option<i64>,
    eval_duration: Duration,
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
    alerts_restored: AtomicU64,
    alert_state_saves_failed: AtomicU64,
    skipped: SkipCounters,
}

/// `/api/v1/rules` groups (with their rules) and `/api/v1/alerts` alerts.
#[derive(Default)]
struct ApiView {
    groups: Vec<Json>,
    alerts: Vec<Json>,
}

/// Runs the anomaly rules. Shared; [`AnomalyManager::run`] drives it.
pub struct AnomalyManager {
    engine: Arc<Engine>,
    storage: Arc<dyn Queryable>,
    appender: Arc<dyn SampleAppender>,
    sender: Arc<dyn AlertSender>,
    opts: AnomalyOptions,
    groups: Mutex<Vec<GroupState>>,
    /// Alert state read at start-up, handed to rules as they are installed.
    saved_alerts: Mutex<BTreeMap<String, SavedRule>>,
    /// What was last written to the alert state file, to skip rewriting an
    /// empty state.
    last_saved_alerts: Mutex<Option<SavedAlerts>>,
    /// The API's view, rebuilt after every evaluation and update, so API
    /// requests never wait for an evaluation (which holds `groups` while
    /// it queries and warms detectors).
    api: Mutex<ApiView>,
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

pub(super) fn duration_ms(text: Option<&str>, default: Duration) -> i64 {
    // The rule set was validated at load, so parse errors cannot occur here;
    // fall back to the default rather than panic if they somehow do.
    text.and_then(|t| crate::config::parse_duration(t).ok())
        .unwrap_or(default)
        .as_millis() as i64
}

/// The `activeAt` of an alert restored at `now_ms` after the collector
/// last evaluated its rule at `down_at_ms`.
///
/// A firing alert keeps its `activeAt`: the episode it reports is the same
/// one, and the detector (which suppresses repeats) will not raise it
/// again. A pending alert follows Prometheus's `RestoreForState`: the
/// downtime does not count towards `for`, at least `for_grace_ms` remain
/// after the restart, and with a `for` shorter than the grace period or
/// after an outage longer than `outage_tolerance_ms` the wait starts over.
pub(crate) fn restored_active_at(
    alert: &SeriesAlert,
    now_ms: i64,
    down_at_ms: i64,
    for_ms: i64,
    for_grace_ms: i64,
    outage_tolerance_ms: i64,
) -> i64 {
    if alert.phase != Phase::Pending {
        return alert.active_at_ms;
    }
    if for_ms < for_grace_ms || now_ms - down_at_ms > outage_tolerance_ms {
        return now_ms;
    }
    let remaining = for_ms - (down_at_ms - alert.active_at_ms);
    if remaining <= 0 {
        alert.active_at_ms
    } else if remaining < for_grace_ms {
        now_ms + for_grace_ms - for_ms
    } else {
        alert.active_at_ms + (now_ms - down_at_ms)
    }
}

/// `ALERTS{alertname, alertstate, …}`.
fn alerts_series(labels: &Labels, alertstate: &str) -> Labels {
    let mut out = labels.clone();
    out.set("__name__", "ALERTS");
    out.set("alertstate", alertstate);
    out
}

/// `ALERTS_FOR_STATE{alertname, …}` (no `alertstate`).
fn for_state_series(labels: &Labels) -> Labels {
    let mut out = labels.clone();
    out.set("__name__", "ALERTS_FOR_STATE");
    out
}

impl RuleState {
    fn new(def: AnomalyRule, restore: Option<SavedRule>) -> Self {
        let for_ms = duration_ms(def.for_duration.as_deref(), Duration::ZERO);
        let training_ms = duration_ms(def.training_window.as_deref(), DEFAULT_TRAINING_WINDOW);
        RuleState {
            fingerprint: fingerprint(&def),
            for_ms,
            training_ms,
            suppression_ms: def.model.suppression.as_millis() as i64,
            def,
            loaded: false,
            restore,
            series: HashMap::new(),
            health: Health::Unknown,
            last_error: None,
            last_eval_wall_ms: None,
            eval_duration: Duration::ZERO,
            first_scored_ms: None,
            warmup: Warmup::default(),
            warmup_logged: false,
        }
    }

    /// The state worth saving: alerts, and anomalies recent enough to
    /// suppress a repeat. A rule not evaluated since it was installed still
    /// holds what it is to restore.
    fn saved(&self, now_ms: i64) -> Option<SavedRule> {
        if let Some(r) = &self.restore {
            return Some(r.clone());
        }
        let mut series: Vec<SavedSeries> = self
            .series
            .iter()
            .filter(|(_, s)| {
                s.alert.is_some()
                    || s.last_anomaly_ms
                        .is_some_and(|t| now_ms - t < self.suppression_ms)
            })
            .map(|(labels, s)| SavedSeries {
                labels: labels.clone(),
                alert: s.alert.clone(),
                last_anomaly_ms: s.last_anomaly_ms,
            })
            .collect();
        if series.is_empty() {
            return None;
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Some(SavedRule {
            evaluated_at_ms: self.last_eval_wall_ms.unwrap_or(now_ms),
            series,
        })
    }

    /// Pending and firing alerts, in label order.
    fn active_alerts(&self) -> Vec<&SeriesAlert> {
        let mut out: Vec<&SeriesAlert> = self
            .series
            .values()
            .filter_map(|s| s.alert.as_ref())
            .filter(|a| a.active_state().is_some())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

impl AnomalyManager {
    pub fn new(
        engine: Arc<Engine>,
        storage: Arc<dyn Queryable>,
        appender: Arc<dyn SampleAppender>,
        sender: Arc<dyn AlertSender>,
        opts: AnomalyOptions,
    ) -> Arc<Self> {
        let saved = persist::load_alerts(&opts.models_dir);
        Arc::new(Self {
            engine,
            storage,
            appender,
            sender,
            opts,
            groups: Mutex::new(Vec::new()),
            saved_alerts: Mutex::new(saved.rules),
            last_saved_alerts: Mutex::new(None),
            api: Mutex::new(ApiView::default()),
            metrics: Metrics::default(),
        })
    }

    /// Replaces the running rules. Rules whose definition is unchanged keep
    /// their detectors and alert states; a rule whose definition changed
    /// keeps its alerts (by name, as Prometheus keeps `ALERTS_FOR_STATE`)
    /// but starts new detectors. Alerts of removed rules end with stale
    /// markers on their `ALERTS` series.
    pub fn update(&self, set: AnomalyRuleSet) {
        let now_ms = crate::params::now_ms();
        let mut groups = self.groups.lock();
        let mut old: HashMap<(String, String, u64), RuleState> = HashMap::new();
        for g in groups.drain(..) {
            for r in g.rules {
                old.insert((g.name.clone(), r.def.anomaly.clone(), r.fingerprint), r);
            }
        }
        // The saved state is for the rules installed at start-up only; a
        // rule added by a later reload starts afresh.
        let mut saved_at_start = std::mem::take(&mut *self.saved_alerts.lock());
        for (file, g) in set.groups {
            let interval_ms = duration_ms(g.interval.as_deref(), self.opts.default_interval).max(1);
            let mut rules = Vec::with_capacity(g.rules.len());
            for def in g.rules {
                let fp = fingerprint(&def);
                let rule = match old.remove(&(g.name.clone(), def.anomaly.clone(), fp)) {
                    Some(mut kept) => {
                        kept.for_ms = duration_ms(def.for_duration.as_deref(), Duration::ZERO);
                        kept.def = def;
                        kept
                    }
                    None => {
                        let previous = old
                            .keys()
                            .find(|k| k.1 == def.anomaly)
                            .cloned()
                            .and_then(|k| old.remove(&k));
                        let restore = match previous {
                            Some(p) => p.saved(now_ms),
                            None => saved_at_start.remove(&def.anomaly),
                        };
                        RuleState::new(def, restore)
                    }
                };
                rules.push(rule);
            }
            groups.push(GroupState {
                name: g.name,
                file,
                interval_ms,
                // Due at the next tick.
                next_due_ms: i64::MIN,
                rules,
                last_eval_wall_ms: None,
                eval_duration: Duration::ZERO,
            });
        }
        let stale: Vec<(Labels, Sample)> = old
            .values()
            .flat_map(|r| r.series.values())
            .flat_map(|s| s.written.iter())
            .map(|l| {
                (
                    l.clone(),
                    Sample {
                        timestamp_ms: now_ms,
                        value: stale_nan(),
                    },
                )
            })
            .collect();
        if !stale.is_empty()
            && let Err(e) = self.appender.append(stale)
        {
            tracing::warn!(error = %e, "writing stale markers for removed anomaly rules failed");
        }
        self.refresh_api(&groups);
    }

    /// Rebuilds the API's view of the rules and their alerts.
    fn refresh_api(&self, groups: &[GroupState]) {
        let view = ApiView {
            groups: groups.iter().map(group_json).collect(),
            alerts: groups
                .iter()
                .flat_map(|g| &g.rules)
                .flat_map(|r| r.active_alerts())
                .map(alert_json)
                .collect(),
        };
        *self.api.lock() = view;
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

    /// Evaluates every group whose time has come, then saves the alert
    /// state.
    pub fn evaluate_due(&self, now_ms: i64) {
        let mut groups = self.groups.lock();
        let mut evaluated = false;
        for g in groups.iter_mut() {
            if g.next_due_ms > now_ms {
                continue;
            }
            evaluated = true;
            // Keep the cadence, but never queue up missed evaluations.
            g.next_due_ms = (g.next_due_ms + g.interval_ms).max(now_ms + g.interval_ms / 2);
            let started = Instant::now();
            for r in &mut g.rules {
                self.evaluate_rule(r, g.interval_ms, now_ms);
            }
            g.eval_duration = started.elapsed();
            g.last_eval_wall_ms = Some(now_ms);
        }
        if evaluated {
            self.save_alert_state(&groups, now_ms);
            self.refresh_api(&groups);
        }
    }

    /// Writes the alert state of all rules, unless it is empty and was
    /// empty before.
    fn save_alert_state(&self, groups: &[GroupState], now_ms: i64) {
        let mut saved = SavedAlerts::new();
        for r in groups.iter().flat_map(|g| &g.rules) {
            if let Some(s) = r.saved(now_ms) {
                saved.rules.insert(r.def.anomaly.clone(), s);
            }
        }
        let mut last = self.last_saved_alerts.lock();
        if saved.rules.is_empty() {
            let nothing_to_clear = match last.as_ref() {
                Some(l) => l.rules.is_empty(),
                // Not written yet in this run: clear what an earlier run
                // left, if anything.
                None => !persist::alerts_path(&self.opts.models_dir).exists(),
            };
            if nothing_to_clear {
                return;
            }
        }
        match persist::save_alerts(&self.opts.models_dir, &saved) {
            Ok(()) => *last = Some(saved),
            Err(e) => {
                self.metrics
                    .alert_state_saves_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "saving anomaly alert state failed");
            }
        }
    }

    /// Loads saved detectors and the state to restore, the first time a
    /// rule is evaluated.
    fn load_saved(&self, rule: &mut RuleState, now_ms: i64) {
        rule.loaded = true;
        let name = rule.def.anomaly.clone();
        for (labels, detector) in persist::load_rule(&self.opts.models_dir, &name, rule.fingerprint)
        {
            self.metrics.restored.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(rule = %name, series = %labels, "loaded saved anomaly model");
            rule.series
                .insert(labels, SeriesState::new(detector, i64::MIN, now_ms));
        }
    }

    /// Takes over the alert state saved before a restart (or held by the
    /// rule's previous definition) for the series that now have detectors.
    fn apply_restore(&self, rule: &mut RuleState, saved: SavedRule, now_ms: i64) {
        let grace_ms = self.opts.for_grace_period.as_millis() as i64;
        let tolerance_ms = self.opts.outage_tolerance.as_millis() as i64;
        for s in saved.series {
            let Some(series) = rule.series.get_mut(&s.labels) else {
                continue;
            };
            series.last_anomaly_ms = series.last_anomaly_ms.max(s.last_anomaly_ms);
            if let Some(mut alert) = s.alert {
                // Sent again at once, as Prometheus re-sends restored
                // alerts: alerting learns of them after its own restart,
                // and its notification log keeps receivers from hearing of
                // an unchanged alert twice.
                alert.last_sent_ms = None;
                alert.active_at_ms = restored_active_at(
                    &alert,
                    now_ms,
                    saved.evaluated_at_ms,
                    rule.for_ms,
                    grace_ms,
                    tolerance_ms,
                );
                self.metrics.alerts_restored.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(rule = %rule.def.anomaly, labels = %alert.labels, phase = ?alert.phase, active_at_ms = alert.active_at_ms, "anomaly alert state restored");
                series.alert = Some(alert);
            }
        }
    }

    fn evaluate_rule(&self, rule: &mut RuleState, interval_ms: i64, now_ms: i64) {
        let started = Instant::now();
        self.metrics.evaluations.fetch_add(1, Ordering::Relaxed);
        let name = rule.def.anomaly.clone();
        if !rule.loaded {
            self.load_saved(rule, now_ms);
        }
        let restore = rule.restore.take();
        let outputs = match self.instant(&rule.def.expr, now_ms) {
            Ok(o) => {
                rule.health = Health::Ok;
                rule.last_error = None;
                o
            }
            Err(e) => {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(rule = %name, error = %e, "anomaly rule evaluation failed");
                rule.health = Health::Err;
                rule.last_error = Some(e);
                // As Prometheus does for a failed alerting rule: alerts stay
                // as they are rather than resolving because nothing came
                // back; a restore waits for a successful evaluation.
                rule.restore = restore;
                rule.last_eval_wall_ms = Some(now_ms);
                rule.eval_duration = started.elapsed();
                return;
            }
        };
        // New series, and series with restored state but no detector yet
        // (absent now: their alerts resolve as Prometheus's would).
        let mut new: Vec<&Labels> = outputs
            .iter()
            .map(|(l, _)| l)
            .chain(
                restore
                    .iter()
                    .flat_map(|r| r.series.iter().map(|s| &s.labels)),
            )
            .filter(|l| !rule.series.contains_key(*l))
            .collect();
        new.sort();
        new.dedup();
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
                // The present point is pushed by the evaluation below.
                for s in history.get(labels).into_iter().flatten() {
                    if s.timestamp_ms >= now_ms {
                        continue;
                    }
                    if let Err(reason) = admit(last_ts_ms, s.timestamp_ms, s.value) {
                        self.metrics.skipped.skip(reason);
                        continue;
                    }
                    match detector.push(s.timestamp_ms, s.value) {
                        Ok(_) => last_ts_ms = s.timestamp_ms,
                        Err(e) => {
                            self.metrics
                                .skipped
                                .skip(vigil_models::SkipReason::Rejected);
                            tracing::warn!(rule = %name, error = %e, "warm-up point rejected");
                        }
                    }
                }
                self.metrics.warmed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(rule = %name, series = %labels, points = detector.points_seen(), "anomaly detector created");
                rule.series.insert(
                    labels.clone(),
                    SeriesState::new(detector, last_ts_ms, now_ms),
                );
            }
        }
        if let Some(saved) = restore {
            self.apply_restore(rule, saved, now_ms);
        }

        // Scores and `ALERTS` samples, written in one batch.
        let mut samples = Vec::new();
        let mut outgoing = Vec::new();
        let values: HashMap<&Labels, f64> = outputs.iter().map(|(l, v)| (l, *v)).collect();
        let generator_url = self.generator_url(&rule.def.expr);
        for (labels, series) in rule.series.iter_mut() {
            let present = values.get(labels).copied();
            let score = match present.map(|v| (v, admit(series.last_ts_ms, now_ms, v))) {
                Some((v, Ok(()))) => {
                    series.last_ts_ms = now_ms;
                    match series.detector.push(now_ms, v) {
                        Ok(s) => s,
                        Err(e) => {
                            self.metrics
                                .skipped
                                .skip(vigil_models::SkipReason::Rejected);
                            tracing::warn!(rule = %name, series = %labels, error = %e, "scoring failed");
                            None
                        }
                    }
                }
                Some((_, Err(reason))) => {
                    self.metrics.skipped.skip(reason);
                    None
                }
                None => None,
            };
            if score.is_some() && rule.first_scored_ms.is_none() {
                rule.first_scored_ms = Some(now_ms);
                tracing::info!(rule = %name, series = %labels, "anomaly rule scoring: first score written");
            }
            let value = present.unwrap_or(f64::NAN);
            if present.is_some() {
                series.last_seen_ms = now_ms;
            }
            let verdict = match &score {
                Some(s) if s.is_anomaly => {
                    // The detector suppresses repeats itself; the saved
                    // anchor covers a detector restored from a model saved
                    // before the episode began.
                    let suppressed = s.suppressed
                        || series
                            .last_anomaly_ms
                            .is_some_and(|t| t < now_ms && now_ms - t < rule.suppression_ms);
                    series.last_anomaly_ms = Some(now_ms);
                    if suppressed {
                        Verdict::StillAnomalous
                    } else {
                        Verdict::Alert
                    }
                }
                Some(_) => Verdict::Normal,
                None if present.is_some() => Verdict::Unknown,
                None => Verdict::Normal,
            };
            if let Some(s) = &score {
                if verdict == Verdict::Alert {
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
            // An active alert keeps its severity: labels are the alert's
            // identity, and a severity flapping with each score would make
            // it a new alert to Alertmanager at every change.
            let severity = series
                .alert
                .as_ref()
                .filter(|a| a.active_state().is_some())
                .and_then(|a| a.labels.get("severity").map(str::to_string));
            let rule_def = &rule.def;
            let fresh =
                || self.alert_content(rule_def, labels, value, score.as_ref(), severity.as_deref());
            series.alert = state::step(series.alert.take(), verdict, now_ms, rule.for_ms, fresh);
            // `ALERTS` and `ALERTS_FOR_STATE`, as Prometheus writes them for
            // active alerts; a series no longer written goes stale.
            let mut written = Vec::new();
            if let Some(a) = series.alert.as_mut()
                && let Some(alertstate) = a.active_state()
            {
                if value.is_finite() {
                    a.value = value;
                }
                for (l, v) in [
                    (alerts_series(&a.labels, alertstate), 1.0),
                    (
                        for_state_series(&a.labels),
                        a.active_at_ms.div_euclid(1000) as f64,
                    ),
                ] {
                    samples.push((
                        l.clone(),
                        Sample {
                            timestamp_ms: now_ms,
                            value: v,
                        },
                    ));
                    written.push(l);
                }
            }
            for gone in series.written.iter().filter(|l| !written.contains(l)) {
                samples.push((
                    gone.clone(),
                    Sample {
                        timestamp_ms: now_ms,
                        value: stale_nan(),
                    },
                ));
            }
            series.written = written;
            if let Some(a) = series.alert.as_mut()
                && let Some(o) = state::due(a, now_ms, &generator_url, &self.opts.external_labels)
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
        rule.warmup = Warmup::after_eval(
            rule.series.values().map(|s| &s.detector),
            rule.def.model.min_points,
            now_ms,
            interval_ms,
            rule.first_scored_ms,
        );
        if !rule.warmup_logged
            && !rule.warmup.scoring
            && let Some(at) = rule.warmup.first_score_at_ms
        {
            rule.warmup_logged = true;
            tracing::info!(
                rule = %name,
                points_seen = rule.warmup.points_seen,
                points_needed = rule.warmup.points_needed,
                first_score_at = %vigil_rules::api::rfc3339(Some(at)),
                "anomaly rule warming up: stored history is shorter than min_points; first score expected at first_score_at"
            );
        }
        rule.last_eval_wall_ms = Some(now_ms);
        rule.eval_duration = started.elapsed();
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

    /// Labels and annotations of the alert of one series. `severity` is the
    /// active alert's, kept over the score's.
    fn alert_content(
        &self,
        rule: &AnomalyRule,
        series: &Labels,
        value: f64,
        score: Option<&Score>,
        severity: Option<&str>,
    ) -> (Labels, BTreeMap<String, String>) {
        let data = template_data(series, &self.opts, value);
        let mut labels = series.clone();
        for (k, v) in &rule.labels {
            labels.set(k, expand(&rule.anomaly, v, &data));
        }
        if labels.get("severity").is_none() {
            match (severity, score) {
                (Some(kept), _) => labels.set("severity", kept),
                (None, Some(s)) => labels.set("severity", s.severity.as_str()),
                (None, None) => {}
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

    /// Saves every detector, and the alert state; failures are logged and
    /// counted.
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
        // Nothing evaluated yet in this run: the state on disk is still the
        // one to restore, and rules not loaded hold it anyway.
        if groups.iter().any(|g| g.last_eval_wall_ms.is_some()) {
            self.save_alert_state(&groups, crate::params::now_ms());
        }
    }

    /// The anomaly groups of `/api/v1/rules`, shaped as Prometheus's
    /// alerting-rule groups (anomaly rules are alerting rules; with
    /// `type=record` their groups are listed without rules, as Prometheus
    /// lists a group holding only alerting rules).
    pub fn rules_json(&self, filter: RuleTypeFilter) -> Vec<Json> {
        let mut groups = self.api.lock().groups.clone();
        if filter == RuleTypeFilter::Record {
            for g in &mut groups {
                g["rules"] = json!([]);
            }
        }
        groups
    }

    /// The pending and firing anomaly alerts, as `/api/v1/alerts` lists
    /// alerts.
    pub fn alerts_json(&self) -> Vec<Json> {
        self.api.lock().alerts.clone()
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
        counter(
            out,
            "vigil_anomaly_alerts_restored_total",
            "Anomaly alerts (pending, firing or resolved) taken over from the saved alert state.",
            m.alerts_restored.load(Ordering::Relaxed),
        );
        counter(
            out,
            "vigil_anomaly_alert_state_save_failures_total",
            "Failed writes of the anomaly alert state file.",
            m.alert_state_saves_failed.load(Ordering::Relaxed),
        );
        m.skipped.render(out);
    }

    #[cfg(test)]
    fn render_metrics_text(&self) -> String {
        let mut out = String::new();
        self.render_metrics(&mut out);
        out
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

fn string_map_json(m: &BTreeMap<String, String>) -> Json {
    Json::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

fn labels_json(l: &Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|x| (x.name.clone(), Json::String(x.value.clone())))
            .collect(),
    )
}

/// One alert, as Prometheus 2.42 shows it in `/api/v1/alerts` and in a
/// rule's `alerts`.
fn alert_json(a: &SeriesAlert) -> Json {
    json!({
        "labels": labels_json(&a.labels),
        "annotations": string_map_json(&a.annotations),
        "state": a.active_state().unwrap_or("inactive"),
        "activeAt": rfc3339(Some(a.active_at_ms)),
        "value": format_value_e(a.value),
    })
}

/// One group of `/api/v1/rules`.
fn group_json(g: &GroupState) -> Json {
    let rules: Vec<Json> = g.rules.iter().map(rule_json).collect();
    json!({
        "name": g.name,
        "file": g.file,
        "rules": rules,
        "interval": go_float(g.interval_ms as f64 / 1000.0),
        "limit": 0,
        "evaluationTime": go_float(g.eval_duration.as_secs_f64()),
        "lastEvaluation": rfc3339(g.last_eval_wall_ms),
    })
}

/// One anomaly rule as a Prometheus alerting rule: `query` is the input
/// expression, `duration` its `for`.
fn rule_json(r: &RuleState) -> Json {
    let alerts = r.active_alerts();
    let state = if alerts.iter().any(|a| a.phase == Phase::Firing) {
        "firing"
    } else if alerts.is_empty() {
        "inactive"
    } else {
        "pending"
    };
    let mut o = Map::new();
    o.insert("state".into(), json!(state));
    o.insert("name".into(), json!(r.def.anomaly));
    o.insert("query".into(), json!(r.def.expr));
    o.insert("duration".into(), go_float(r.for_ms as f64 / 1000.0));
    o.insert("keepFiringFor".into(), json!(0));
    o.insert("labels".into(), string_map_json(&r.def.labels));
    o.insert("annotations".into(), string_map_json(&r.def.annotations));
    o.insert(
        "alerts".into(),
        Json::Array(alerts.into_iter().map(alert_json).collect()),
    );
    o.insert("health".into(), json!(r.health.as_str()));
    if let Some(e) = &r.last_error {
        o.insert("lastError".into(), json!(e));
    }
    o.insert(
        "evaluationTime".into(),
        go_float(r.eval_duration.as_secs_f64()),
    );
    o.insert("lastEvaluation".into(), json!(rfc3339(r.last_eval_wall_ms)));
    o.insert("type".into(), json!("alerting"));
    // Vigil's addition: when the rule's detectors start to score.
    o.insert("warmup".into(), r.warmup.json());
    Json::Object(o)
}

pub(super) fn template_data(
    series: &Labels,
    opts: &AnomalyOptions,
    value: f64,
) -> serde_json::Value {
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
pub(super) fn expand(alert: &str, text: &str, data: &serde_json::Value) -> String {
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
                for_grace_period: Duration::from_secs(600),
                outage_tolerance: Duration::from_secs(3600),
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

    fn manager_on(
        db: &Arc<Db>,
        models: &std::path::Path,
        recorder: &Arc<Recorder>,
        rules: &str,
    ) -> Arc<AnomalyManager> {
        let manager = AnomalyManager::new(
            Arc::new(Engine::default()),
            Arc::new(TsdbQueryable(db.clone())),
            Arc::new(StoreAppender(db.clone())),
            recorder.clone(),
            AnomalyOptions {
                models_dir: models.to_path_buf(),
                default_interval: Duration::from_secs(60),
                save_interval: Duration::from_secs(300),
                external_url: "http://vigil:9800".into(),
                external_labels: Labels::from_pairs([("cluster", "eu1")]),
                for_grace_period: Duration::from_secs(600),
                outage_tolerance: Duration::from_secs(3600),
            },
        );
        let parsed = super::super::parse_anomaly_rules("r.yml", rules).expect("valid");
        manager.update(AnomalyRuleSet {
            groups: parsed
                .groups
                .into_iter()
                .map(|g| ("r.yml".into(), g))
                .collect(),
        });
        manager
    }

    /// A store holding 300 steady points before `t` (placed ten minutes
    /// before the top of the hour, see the first test).
    fn steady_store(dir: &std::path::Path) -> (Arc<Db>, i64) {
        let db = Arc::new(Db::open(&dir.join("tsdb"), Default::default()).expect("db"));
        let hour = 3_600_000;
        let t = crate::params::now_ms() / hour * hour - 10 * 60_000;
        for i in 0..300i64 {
            let noise = ((i * 7919) % 13) as f64 / 100.0;
            write(&db, t - (300 - i) * 15_000, 0.2 + noise);
        }
        (db, t)
    }

    fn firing(recorder: &Recorder) -> Vec<OutgoingAlert> {
        recorder
            .0
            .lock()
            .iter()
            .filter(|a| a.ends_at_ms.is_some_and(|e| e > a.starts_at_ms + 60_000))
            .cloned()
            .collect()
    }

    #[test]
    fn alerts_are_listed_like_prometheus_and_survive_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, t) = steady_store(dir.path());
        let models = dir.path().join("models");
        let rules = RULES.replace("suppression: 1ms", "suppression: 10m");
        let recorder = Arc::new(Recorder::default());
        let a = manager_on(&db, &models, &recorder, &rules);
        write(&db, t, 0.25);
        a.evaluate_due(t);
        let spike = t + 15_000;
        write(&db, spike, 25.0);
        a.evaluate_due(spike);
        assert_eq!(firing(&recorder).len(), 1, "{:?}", recorder.0.lock());

        // /api/v1/alerts and /api/v1/rules, without external labels.
        let alerts = a.alerts_json();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let alert = &alerts[0];
        assert_eq!(alert["state"], "firing");
        assert_eq!(alert["activeAt"], rfc3339(Some(spike)));
        assert_eq!(alert["value"], "2.5e+01");
        assert_eq!(alert["labels"]["alertname"], "LatencyAnomaly");
        assert_eq!(alert["labels"]["job"], "api");
        assert!(alert["labels"].get("cluster").is_none(), "{alert}");
        assert_eq!(alert["annotations"]["summary"], "api at 25");
        let groups = a.rules_json(RuleTypeFilter::All);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(
            (&g["name"], &g["file"], &g["interval"]),
            (&json!("g"), &json!("r.yml"), &json!(15))
        );
        assert_eq!(g["lastEvaluation"], rfc3339(Some(spike)));
        let r = &g["rules"][0];
        assert_eq!(r["type"], "alerting");
        assert_eq!(r["name"], "LatencyAnomaly");
        assert_eq!(r["query"], "latency_seconds");
        assert_eq!(r["duration"], 0);
        assert_eq!(r["state"], "firing");
        assert_eq!(r["health"], "ok");
        assert_eq!(
            r["annotations"]["summary"],
            "{{ $labels.job }} at {{ $value }}"
        );
        assert_eq!(r["alerts"][0], *alert);
        let recording_only = a.rules_json(RuleTypeFilter::Record);
        assert_eq!(recording_only[0]["rules"], json!([]));

        // ALERTS_FOR_STATE holds activeAt in seconds, as in Prometheus.
        let for_state = db
            .select(
                &[vigil_wire::Matcher::equal("__name__", "ALERTS_FOR_STATE")],
                spike,
                spike,
            )
            .expect("select");
        assert_eq!(for_state.len(), 1);
        assert_eq!(for_state[0].samples[0].value, (spike / 1000) as f64);
        assert_eq!(for_state[0].labels.get("alertstate"), None);

        // A crash: no models saved, only the alert state written after each
        // evaluation. The new manager takes the alert over with its
        // activeAt (it may resolve it at once: the repeated value need not
        // score anomalous again) and raises no second alert: whatever it
        // sends is the same alert, same start.
        drop(a);
        let b = manager_on(&db, &models, &recorder, &rules);
        let next = spike + 15_000;
        write(&db, next, 25.0);
        b.evaluate_due(next);
        let groups = b.groups.lock();
        let series = groups[0].rules[0].series.values().next().expect("series");
        let alert = series.alert.as_ref().expect("alert restored");
        assert_eq!(alert.active_at_ms, spike);
        drop(groups);
        let sent = recorder.0.lock().clone();
        assert!(sent.len() >= 2, "the restored alert is re-sent: {sent:?}");
        assert!(sent.iter().all(|a| a.starts_at_ms == spike), "{sent:?}");
        assert!(
            b.render_metrics_text()
                .contains("vigil_anomaly_alerts_restored_total 1")
        );
    }

    #[test]
    fn a_restart_keeps_the_suppression_window() {
        // The saved state says the series was anomalous a minute ago; the
        // detector (warmed on steady history only) knows nothing of it.
        let run = |anchor: Option<i64>| {
            let dir = tempfile::tempdir().expect("tempdir");
            let (db, t) = steady_store(dir.path());
            let models = dir.path().join("models");
            if let Some(offset) = anchor {
                let mut saved = SavedAlerts::new();
                saved.rules.insert(
                    "LatencyAnomaly".into(),
                    SavedRule {
                        evaluated_at_ms: t - 15_000,
                        series: vec![SavedSeries {
                            labels: Labels::from_pairs([("job", "api")]),
                            alert: None,
                            last_anomaly_ms: Some(t + offset),
                        }],
                    },
                );
                persist::save_alerts(&models, &saved).expect("save");
            }
            let recorder = Arc::new(Recorder::default());
            let m = manager_on(
                &db,
                &models,
                &recorder,
                &RULES.replace("suppression: 1ms", "suppression: 10m"),
            );
            write(&db, t, 25.0);
            m.evaluate_due(t);
            firing(&recorder).len()
        };
        assert_eq!(run(None), 1, "a spike alerts");
        assert_eq!(run(Some(-60_000)), 0, "within the window: suppressed");
        assert_eq!(run(Some(-11 * 60_000)), 1, "after the window: alerts");
    }

    #[test]
    fn restored_pending_alerts_follow_prometheus_for_state_rules() {
        let alert = |phase, active_at_ms| SeriesAlert {
            labels: Labels::empty(),
            annotations: BTreeMap::new(),
            active_at_ms,
            phase,
            last_sent_ms: None,
            value: 1.0,
        };
        let (min, h) = (60_000, 3_600_000);
        // Firing: activeAt kept whatever the outage.
        assert_eq!(
            restored_active_at(&alert(Phase::Firing, 5), 10 * h, 0, 0, 10 * min, h),
            5
        );
        // Pending, `for` 30m, 10m spent, down 5m: the downtime does not count.
        let p = alert(Phase::Pending, 0);
        assert_eq!(
            restored_active_at(&p, 15 * min, 10 * min, 30 * min, 10 * min, h),
            5 * min
        );
        // Less than the grace period left: fires a grace period after restart.
        let p = alert(Phase::Pending, 0);
        assert_eq!(
            restored_active_at(&p, 30 * min, 25 * min, 30 * min, 10 * min, h),
            30 * min + 10 * min - 30 * min
        );
        // `for` shorter than the grace period, or a long outage: starts over.
        assert_eq!(
            restored_active_at(&p, 9 * min, 8 * min, 5 * min, 10 * min, h),
            9 * min
        );
        assert_eq!(
            restored_active_at(&p, 3 * h, min, 30 * min, 10 * min, h),
            3 * h
        );
    }

    /// The store, or an outage of it on demand.
    struct Flaky {
        inner: TsdbQueryable,
        down: std::sync::atomic::AtomicBool,
    }

    impl Queryable for Flaky {
        fn select(
            &self,
            matchers: &[vigil_wire::Matcher],
            start_ms: i64,
            end_ms: i64,
        ) -> Result<Vec<vigil_promql::SeriesData>, vigil_promql::StorageError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(vigil_promql::StorageError("store unavailable".into()));
            }
            self.inner.select(matchers, start_ms, end_ms)
        }
    }

    #[test]
    fn a_failed_evaluation_keeps_alerts_and_reports_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, t) = steady_store(dir.path());
        let flaky = Arc::new(Flaky {
            inner: TsdbQueryable(db.clone()),
            down: std::sync::atomic::AtomicBool::new(false),
        });
        let recorder = Arc::new(Recorder::default());
        let m = AnomalyManager::new(
            Arc::new(Engine::default()),
            flaky.clone(),
            Arc::new(StoreAppender(db.clone())),
            recorder.clone(),
            AnomalyOptions {
                models_dir: dir.path().join("models"),
                default_interval: Duration::from_secs(60),
                save_interval: Duration::from_secs(300),
                external_url: "http://vigil:9800".into(),
                external_labels: Labels::empty(),
                for_grace_period: Duration::from_secs(600),
                outage_tolerance: Duration::from_secs(3600),
            },
        );
        let parsed = super::super::parse_anomaly_rules("r.yml", RULES).expect("valid");
        m.update(AnomalyRuleSet {
            groups: vec![("r.yml".into(), parsed.groups[0].clone())],
        });
        assert_eq!(
            m.rules_json(RuleTypeFilter::All)[0]["rules"][0]["health"],
            "unknown"
        );
        write(&db, t, 25.0);
        m.evaluate_due(t);
        assert_eq!(m.alerts_json().len(), 1, "{:?}", recorder.0.lock());

        flaky.down.store(true, Ordering::Relaxed);
        m.evaluate_due(t + 15_000);
        let rule = &m.rules_json(RuleTypeFilter::All)[0]["rules"][0];
        assert_eq!(rule["health"], "err");
        assert!(
            rule["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("unavailable")),
            "{rule}"
        );
        assert_eq!(rule["state"], "firing", "the alert stays: {rule}");
        assert_eq!(m.alerts_json().len(), 1);
        let resolved = recorder
            .0
            .lock()
            .iter()
            .any(|a| a.ends_at_ms == Some(t + 15_000));
        assert!(!resolved, "no resolution sent for a failed evaluation");
    }
}
