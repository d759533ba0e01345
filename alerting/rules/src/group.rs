//! One rule group at run time: evaluation of its rules in order, writing
//! their output (recorded series, `ALERTS`, `ALERTS_FOR_STATE`, stale
//! markers), sending alerts, restoring `for` state after a start, and
//! carrying state across a reload — Prometheus 2.42's `rules/group.go`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vigil_promql::{Engine, QueryContext, Queryable, Value as QValue};
use vigil_template::Value;
use vigil_wire::{Labels, Matcher, Sample, is_stale_nan, stale_nan};

use crate::alerting::{Alert, AlertingRule, for_state_series};
use crate::file::{GroupSpec, RuleKind, RuleSpec};
use crate::{AlertSender, OutgoingAlert, SampleAppender};

/// A rule's health as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Good,
    Bad,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Good => "ok",
            Health::Bad => "err",
        }
    }
}

/// Kind-specific runtime state.
#[derive(Debug, Clone)]
pub enum RuleRuntimeKind {
    Recording,
    Alerting(AlertingRule),
}

/// A rule with its runtime bookkeeping.
#[derive(Debug, Clone)]
pub struct RuleRuntime {
    pub spec: Arc<RuleSpec>,
    pub kind: RuleRuntimeKind,
    pub health: Health,
    pub last_error: Option<String>,
    /// Wall-clock start of the last evaluation (ms since epoch).
    pub last_eval_wall_ms: Option<i64>,
    pub eval_duration: Duration,
    pub evaluations: u64,
    pub failures: u64,
}

impl RuleRuntime {
    fn new(spec: Arc<RuleSpec>) -> Self {
        let kind = match spec.kind {
            RuleKind::Alerting(_) => RuleRuntimeKind::Alerting(AlertingRule::new(spec.clone())),
            _ => RuleRuntimeKind::Recording,
        };
        RuleRuntime {
            spec,
            kind,
            health: Health::Unknown,
            last_error: None,
            last_eval_wall_ms: None,
            eval_duration: Duration::ZERO,
            evaluations: 0,
            failures: 0,
        }
    }

    pub fn alerting(&self) -> Option<&AlertingRule> {
        match &self.kind {
            RuleRuntimeKind::Alerting(a) => Some(a),
            RuleRuntimeKind::Recording => None,
        }
    }
}

/// Everything an evaluation reads or writes besides the group itself.
pub struct EvalEnv<'a> {
    pub engine: &'a Arc<Engine>,
    pub storage: &'a Arc<dyn Queryable>,
    pub appender: &'a dyn SampleAppender,
    pub sender: &'a dyn AlertSender,
    pub external_labels: &'a Labels,
    /// `external_labels` as a template map.
    pub external_labels_value: &'a Value,
    pub external_url: &'a str,
    pub resend_delay: Duration,
}

/// A group and its rules' state.
#[derive(Debug)]
pub struct Group {
    pub spec: GroupSpec,
    pub interval: Duration,
    pub rules: Vec<RuleRuntime>,
    /// Series each rule wrote last time, to mark the vanished ones stale.
    series_prev: Vec<BTreeSet<Labels>>,
    /// Series of rules removed by a reload, marked stale at the next eval.
    stale_series: Vec<Labels>,
    pub last_eval_wall_ms: Option<i64>,
    /// The aligned timestamp of the last evaluation: a reload continues the
    /// schedule from here, so no evaluation slot is skipped.
    pub last_eval_ts_ms: Option<i64>,
    pub eval_duration: Duration,
    pub iterations: u64,
    pub missed_iterations: u64,
    /// Restore `for` state from `ALERTS_FOR_STATE` after the first evals.
    pub should_restore: bool,
    /// Set when a reload replaced this group; its task stops.
    pub retired: bool,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs an expression as Prometheus's `EngineQueryFunc`: vectors as they
/// are, scalars as one element without labels, anything else an error.
pub fn query_vector(
    engine: &Engine,
    storage: &dyn Queryable,
    spec: &RuleSpec,
    ts_ms: i64,
) -> Result<Vec<(Labels, f64)>, String> {
    let value = match storage.instant_query(&spec.query_string(), ts_ms) {
        // Storage that evaluates PromQL itself (a remote query API).
        Some(v) => v.map_err(|e| e.to_string())?,
        None => engine
            .instant_expr(storage, &spec.expr, ts_ms, &QueryContext::default())
            .map_err(|e| e.to_string())?,
    };
    match value {
        QValue::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        QValue::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

/// The link Prometheus puts in `generatorURL`.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        external_url.trim_end_matches('/'),
        vigil_template::funcs::query_escape(expr)
    )
}

fn recording_output(
    spec: &RuleSpec,
    elements: Vec<(Labels, f64)>,
    ts_ms: i64,
    limit: usize,
) -> Result<Vec<(Labels, Sample)>, String> {
    let mut out = Vec::with_capacity(elements.len());
    let mut seen = BTreeSet::new();
    for (mut l, v) in elements {
        l.set(vigil_wire::METRIC_NAME_LABEL, spec.name.clone());
        for (k, val) in &spec.labels {
            if val.is_empty() {
                l.remove(k);
            } else {
                l.set(k, val.clone());
            }
        }
        if !seen.insert(l.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push((l, Sample::new(ts_ms, v)));
    }
    if limit > 0 && out.len() > limit {
        return Err(format!("exceeded limit {limit} with {} series", out.len()));
    }
    Ok(out)
}

impl Group {
    pub fn new(spec: GroupSpec, default_interval: Duration, should_restore: bool) -> Self {
        let interval = spec.interval.unwrap_or(default_interval);
        let rules: Vec<RuleRuntime> = spec.rules.iter().cloned().map(RuleRuntime::new).collect();
        let mut g = Group {
            series_prev: vec![BTreeSet::new(); rules.len()],
            rules,
            spec,
            interval,
            stale_series: Vec::new(),
            last_eval_wall_ms: None,
            last_eval_ts_ms: None,
            eval_duration: Duration::ZERO,
            iterations: 0,
            missed_iterations: 0,
            should_restore,
            retired: false,
        };
        if !should_restore {
            g.set_restored();
        }
        g
    }

    /// Key identifying a group across reloads.
    pub fn key(&self) -> (String, String) {
        (self.spec.file.clone(), self.spec.name.clone())
    }

    /// Lets alerting rules write `ALERTS`/`ALERTS_FOR_STATE`.
    pub fn set_restored(&mut self) {
        for r in &mut self.rules {
            if let RuleRuntimeKind::Alerting(a) = &mut r.kind {
                a.restored = true;
            }
        }
    }

    /// Evaluates every rule in order at `ts_ms` (a recording rule's output
    /// is appended before the next rule runs, so it is visible to it).
    pub fn eval(&mut self, ts_ms: i64, env: &EvalEnv<'_>) {
        let started = Instant::now();
        self.last_eval_wall_ms = Some(wall_ms());
        self.last_eval_ts_ms = Some(ts_ms);
        self.iterations += 1;
        if !self.stale_series.is_empty() {
            let stale: Vec<(Labels, Sample)> = self
                .stale_series
                .drain(..)
                .map(|l| (l, Sample::new(ts_ms, stale_nan())))
                .collect();
            if let Err(e) = env.appender.append(stale) {
                tracing::warn!(group = %self.spec.name, error = %e, "writing stale markers for removed rules failed");
            }
        }
        let limit = self.spec.limit;
        let interval = self.interval;
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let rule_started = Instant::now();
            rule.last_eval_wall_ms = Some(wall_ms());
            rule.evaluations += 1;
            let result = query_vector(env.engine, env.storage.as_ref(), &rule.spec, ts_ms)
                .and_then(|elements| match &mut rule.kind {
                    RuleRuntimeKind::Recording => {
                        recording_output(&rule.spec, elements, ts_ms, limit)
                    }
                    RuleRuntimeKind::Alerting(a) => {
                        let tenv = crate::alerting::TemplateEnv {
                            external_labels: env.external_labels_value,
                            external_url: env.external_url,
                        };
                        let qenv = crate::template::QueryEnv {
                            engine: env.engine.clone(),
                            storage: env.storage.clone(),
                            at_ms: ts_ms,
                        };
                        crate::template::with_query_env(qenv, || {
                            a.eval(ts_ms, elements, &tenv, limit)
                        })
                    }
                });
            let samples = match result {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(group = %self.spec.name, rule = %rule.spec.name, error = %e, "rule evaluation failed");
                    rule.health = Health::Bad;
                    rule.last_error = Some(e);
                    rule.failures += 1;
                    rule.eval_duration = rule_started.elapsed();
                    continue;
                }
            };
            rule.health = Health::Good;
            rule.last_error = None;
            if let RuleRuntimeKind::Alerting(a) = &mut rule.kind {
                let to_send = a.alerts_to_send(ts_ms, env.resend_delay, interval);
                if !to_send.is_empty() {
                    let url = generator_url(env.external_url, &rule.spec.query_string());
                    env.sender.send(
                        to_send
                            .into_iter()
                            .map(|a| outgoing(a, env.external_labels, &url))
                            .collect(),
                    );
                }
            }
            let returned: BTreeSet<Labels> = samples.iter().map(|(l, _)| l.clone()).collect();
            let mut writes = samples;
            for old in &self.series_prev[i] {
                if !returned.contains(old) {
                    writes.push((old.clone(), Sample::new(ts_ms, stale_nan())));
                }
            }
            if !writes.is_empty()
                && let Err(e) = env.appender.append(writes)
            {
                tracing::warn!(group = %self.spec.name, rule = %rule.spec.name, error = %e, "writing rule output failed");
                rule.health = Health::Bad;
                rule.last_error = Some(e);
                rule.failures += 1;
            }
            self.series_prev[i] = returned;
            rule.eval_duration = rule_started.elapsed();
        }
        self.eval_duration = started.elapsed();
    }

    /// Restores the `activeAt` of pending/firing alerts from the stored
    /// `ALERTS_FOR_STATE` series, as Prometheus's `RestoreForState`, then
    /// marks the rules restored.
    pub fn restore_for_state(
        &mut self,
        now_ms: i64,
        storage: &dyn Queryable,
        for_grace: Duration,
        outage_tolerance: Duration,
    ) {
        let grace_ms = for_grace.as_millis() as i64;
        let mint = now_ms - outage_tolerance.as_millis() as i64;
        for rule in &mut self.rules {
            let RuleRuntimeKind::Alerting(ar) = &mut rule.kind else {
                continue;
            };
            let hold = ar.hold_ms();
            if hold < grace_ms {
                ar.restored = true;
                continue;
            }
            for a in ar.active.values_mut() {
                let Some((t, v)) = last_for_state(storage, &a.labels, mint, now_ms) else {
                    continue;
                };
                if is_stale_nan(v) {
                    continue;
                }
                let down_at = t.div_euclid(1000) * 1000;
                let mut restored = (v as i64) * 1000;
                let spent_pending = down_at - restored;
                let remaining = hold - spent_pending;
                if remaining <= 0 {
                    // It was firing when we went down; the next eval fires it again.
                } else if remaining < grace_ms {
                    restored = now_ms + grace_ms - hold;
                } else {
                    restored += now_ms - down_at;
                }
                tracing::debug!(alert = %ar.spec.name, labels = ?a.labels, active_at_ms = restored, "'for' state restored");
                a.active_at_ms = restored;
            }
            ar.restored = true;
        }
        self.should_restore = false;
    }

    /// Takes over state from the group this one replaces (same file and
    /// name): rules match by name and labels, in order, as Prometheus's
    /// `CopyState`; series of rules that no longer exist go stale.
    pub fn copy_state(&mut self, from: &Group) {
        self.last_eval_wall_ms = from.last_eval_wall_ms;
        // The schedule continues only on the same grid.
        if self.interval == from.interval {
            self.last_eval_ts_ms = from.last_eval_ts_ms;
        }
        self.eval_duration = from.eval_duration;
        self.iterations = from.iterations;
        self.missed_iterations = from.missed_iterations;
        let mut by_identity: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        for (fi, r) in from.rules.iter().enumerate() {
            by_identity.entry(r.spec.identity()).or_default().push(fi);
        }
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let Some(idx) = by_identity.get_mut(&rule.spec.identity()) else {
                continue;
            };
            if idx.is_empty() {
                continue;
            }
            let fi = idx.remove(0);
            self.series_prev[i] = from.series_prev[fi].clone();
            let old = &from.rules[fi];
            rule.health = old.health;
            rule.last_error = old.last_error.clone();
            rule.last_eval_wall_ms = old.last_eval_wall_ms;
            rule.eval_duration = old.eval_duration;
            rule.evaluations = old.evaluations;
            rule.failures = old.failures;
            if let (RuleRuntimeKind::Alerting(new), RuleRuntimeKind::Alerting(prev)) =
                (&mut rule.kind, &old.kind)
            {
                new.active = prev.active.clone();
            }
        }
        self.stale_series = from.stale_series.clone();
        for (_, left) in by_identity {
            for fi in left {
                self.stale_series
                    .extend(from.series_prev[fi].iter().cloned());
            }
        }
        self.should_restore = from.should_restore;
        if !self.should_restore {
            self.set_restored();
        }
    }

    /// Stale markers for everything this group wrote last (used when a
    /// reload removes the group).
    pub fn stale_markers(&self, ts_ms: i64) -> Vec<(Labels, Sample)> {
        self.series_prev
            .iter()
            .flatten()
            .chain(&self.stale_series)
            .map(|l| (l.clone(), Sample::new(ts_ms, stale_nan())))
            .collect()
    }
}

/// The newest `ALERTS_FOR_STATE` sample for an alert in `[mint, maxt]`.
fn last_for_state(
    storage: &dyn Queryable,
    labels: &Labels,
    mint: i64,
    maxt: i64,
) -> Option<(i64, f64)> {
    let series = for_state_series(labels);
    let matchers: Vec<Matcher> = series
        .iter()
        .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
        .collect();
    let found = match storage.select(&matchers, mint, maxt) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "failed to query ALERTS_FOR_STATE for restore");
            return None;
        }
    };
    // Only the series with exactly these labels, not supersets.
    let s = found.into_iter().find(|s| s.labels == series)?;
    s.samples.last().map(|x| (x.timestamp_ms, x.value))
}

/// An alert as handed to the notifier, with external labels added where
/// the alert does not set them (as Prometheus's notifier does).
pub(crate) fn outgoing(a: Alert, external_labels: &Labels, generator_url: &str) -> OutgoingAlert {
    let mut labels = a.labels;
    for l in external_labels.iter() {
        if labels.get(&l.name).is_none() {
            labels.set(&l.name, l.value.clone());
        }
    }
    OutgoingAlert {
        value: Some(a.value),
        labels,
        annotations: a.annotations.into_iter().collect(),
        starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
        ends_at_ms: Some(a.resolved_at_ms.unwrap_or(a.valid_until_ms)),
        generator_url: generator_url.to_string(),
    }
}

/// Interval offset of a group, so groups spread over the interval the way
/// Prometheus spreads them (a stable hash of file and name).
pub fn eval_offset(file: &str, name: &str, interval: Duration) -> Duration {
    let ms = interval.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    // FNV-1a: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in file.bytes().chain([0xff]).chain(name.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_millis(h % ms)
}

/// The aligned evaluation timestamp at or before `now_ms` (Prometheus's
/// `EvalTimestamp`).
pub fn aligned_eval_ms(now_ms: i64, offset: Duration, interval: Duration) -> i64 {
    let iv = interval.as_millis() as i64;
    let off = offset.as_millis() as i64;
    if iv == 0 {
        return now_ms;
    }
    let adj = now_ms - off;
    adj - adj.rem_euclid(iv) + off
}
