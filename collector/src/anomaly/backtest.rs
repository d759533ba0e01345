//! Anomaly rules in `vigil backtest`: each rule's input expression as one
//! range query over the training window before `--from` plus the backtest
//! period, each output series through its own detector (warmed on the
//! training window, as `vigil serve` warms a new rule on stored history),
//! and the verdicts through the same alert state machine serve runs
//! (`state::step`, with the detector's suppression window). Every scored
//! point in the period is reported with its score and whether it was
//! flagged, so a rule's sensitivity can be tuned on last month before the
//! rule is loaded.

use std::collections::BTreeMap;
use std::sync::Arc;

use vigil_models::StreamingDetector;
use vigil_promql::{Engine, QueryContext, Queryable, SeriesData};
use vigil_rules::OutgoingAlert;
use vigil_rules::backtest::{Options, RangeQuery, RuleError, State, Transition, rfc3339};
use vigil_wire::Labels;

use super::AnomalyRule;
use super::manager::{
    AnomalyOptions, AnomalyRuleSet, DEFAULT_TRAINING_WINDOW, duration_ms, expand, template_data,
};
use super::state::{self, Verdict};

/// One scored point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub time_ms: i64,
    pub rule: String,
    pub labels: Labels,
    pub value: f64,
    pub score: f64,
    /// Flagged by the detector (suppressed repeats included).
    pub anomaly: bool,
    pub severity: &'static str,
}

impl Point {
    pub fn to_json(&self) -> serde_json::Value {
        let num = |v: f64| {
            serde_json::Number::from_f64(v)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| vigil_promql::format_float(v).into())
        };
        serde_json::json!({
            "time": rfc3339(self.time_ms),
            "rule": self.rule,
            "labels": serde_json::Value::Object(
                self.labels
                    .iter()
                    .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
                    .collect()
            ),
            "value": num(self.value),
            "score": num(self.score),
            "anomaly": self.anomaly,
            "severity": self.severity,
        })
    }
}

/// What the anomaly rules did over the period.
#[derive(Debug, Default)]
pub struct Report {
    pub transitions: Vec<Transition>,
    pub points: Vec<Point>,
    pub sent: Vec<(i64, OutgoingAlert)>,
    pub errors: Vec<RuleError>,
    pub queries: u64,
}

/// Runs every anomaly rule over `opts.from_ms..=opts.to_ms`.
pub fn run(
    set: &AnomalyRuleSet,
    engine: &Arc<Engine>,
    storage: &dyn Queryable,
    pushdown: Option<&dyn RangeQuery>,
    opts: &Options,
) -> Report {
    let aopts = AnomalyOptions {
        models_dir: Default::default(),
        default_interval: opts.default_interval,
        save_interval: opts.default_interval,
        external_url: opts.external_url.clone(),
        external_labels: opts.external_labels.clone(),
        for_grace_period: Default::default(),
        outage_tolerance: Default::default(),
    };
    let mut report = Report::default();
    for (file, group) in &set.groups {
        let interval = group
            .interval
            .as_deref()
            .and_then(|i| crate::config::parse_duration(i).ok())
            .unwrap_or(opts.default_interval);
        let step = (interval.as_millis() as i64).max(1);
        for rule in &group.rules {
            let err = |message: String| RuleError {
                file: file.clone(),
                group: group.name.clone(),
                rule: rule.anomaly.clone(),
                message,
            };
            let training = duration_ms(rule.training_window.as_deref(), DEFAULT_TRAINING_WINDOW);
            let warm_from = opts.from_ms - (training / step) * step;
            let matrix = match matrix(
                engine,
                storage,
                pushdown,
                &rule.expr,
                warm_from,
                opts.to_ms,
                step,
                opts.max_steps_per_query,
                &mut report.queries,
            ) {
                Ok(m) => m,
                Err(e) => {
                    report.errors.push(err(e));
                    continue;
                }
            };
            for series in matrix {
                if let Err(e) = one_series(rule, &series, opts, step, &aopts, &mut report) {
                    report
                        .errors
                        .push(err(format!("series {}: {e}", series.labels)));
                }
            }
        }
    }
    report.transitions.sort_by_key(|t| t.time_ms);
    report.points.sort_by_key(|p| p.time_ms);
    report
}

#[allow(clippy::too_many_arguments)]
fn matrix(
    engine: &Engine,
    storage: &dyn Queryable,
    pushdown: Option<&dyn RangeQuery>,
    expr: &str,
    start: i64,
    end: i64,
    step: i64,
    max_steps: usize,
    queries: &mut u64,
) -> Result<Vec<SeriesData>, String> {
    let parsed = vigil_promql::parse(expr).map_err(|e| e.message)?;
    let mut merged: BTreeMap<Labels, Vec<vigil_wire::Sample>> = BTreeMap::new();
    let window = step * max_steps.max(1) as i64;
    let mut s = start;
    while s <= end {
        let e = (s + window - step).min(end);
        *queries += 1;
        let part = match pushdown {
            Some(remote) => remote.range_query(expr, s, e, step)?,
            None => match engine
                .range_expr(storage, &parsed, s, e, step, &QueryContext::default())
                .map_err(|e| e.to_string())?
            {
                vigil_promql::Value::Matrix(m) => m,
                other => return Err(format!("expected a matrix, got a {}", other.type_name())),
            },
        };
        for p in part {
            merged.entry(p.labels).or_default().extend(p.samples);
        }
        s = e + step;
    }
    Ok(merged
        .into_iter()
        .map(|(labels, samples)| SeriesData { labels, samples })
        .collect())
}

fn one_series(
    rule: &AnomalyRule,
    series: &SeriesData,
    opts: &Options,
    step: i64,
    aopts: &AnomalyOptions,
    report: &mut Report,
) -> Result<(), String> {
    let mut det = StreamingDetector::new(rule.model.clone()).map_err(|e| e.to_string())?;
    let for_ms = duration_ms(rule.for_duration.as_deref(), std::time::Duration::ZERO);
    let suppression_ms = rule.model.suppression.as_millis() as i64;
    let labels = series.labels.without_metric_name();
    let url = vigil_rules::group::generator_url(&opts.external_url, &rule.expr);
    let mut alert: Option<state::SeriesAlert> = None;
    let mut last_anomaly: Option<i64> = None;
    let mut samples = series.samples.iter().peekable();
    // Warm-up: the training window before the period, scored but not
    // reported, as serve warms a new detector on stored history.
    while let Some(s) = samples.next_if(|s| s.timestamp_ms < opts.from_ms) {
        if s.value.is_finite() {
            let _ = det.push(s.timestamp_ms, s.value);
        }
    }
    let mut t = opts.from_ms;
    while t <= opts.to_ms {
        let present = samples.next_if(|s| s.timestamp_ms == t).map(|s| s.value);
        let score = match present {
            Some(v) if v.is_finite() => det.push(t, v).map_err(|e| e.to_string())?,
            _ => None,
        };
        let verdict = match &score {
            Some(s) if s.is_anomaly => {
                let suppressed =
                    s.suppressed || last_anomaly.is_some_and(|a| a < t && t - a < suppression_ms);
                last_anomaly = Some(t);
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
        let value = present.unwrap_or(f64::NAN);
        if let Some(s) = &score {
            report.points.push(Point {
                time_ms: t,
                rule: rule.anomaly.clone(),
                labels: labels.clone(),
                value,
                score: s.score,
                anomaly: s.is_anomaly,
                severity: if s.is_anomaly {
                    s.severity.as_str()
                } else {
                    "none"
                },
            });
        }
        let before = alert.as_ref().and_then(|a| a.active_state());
        let kept_severity = alert
            .as_ref()
            .filter(|a| a.active_state().is_some())
            .and_then(|a| a.labels.get("severity").map(str::to_string));
        let fresh = || {
            content(
                rule,
                &labels,
                value,
                score.as_ref(),
                kept_severity.as_deref(),
                aopts,
            )
        };
        alert = state::step(alert.take(), verdict, t, for_ms, fresh);
        if let Some(a) = alert.as_mut()
            && a.active_state().is_some()
            && value.is_finite()
        {
            a.value = value;
        }
        let after = alert.as_ref().and_then(|a| a.active_state());
        if before != after {
            let (state, shown) = match after {
                Some("pending") => (State::Pending, alert.as_ref()),
                Some(_) => (State::Firing, alert.as_ref()),
                None => (State::Resolved, alert.as_ref()),
            };
            let alert_labels = shown.map(|a| a.labels.clone()).unwrap_or_else(|| {
                let mut l = labels.clone();
                l.set("alertname", rule.anomaly.clone());
                l
            });
            report.transitions.push(Transition {
                time_ms: t,
                rule: rule.anomaly.clone(),
                labels: alert_labels,
                state,
                value,
                was_firing: before == Some("firing"),
            });
        }
        if opts.collect_sent
            && let Some(a) = alert.as_mut()
            && let Some(out) = state::due(a, t, &url, &opts.external_labels)
        {
            report.sent.push((t, out));
        }
        t += step;
    }
    Ok(())
}

/// An alert's labels and annotations, as serve's anomaly manager builds
/// them.
fn content(
    rule: &AnomalyRule,
    series: &Labels,
    value: f64,
    score: Option<&vigil_models::Score>,
    severity: Option<&str>,
    opts: &AnomalyOptions,
) -> (Labels, BTreeMap<String, String>) {
    let data = template_data(series, opts, value);
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
    let annotations = rule
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), expand(&rule.anomaly, v, &data)))
        .collect();
    (labels, annotations)
}
