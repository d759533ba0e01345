//! The alert state machine of one alerting rule, as Prometheus 2.42's
//! `rules/alerting.go`.
//!
//! Each evaluation turns the query result into alerts keyed by their final
//! label set; new ones start `pending` (`activeAt` = now), become `firing`
//! once they have been active for `for`, and when their element disappears
//! they become inactive (`resolvedAt` = now) unless `keep_firing_for` holds
//! them. Resolved alerts are kept for 15 minutes so they are re-sent as
//! resolved. Once the rule is "restored" it also emits `ALERTS` and
//! `ALERTS_FOR_STATE` samples.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use vigil_template::Value;
use vigil_wire::{Labels, Sample};

use crate::file::{AlertSpec, RuleSpec};
use crate::template::{alert_data, expand};

/// How long a resolved alert is kept (and re-sent) — Prometheus's
/// `resolvedRetention`.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: Labels,
    /// Expanded annotations, sorted by name.
    pub annotations: Vec<(String, String)>,
    pub state: AlertState,
    pub value: f64,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub last_sent_at_ms: Option<i64>,
    pub valid_until_ms: i64,
    pub keep_firing_since_ms: Option<i64>,
}

impl Alert {
    /// Prometheus's `needsSending`: never while pending; again when it was
    /// resolved since the last send, or every `resend_delay`.
    pub fn needs_sending(&self, ts_ms: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        if self
            .resolved_at_ms
            .is_some_and(|r| self.last_sent_at_ms.is_none_or(|s| r > s))
        {
            return true;
        }
        match self.last_sent_at_ms {
            None => true,
            Some(s) => s + resend_delay_ms < ts_ms,
        }
    }
}

/// What a rule evaluation needs from its surroundings for templates.
pub struct TemplateEnv<'a> {
    /// External labels as a template map.
    pub external_labels: &'a Value,
    pub external_url: &'a str,
}

/// Runtime state of an alerting rule.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    pub spec: Arc<RuleSpec>,
    /// Alerts by final label set.
    pub active: BTreeMap<Labels, Alert>,
    /// Whether `ALERTS`/`ALERTS_FOR_STATE` are written yet (false until the
    /// `for` state has been restored after a start).
    pub restored: bool,
}

/// `ALERTS` / `ALERTS_FOR_STATE` metric names.
pub const ALERTS_METRIC: &str = "ALERTS";
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

impl AlertingRule {
    pub fn new(spec: Arc<RuleSpec>) -> Self {
        AlertingRule {
            spec,
            active: BTreeMap::new(),
            restored: false,
        }
    }

    fn alert_spec(&self) -> Option<&AlertSpec> {
        match &self.spec.kind {
            crate::file::RuleKind::Alerting(a) => Some(a),
            _ => None,
        }
    }

    /// `for` in milliseconds.
    pub fn hold_ms(&self) -> i64 {
        self.alert_spec().map_or(0, |a| a.hold.as_millis() as i64)
    }

    fn keep_firing_ms(&self) -> i64 {
        self.alert_spec()
            .map_or(0, |a| a.keep_firing_for.as_millis() as i64)
    }

    /// The rule's state: the most severe of its active alerts.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Alerts that are pending or firing, in label order.
    pub fn active_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
    }

    /// One evaluation at `ts_ms` over the query result `elements` (labels,
    /// value). Returns the `ALERTS`/`ALERTS_FOR_STATE` samples to write.
    /// `limit` > 0 caps the number of pending+firing alerts; exceeding it
    /// drops all state and fails, as Prometheus does.
    pub fn eval(
        &mut self,
        ts_ms: i64,
        elements: Vec<(Labels, f64)>,
        env: &TemplateEnv<'_>,
        limit: usize,
    ) -> Result<Vec<(Labels, Sample)>, String> {
        let Some(spec) = self.alert_spec() else {
            return Err("not an alerting rule".into());
        };
        let mut fresh: BTreeMap<Labels, Alert> = BTreeMap::new();
        for (metric, value) in elements {
            let data = alert_data(&metric, env.external_labels, env.external_url, value);
            let mut pairs: Vec<(String, String)> = metric
                .iter()
                .filter(|l| l.name != vigil_wire::METRIC_NAME_LABEL)
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            for ((name, _), t) in self.spec.labels.iter().zip(&spec.label_templates) {
                let v = expand(t, &data);
                pairs.retain(|(n, _)| n != name);
                pairs.push((name.clone(), v));
            }
            pairs.retain(|(n, _)| n != "alertname");
            pairs.push(("alertname".into(), self.spec.name.clone()));
            // from_pairs drops empty values, as Prometheus's builder does.
            let labels = Labels::from_pairs(pairs);
            let annotations: Vec<(String, String)> = spec
                .annotations
                .iter()
                .zip(&spec.annotation_templates)
                .map(|((k, _), t)| (k.clone(), expand(t, &data)))
                .collect();
            if fresh.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at_ms: ts_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    last_sent_at_ms: None,
                    valid_until_ms: 0,
                    keep_firing_since_ms: None,
                },
            );
        }
        let hold = self.hold_ms();
        let keep_for = self.keep_firing_ms();
        let in_result: std::collections::BTreeSet<Labels> = fresh.keys().cloned().collect();
        for (k, a) in fresh {
            match self.active.get_mut(&k) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = a.value;
                    existing.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(k, a);
                }
            }
        }
        let mut out = Vec::new();
        let mut active_count = 0usize;
        let mut remove = Vec::new();
        for (k, a) in self.active.iter_mut() {
            if !in_result.contains(k) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_for > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                    keep_firing = ts_ms - since < keep_for;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts_ms - r > RESOLVED_RETENTION_MS)
                {
                    remove.push(k.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts_ms);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= hold {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts_ms);
            }
            if self.restored {
                out.push((alerts_series(&a.labels, a.state), Sample::new(ts_ms, 1.0)));
                out.push((
                    for_state_series(&a.labels),
                    Sample::new(ts_ms, (a.active_at_ms.div_euclid(1000)) as f64),
                ));
            }
        }
        for k in remove {
            self.active.remove(&k);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {active_count} alerts"
            ));
        }
        Ok(out)
    }

    /// Marks alerts due for (re)sending as sent at `ts_ms` and returns
    /// copies of them (Prometheus's `sendAlerts`).
    pub fn alerts_to_send(
        &mut self,
        ts_ms: i64,
        resend_delay: Duration,
        group_interval: Duration,
    ) -> Vec<Alert> {
        let resend_ms = resend_delay.as_millis() as i64;
        let delta = resend_delay.max(group_interval).as_millis() as i64;
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts_ms, resend_ms) {
                a.last_sent_at_ms = Some(ts_ms);
                a.valid_until_ms = ts_ms + 4 * delta;
                out.push(a.clone());
            }
        }
        out
    }
}

/// `ALERTS{alertname, alertstate, …}`.
pub fn alerts_series(labels: &Labels, state: AlertState) -> Labels {
    let mut l = labels.clone();
    l.set(vigil_wire::METRIC_NAME_LABEL, ALERTS_METRIC);
    l.set("alertstate", state.as_str());
    l
}

/// `ALERTS_FOR_STATE{alertname, …}` (no `alertstate`).
pub fn for_state_series(labels: &Labels) -> Labels {
    let mut l = labels.clone();
    l.set(vigil_wire::METRIC_NAME_LABEL, ALERTS_FOR_STATE_METRIC);
    l
}

#[cfg(test)]
#[path = "alerting_tests.rs"]
mod tests;
