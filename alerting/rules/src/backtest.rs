//! Backtesting: rule files evaluated over a stored time range as if they
//! had been loaded at its start (`vigil backtest`).
//!
//! Each rule's expression is evaluated once as a *range* query over the
//! whole period (in windows of at most [`Options::max_steps_per_query`]
//! steps, the API's resolution limit), with the group interval as the
//! step; an instant query at each step gives the same answer, since a range
//! query is defined as exactly that, at a fraction of the cost. The result
//! matrix is then replayed step by step through the same alert state
//! machine the running rule manager uses ([`AlertingRule::eval`]), so
//! `for`, `keep_firing_for`, the 5-minute lookback and staleness behave as
//! in Prometheus.
//!
//! Rules run in file order, each over the whole period before the next, so
//! a rule sees the output of every rule before it: recording rules' series
//! (with stale markers where a series vanished, as a live group writes
//! them) and `ALERTS`/`ALERTS_FOR_STATE` go into an in-memory overlay over
//! the storage. An expression that reads none of those series can be
//! pushed down to storage that evaluates PromQL itself
//! ([`RangeQuery`], a remote Prometheus-compatible API); one that does is
//! evaluated here, over the storage's raw samples plus the overlay.
//!
//! ```
//! use std::sync::Arc;
//! use vigil_promql::{Engine, MemStorage, Queryable};
//! use vigil_rules::backtest::{self, Options, State};
//! use vigil_wire::{Labels, Sample};
//!
//! let mut data = MemStorage::new();
//! // `up` is 1, then 0 from minute 10 to minute 20.
//! let samples = (0..=30)
//!     .map(|m| Sample::new(m * 60_000, if (10..20).contains(&m) { 0.0 } else { 1.0 }))
//!     .collect();
//! data.add(Labels::from_pairs([("__name__", "up"), ("job", "a")]), samples);
//! let text = "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 5m\n";
//! let rules = vigil_rules::parse_rules("r.yml", text).expect("valid");
//! let set = vigil_rules::RuleSet { groups: rules, files: vec![] };
//! let storage: Arc<dyn Queryable> = Arc::new(data);
//! let opts = Options::new(0, 30 * 60_000);
//! let report = backtest::run(&set, &Arc::new(Engine::default()), storage, None, &opts);
//! let seen: Vec<(i64, State)> = report.transitions.iter().map(|t| (t.time_ms / 60_000, t.state)).collect();
//! assert_eq!(seen, [(10, State::Pending), (15, State::Firing), (20, State::Resolved)]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use promql_parser::parser::Expr;
use vigil_promql::{Engine, MemStorage, QueryContext, Queryable, SeriesData, StorageError};
use vigil_wire::{Labels, Matcher, Sample, stale_nan};

use crate::OutgoingAlert;
use crate::alerting::{ALERTS_FOR_STATE_METRIC, ALERTS_METRIC, AlertState, AlertingRule};
use crate::file::{GroupSpec, RuleKind, RuleSet, RuleSpec};
use crate::group::{generator_url, outgoing};

/// Storage that evaluates a whole range query where the data lives (a
/// remote Prometheus-compatible query API).
pub trait RangeQuery: Send + Sync {
    /// `expr` at every step from `start_ms` to `end_ms` (inclusive), as
    /// `/api/v1/query_range` answers it.
    fn range_query(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<SeriesData>, String>;
}

/// What a backtest runs over.
#[derive(Debug, Clone)]
pub struct Options {
    /// The first evaluation (the time the rules are "loaded"), ms.
    pub from_ms: i64,
    /// The last evaluation is at or before this, ms.
    pub to_ms: i64,
    /// The interval of groups that set none (Prometheus's global
    /// `evaluation_interval`, 1m by default).
    pub default_interval: Duration,
    /// Added to sent alerts where they do not set them.
    pub external_labels: Labels,
    /// Base of the alerts' `generatorURL`.
    pub external_url: String,
    /// How often a firing alert is re-sent (Prometheus's
    /// `--rules.alert.resend-delay`, 1m).
    pub resend_delay: Duration,
    /// Steps per range query (Prometheus refuses more than 11,000).
    pub max_steps_per_query: usize,
    /// Collect the alerts the rule manager would have sent, for the
    /// notification simulation.
    pub collect_sent: bool,
    /// Collect recording rules' output, for backfill.
    pub collect_recorded: bool,
}

impl Options {
    pub fn new(from_ms: i64, to_ms: i64) -> Self {
        Self {
            from_ms,
            to_ms,
            default_interval: Duration::from_secs(60),
            external_labels: Labels::empty(),
            external_url: "http://localhost:9800".into(),
            resend_delay: Duration::from_secs(60),
            max_steps_per_query: 10_000,
            collect_sent: false,
            collect_recorded: false,
        }
    }
}

/// An alert's new state, as `vigil backtest` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Pending,
    Firing,
    /// No longer active: a firing alert resolved, or a pending alert whose
    /// condition cleared before `for` elapsed.
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// One alert transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub time_ms: i64,
    pub rule: String,
    /// The alert's labels (`alertname`, the element's labels, rule labels).
    pub labels: Labels,
    pub state: State,
    /// The expression's value at that step (for `resolved`, the last value
    /// the alert had).
    pub value: f64,
    /// Was the alert firing before (for `resolved`)?
    pub was_firing: bool,
}

/// A rule that could not be evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub file: String,
    pub group: String,
    pub rule: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: group {:?}, rule {:?}: {}",
            self.file, self.group, self.rule, self.message
        )
    }
}

/// Everything a backtest found.
#[derive(Debug, Default)]
pub struct Report {
    /// In time order; at one time, in rule order.
    pub transitions: Vec<Transition>,
    /// With [`Options::collect_sent`]: every alert the rule manager would
    /// have handed to the alerting pipeline, with the time it was sent.
    pub sent: Vec<(i64, OutgoingAlert)>,
    /// With [`Options::collect_recorded`]: recording rules' output,
    /// including stale markers.
    pub recorded: Vec<(Labels, Vec<Sample>)>,
    pub errors: Vec<RuleError>,
    /// Evaluation steps over all groups.
    pub steps: u64,
    /// Range queries run (here or pushed down).
    pub queries: u64,
}

/// The storage plus what the backtest's rules wrote so far.
struct Overlay {
    base: Arc<dyn Queryable>,
    written: RwLock<MemStorage>,
    /// Metric names in `written`.
    names: RwLock<HashSet<String>>,
}

impl Queryable for Overlay {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        let mut out = self.base.select(matchers, start_ms, end_ms)?;
        out.extend(self.written.read().select(matchers, start_ms, end_ms)?);
        Ok(out)
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(SeriesData) -> bool,
    ) -> Result<(), StorageError> {
        let mut go_on = true;
        self.base
            .select_each(matchers, start_ms, end_ms, &mut |s| {
                go_on = f(s);
                go_on
            })?;
        if go_on {
            for s in self.written.read().select(matchers, start_ms, end_ms)? {
                if !f(s) {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl Overlay {
    fn add(&self, series: &[(Labels, Vec<Sample>)]) {
        let mut w = self.written.write();
        let mut names = self.names.write();
        for (l, s) in series {
            if let Some(n) = l.metric_name() {
                names.insert(n.to_string());
            }
            w.add(l.clone(), s.clone());
        }
    }

    /// Whether `expr` reads anything this backtest wrote (so it cannot be
    /// pushed down to storage that has never seen it).
    fn reads_written(&self, expr: &Expr) -> bool {
        let names = self.names.read();
        if names.is_empty() {
            return false;
        }
        let mut hit = false;
        selectors(expr, &mut |name| {
            hit |= name.is_none_or(|n| names.contains(n));
        });
        hit
    }
}

/// Calls `f` with the metric name of every selector in `expr` (`None` for
/// a selector without an exact name).
fn selectors(expr: &Expr, f: &mut dyn FnMut(Option<&str>)) {
    match expr {
        Expr::Aggregate(a) => {
            selectors(&a.expr, f);
            if let Some(p) = &a.param {
                selectors(p, f);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, f),
        Expr::Binary(b) => {
            selectors(&b.lhs, f);
            selectors(&b.rhs, f);
        }
        Expr::Paren(p) => selectors(&p.expr, f),
        Expr::Subquery(s) => selectors(&s.expr, f),
        Expr::VectorSelector(vs) => f(selector_name(vs)),
        Expr::MatrixSelector(ms) => f(selector_name(&ms.vs)),
        Expr::Call(c) => {
            for a in &c.args.args {
                selectors(a, f);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector_name(vs: &promql_parser::parser::VectorSelector) -> Option<&str> {
    if let Some(n) = &vs.name {
        return Some(n);
    }
    vs.matchers
        .matchers
        .iter()
        .find(|m| {
            m.name == vigil_wire::METRIC_NAME_LABEL
                && matches!(m.op, promql_parser::label::MatchOp::Equal)
        })
        .map(|m| m.value.as_str())
}

/// The evaluation timestamps of a group: `from`, `from + interval`, … up
/// to `to`.
fn steps(from_ms: i64, to_ms: i64, interval_ms: i64) -> Vec<i64> {
    if interval_ms <= 0 || to_ms < from_ms {
        return Vec::new();
    }
    (0..=(to_ms - from_ms) / interval_ms)
        .map(|i| from_ms + i * interval_ms)
        .collect()
}

/// Runs every rule of `rules` over `opts.from_ms..=opts.to_ms`.
/// `pushdown` evaluates expressions where the data lives when given; the
/// engine evaluates the rest over `storage`.
pub fn run(
    rules: &RuleSet,
    engine: &Arc<Engine>,
    storage: Arc<dyn Queryable>,
    pushdown: Option<&dyn RangeQuery>,
    opts: &Options,
) -> Report {
    let overlay = Arc::new(Overlay {
        base: storage,
        written: RwLock::new(MemStorage::new()),
        names: RwLock::new(HashSet::new()),
    });
    let mut report = Report::default();
    // ALERTS / ALERTS_FOR_STATE are kept for later rules only when some
    // rule reads them: for rules that fire often they are most of what a
    // backtest would otherwise hold in memory.
    let mut write_alerts = false;
    for rule in rules.groups.iter().flat_map(|g| &g.rules) {
        selectors(&rule.expr, &mut |name| {
            write_alerts |= name.is_none_or(|n| n == ALERTS_METRIC || n == ALERTS_FOR_STATE_METRIC);
        });
    }
    // (time, group, rule) orders transitions printed for one time.
    let mut keyed: Vec<((i64, usize, usize), Transition)> = Vec::new();
    for (gi, group) in rules.groups.iter().enumerate() {
        let interval = group.interval.unwrap_or(opts.default_interval);
        let ts = steps(opts.from_ms, opts.to_ms, interval.as_millis() as i64);
        report.steps += ts.len() as u64;
        for (ri, rule) in group.rules.iter().enumerate() {
            let mut ctx = RuleCtx {
                engine,
                overlay: &overlay,
                pushdown,
                opts,
                group,
                interval,
                write_alerts,
                report: &mut report,
            };
            match ctx.rule(rule, &ts) {
                Ok(transitions) => {
                    keyed.extend(transitions.into_iter().map(|t| ((t.time_ms, gi, ri), t)));
                }
                Err(message) => report.errors.push(RuleError {
                    file: group.file.clone(),
                    group: group.name.clone(),
                    rule: rule.name.clone(),
                    message,
                }),
            }
        }
    }
    keyed.sort_by_key(|(k, _)| *k);
    report.transitions = keyed.into_iter().map(|(_, t)| t).collect();
    report.sent.sort_by_key(|(t, _)| *t);
    report
}

struct RuleCtx<'a> {
    engine: &'a Arc<Engine>,
    overlay: &'a Arc<Overlay>,
    pushdown: Option<&'a dyn RangeQuery>,
    opts: &'a Options,
    group: &'a GroupSpec,
    interval: Duration,
    /// Whether `ALERTS`/`ALERTS_FOR_STATE` go into the overlay.
    write_alerts: bool,
    report: &'a mut Report,
}

impl RuleCtx<'_> {
    /// The rule's expression over every step, as a matrix.
    fn matrix(&mut self, rule: &RuleSpec, ts: &[i64]) -> Result<Vec<SeriesData>, String> {
        let step = self.interval.as_millis() as i64;
        let local = self.pushdown.is_none() || self.overlay.reads_written(&rule.expr);
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for window in ts.chunks(self.opts.max_steps_per_query.max(1)) {
            let (Some(&start), Some(&end)) = (window.first(), window.last()) else {
                continue;
            };
            self.report.queries += 1;
            let part = match self.pushdown {
                Some(remote) if !local => {
                    remote.range_query(&rule.query_string(), start, end, step)?
                }
                _ => {
                    let storage: &dyn Queryable = self.overlay.as_ref();
                    match self.engine.range_expr(
                        storage,
                        &rule.expr,
                        start,
                        end,
                        step,
                        &QueryContext::default(),
                    ) {
                        Ok(vigil_promql::Value::Matrix(m)) => m,
                        Ok(other) => {
                            return Err(format!(
                                "range query returned a {}, not a matrix",
                                other.type_name()
                            ));
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            };
            for s in part {
                merged.entry(s.labels).or_default().extend(s.samples);
            }
        }
        Ok(merged
            .into_iter()
            .map(|(labels, samples)| SeriesData { labels, samples })
            .collect())
    }

    fn rule(&mut self, rule: &Arc<RuleSpec>, ts: &[i64]) -> Result<Vec<Transition>, String> {
        let matrix = self.matrix(rule, ts)?;
        match &rule.kind {
            RuleKind::Alerting(_) => self.alerting(rule, matrix, ts),
            _ => {
                self.recording(rule, matrix, ts)?;
                Ok(Vec::new())
            }
        }
    }

    /// A recording rule's output, with stale markers where a series
    /// vanished, into the overlay (and the report, for backfill).
    fn recording(
        &mut self,
        rule: &RuleSpec,
        matrix: Vec<SeriesData>,
        ts: &[i64],
    ) -> Result<(), String> {
        let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for s in matrix {
            let mut l = s.labels;
            l.set(vigil_wire::METRIC_NAME_LABEL, rule.name.clone());
            for (k, v) in &rule.labels {
                if v.is_empty() {
                    l.remove(k);
                } else {
                    l.set(k, v.clone());
                }
            }
            if out.insert(l, s.samples).is_some() {
                // Prometheus fails the evaluation where both are present;
                // a backtest refuses the rule rather than guess.
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
        }
        if self.group.limit > 0 {
            let mut per_step: BTreeMap<i64, usize> = BTreeMap::new();
            for s in out.values().flatten() {
                *per_step.entry(s.timestamp_ms).or_default() += 1;
            }
            if let Some((t, n)) = per_step.iter().find(|(_, n)| **n > self.group.limit) {
                return Err(format!(
                    "exceeded limit {} with {n} series at {t}",
                    self.group.limit
                ));
            }
        }
        let series: Vec<(Labels, Vec<Sample>)> = out
            .into_iter()
            .map(|(l, s)| (l, with_stale_markers(s, ts)))
            .collect();
        self.overlay.add(&series);
        if self.opts.collect_recorded {
            self.report.recorded.extend(series);
        }
        Ok(())
    }

    fn alerting(
        &mut self,
        rule: &Arc<RuleSpec>,
        matrix: Vec<SeriesData>,
        ts: &[i64],
    ) -> Result<Vec<Transition>, String> {
        let mut ar = AlertingRule::new(rule.clone());
        // ALERTS and ALERTS_FOR_STATE are written from the first
        // evaluation (a backtest starts with nothing to restore), when a
        // rule reads them.
        ar.restored = self.write_alerts;
        let ext = crate::template::labels_value(&self.opts.external_labels);
        let tenv = crate::alerting::TemplateEnv {
            external_labels: &ext,
            external_url: &self.opts.external_url,
        };
        let url = generator_url(&self.opts.external_url, &rule.query_string());
        let storage: Arc<dyn Queryable> = self.overlay.clone();
        let mut cursors = vec![0usize; matrix.len()];
        let mut transitions = Vec::new();
        // ALERTS / ALERTS_FOR_STATE series written, for stale markers.
        let mut written: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let mut prev_written: BTreeSet<Labels> = BTreeSet::new();
        let mut i = 0usize;
        while i < ts.len() {
            let t = ts[i];
            let mut elements = Vec::new();
            let mut next_present = i64::MAX;
            for (s, c) in matrix.iter().zip(cursors.iter_mut()) {
                while s.samples.get(*c).is_some_and(|x| x.timestamp_ms < t) {
                    *c += 1;
                }
                if let Some(x) = s.samples.get(*c) {
                    if x.timestamp_ms == t {
                        elements.push((s.labels.clone(), x.value));
                    } else {
                        next_present = next_present.min(x.timestamp_ms);
                    }
                }
            }
            if elements.is_empty() && ar.active.is_empty() && prev_written.is_empty() {
                // Nothing active and nothing returned: an evaluation here
                // changes nothing. Skip to the next step with a result.
                if next_present == i64::MAX {
                    break;
                }
                i += ts[i..].partition_point(|&x| x < next_present);
                continue;
            }
            let before: BTreeMap<Labels, (AlertState, f64)> = ar
                .active
                .iter()
                .map(|(k, a)| (k.clone(), (a.state, a.value)))
                .collect();
            let qenv = crate::template::QueryEnv {
                engine: self.engine.clone(),
                storage: storage.clone(),
                at_ms: t,
            };
            let out = crate::template::with_query_env(qenv, || {
                ar.eval(t, elements, &tenv, self.group.limit)
            });
            let out = match out {
                Ok(o) => o,
                Err(e) => return Err(format!("at {}: {e}", rfc3339(t))),
            };
            for (k, a) in &ar.active {
                let was = before.get(k).map(|(s, _)| *s);
                let now = a.state;
                if was == Some(now) {
                    continue;
                }
                let state = match now {
                    AlertState::Pending => State::Pending,
                    AlertState::Firing => State::Firing,
                    AlertState::Inactive if was.is_some_and(|w| w != AlertState::Inactive) => {
                        State::Resolved
                    }
                    AlertState::Inactive => continue,
                };
                transitions.push(Transition {
                    time_ms: t,
                    rule: rule.name.clone(),
                    labels: a.labels.clone(),
                    state,
                    value: a.value,
                    was_firing: was == Some(AlertState::Firing),
                });
            }
            // Pending alerts that vanished were removed from the map.
            for (k, (was, v)) in &before {
                if *was == AlertState::Pending && !ar.active.contains_key(k) {
                    transitions.push(Transition {
                        time_ms: t,
                        rule: rule.name.clone(),
                        labels: k.clone(),
                        state: State::Resolved,
                        value: *v,
                        was_firing: false,
                    });
                }
            }
            if self.opts.collect_sent {
                for a in ar.alerts_to_send(t, self.opts.resend_delay, self.interval) {
                    self.report
                        .sent
                        .push((t, outgoing(a, &self.opts.external_labels, &url)));
                }
            }
            let returned: BTreeSet<Labels> = out.iter().map(|(l, _)| l.clone()).collect();
            for (l, s) in out {
                written.entry(l).or_default().push(s);
            }
            for old in prev_written.difference(&returned) {
                written
                    .entry(old.clone())
                    .or_default()
                    .push(Sample::new(t, stale_nan()));
            }
            prev_written = returned;
            i += 1;
        }
        let series: Vec<(Labels, Vec<Sample>)> = written.into_iter().collect();
        self.overlay.add(&series);
        Ok(transitions)
    }
}

/// A series' samples at the steps `ts`, plus a stale marker at each step
/// where it was present the step before and is not now (what a live group
/// writes when a series drops out of a rule's result).
fn with_stale_markers(samples: Vec<Sample>, ts: &[i64]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(samples.len() + 1);
    let mut it = samples.into_iter().peekable();
    let mut prev_present = false;
    for &t in ts {
        while it.peek().is_some_and(|s| s.timestamp_ms < t) {
            it.next();
        }
        match it.peek() {
            Some(s) if s.timestamp_ms == t => {
                out.push(*s);
                it.next();
                prev_present = true;
            }
            _ => {
                if prev_present {
                    out.push(Sample::new(t, stale_nan()));
                }
                prev_present = false;
            }
        }
    }
    out
}

/// `ms` as RFC 3339 (UTC, milliseconds only when there are any).
pub fn rfc3339(ms: i64) -> String {
    use chrono::{SecondsFormat, TimeZone, Utc};
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) if ms % 1000 == 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

#[cfg(test)]
#[path = "backtest_tests.rs"]
mod tests;
