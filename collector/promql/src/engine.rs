//! The evaluator: walks promql-parser's AST the way Prometheus 2.42's engine
//! does.
//!
//! Every node is evaluated over a whole [`Steps`] range at once and yields one
//! instant vector per step ([`Val::Vector`]), so a range query is evaluated
//! step by step exactly like Prometheus while each selector loads its series
//! from storage only once per query (over the whole range plus lookback).
//! Binary operators live in `engine/binary.rs`, aggregations in
//! `engine/aggregate.rs` and the function library in `engine/functions.rs`.

mod aggregate;
mod binary;
mod functions;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{self as pp, AtModifier, Expr, Offset};
use vigil_wire::{Labels, MatchOp, Matcher, Sample, is_stale_nan};

use crate::storage::{Queryable, SeriesData};
use crate::value::{Value, VectorSample};

/// Default step of a subquery written without one (`x[5m:]`), Prometheus's
/// default global evaluation interval.
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Limits and defaults for query evaluation.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (5 m).
    pub lookback_delta_ms: i64,
    /// Samples a single query may load from storage.
    pub max_samples: usize,
    /// Wall-clock budget of one query.
    pub timeout: Duration,
    /// Points per series a range query may return (11,000).
    pub max_points_per_series: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: 300_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            max_points_per_series: 11_000,
        }
    }
}

/// Per-query cancellation and timeout.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    /// Set to true to abandon the query; checked between steps and series.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Overrides [`EngineOptions::timeout`] when shorter.
    pub timeout: Option<Duration>,
}

/// The API's error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadData,
    Execution,
    Timeout,
    Canceled,
}

/// A failed query, with the message Prometheus would give.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
}

impl QueryError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn exec(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Execution, message)
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadData, message)
    }

    /// The `errorType` of Prometheus's API response.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadData => "bad_data",
            ErrorKind::Execution => "execution",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Canceled => "canceled",
        }
    }
}

/// Parses a query, mapping failures to a `bad_data` error.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    register_legacy_functions();
    pp::parse(query).map_err(|e| QueryError::bad(crate::parse_error::describe(query, &e)))
}

/// Teaches the parser (which follows Prometheus 3) the 2.x name
/// `holt_winters`, renamed `double_exponential_smoothing` in 3.0.
fn register_legacy_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use pp::value::ValueType as T;
        let f = pp::Function::new(
            "holt_winters",
            vec![T::Matrix, T::Scalar, T::Scalar],
            0,
            T::Vector,
            false,
        );
        if let Err(e) = pp::register_extra_functions(vec![f]) {
            // Only possible if a later parser version knows the name itself,
            // in which case parsing works anyway.
            tracing::debug!(error = %e, "holt_winters not registered");
        }
    });
}

/// The PromQL engine. Cheap to share; holds only options.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at one instant.
    pub fn instant(
        &self,
        storage: &dyn Queryable,
        query: &str,
        at_ms: i64,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        let expr = parse(query)?;
        self.instant_expr(storage, &expr, at_ms, ctx)
    }

    /// Evaluates an already parsed expression at one instant.
    pub fn instant_expr(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        at_ms: i64,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        let mut ev = Evaluator::new(storage, &self.opts, ctx, at_ms, at_ms);
        let steps = Steps::instant(at_ms);
        if pp::value::ValueType::Matrix == expr.value_type() {
            let m = ev.eval_matrix_top(expr, at_ms)?;
            return Ok(Value::Matrix(m));
        }
        match ev.eval(expr, steps)? {
            Val::Scalar(v) => Ok(Value::Scalar {
                t_ms: at_ms,
                v: v.first().copied().unwrap_or(f64::NAN),
            }),
            Val::String(s) => Ok(Value::String { t_ms: at_ms, s }),
            Val::Vector(mut vs) => {
                let vec = vs.pop().unwrap_or_default();
                Ok(Value::Vector(
                    vec.into_iter()
                        .map(|(l, v)| VectorSample {
                            labels: Rc::unwrap_or_clone(l),
                            t_ms: at_ms,
                            v,
                        })
                        .collect(),
                ))
            }
        }
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`.
    pub fn range(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        let expr = parse(query)?;
        self.range_expr(storage, &expr, start_ms, end_ms, step_ms, ctx)
    }

    /// Evaluates an already parsed expression over a range.
    pub fn range_expr(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        if end_ms < start_ms {
            return Err(QueryError::bad(
                "end timestamp must not be before start time",
            ));
        }
        if step_ms <= 0 {
            return Err(QueryError::bad(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if (end_ms - start_ms) / step_ms > self.opts.max_points_per_series as i64 {
            return Err(QueryError::bad(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                group_thousands(self.opts.max_points_per_series)
            )));
        }
        match expr.value_type() {
            pp::value::ValueType::Matrix => {
                return Err(QueryError::bad(
                    "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
                ));
            }
            pp::value::ValueType::String => {
                return Err(QueryError::bad(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector",
                ));
            }
            _ => {}
        }
        let steps = Steps {
            start: start_ms,
            end: end_ms,
            step: step_ms,
        };
        let mut ev = Evaluator::new(storage, &self.opts, ctx, start_ms, end_ms);
        match ev.eval(expr, steps)? {
            Val::Scalar(v) => Ok(Value::Matrix(vec![SeriesData {
                labels: Labels::empty(),
                samples: v
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Sample::new(steps.at(i), *v))
                    .collect(),
            }])),
            Val::String(_) => Err(QueryError::bad(
                "invalid expression type \"string\" for range query, must be Scalar or instant Vector",
            )),
            Val::Vector(vs) => {
                let mut m = to_series(&vs, steps);
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok(Value::Matrix(m))
            }
        }
    }
}

/// `11000` → `11,000`, as Prometheus words its resolution error.
fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Evaluation timestamps: `start`, `start+step`, … up to `end` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Steps {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Steps {
    fn instant(t: i64) -> Self {
        Self {
            start: t,
            end: t,
            step: 1,
        }
    }

    pub fn len(&self) -> usize {
        ((self.end - self.start) / self.step + 1) as usize
    }

    pub fn at(&self, i: usize) -> i64 {
        self.start + self.step * i as i64
    }
}

/// A multiplicative hasher for the engine's address and id keys, which
/// need no protection against crafted collisions and are hashed per sample
/// per step (SipHash showed up at 15% of range-query time).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn mix(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.mix(u64::from(*b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

/// A map keyed by addresses or small ids.
pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
/// A set of addresses or small ids.
pub(crate) type FastSet<K> =
    std::collections::HashSet<K, std::hash::BuildHasherDefault<FastHasher>>;

/// Labels shared between steps without copying.
pub(crate) type L = Rc<Labels>;
/// A sample with labels and its own timestamp.
pub(crate) type TimedSample = (L, i64, f64);
/// One instant vector.
pub(crate) type StepVec = Vec<(L, f64)>;

/// An intermediate value over a range of steps.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    String(String),
    /// One instant vector per step.
    Vector(Vec<StepVec>),
}

/// A range-vector argument: whole series plus, per step, the window to use.
pub(crate) struct MatrixArg {
    pub series: Vec<(L, Vec<Sample>)>,
    /// Matchers of the selector, for `absent_over_time`'s labels.
    pub absent_labels: Labels,
    pub range_ms: i64,
    at: Option<i64>,
    offset_ms: i64,
    /// Set for `predict_linear`: see [`MatrixArg::emulate_moving_at`].
    moving_at_base: Option<i64>,
}

impl MatrixArg {
    /// The inclusive window `[T - range, T]` evaluated at step time `ts`.
    pub fn window(&self, ts: i64) -> (i64, i64) {
        let end = match (self.at, self.moving_at_base) {
            (Some(at), Some(base)) => at + (ts - base) - self.offset_ms,
            (Some(at), None) => at - self.offset_ms,
            (None, _) => ts - self.offset_ms,
        };
        (end - self.range_ms, end)
    }

    /// Prometheus 2.42 evaluates functions that are unsafe under `@`
    /// (`predict_linear`) step by step with the `@` turned into an offset
    /// relative to the evaluation's first step, so their window moves with
    /// the step while the data stays the range loaded around the `@` time.
    /// This reproduces that answer; `base` is the first step's time.
    pub fn emulate_moving_at(&mut self, base: i64) {
        self.moving_at_base = Some(base);
    }
}

/// Slice of `samples` inside `[lo, hi]`.
pub(crate) fn window_slice(samples: &[Sample], lo: i64, hi: i64) -> &[Sample] {
    let a = samples.partition_point(|s| s.timestamp_ms < lo);
    let b = samples.partition_point(|s| s.timestamp_ms <= hi);
    if a >= b { &[] } else { &samples[a..b] }
}

/// Converts per-step vectors to series, in order of first appearance.
fn to_series(vs: &[StepVec], steps: Steps) -> Vec<SeriesData> {
    let mut ids = Interner::default();
    let mut idx: FastMap<u32, usize> = FastMap::default();
    let mut out: Vec<SeriesData> = Vec::new();
    for (i, vec) in vs.iter().enumerate() {
        let t = steps.at(i);
        for (l, v) in vec {
            let k = *idx.entry(ids.id(l)).or_insert_with(|| {
                out.push(SeriesData {
                    labels: (**l).clone(),
                    samples: Vec::new(),
                });
                out.len() - 1
            });
            out[k].samples.push(Sample::new(t, *v));
        }
    }
    out
}

pub(crate) struct Evaluator<'a> {
    storage: &'a dyn Queryable,
    opts: &'a EngineOptions,
    cancel: Option<Arc<AtomicBool>>,
    deadline: Instant,
    /// The query's start and end, for `@ start()` / `@ end()`.
    query_start: i64,
    query_end: i64,
    samples_loaded: usize,
    checks: u32,
}

fn duration_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Strips parentheses around an expression.
pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

impl<'a> Evaluator<'a> {
    fn new(
        storage: &'a dyn Queryable,
        opts: &'a EngineOptions,
        ctx: &QueryContext,
        query_start: i64,
        query_end: i64,
    ) -> Self {
        let timeout = match ctx.timeout {
            Some(t) if t < opts.timeout => t,
            _ => opts.timeout,
        };
        Self {
            storage,
            opts,
            cancel: ctx.cancel.clone(),
            deadline: Instant::now() + timeout,
            query_start,
            query_end,
            samples_loaded: 0,
            checks: 0,
        }
    }

    /// Checks cancellation and the deadline; called between steps and series.
    pub(crate) fn check(&mut self) -> Result<(), QueryError> {
        self.checks = self.checks.wrapping_add(1);
        if let Some(c) = &self.cancel
            && c.load(Ordering::Relaxed)
        {
            return Err(QueryError::new(
                ErrorKind::Canceled,
                "query was canceled in expression evaluation",
            ));
        }
        // Reading the clock is cheap but not free; every 64th check suffices.
        if self.checks.is_multiple_of(64) && Instant::now() > self.deadline {
            return Err(QueryError::new(
                ErrorKind::Timeout,
                "query timed out in expression evaluation",
            ));
        }
        Ok(())
    }

    fn resolve_at(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    fn select(
        &mut self,
        vs: &pp::VectorSelector,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, QueryError> {
        let groups = selector_matchers(vs)?;
        let mut out: Vec<SeriesData> = Vec::new();
        for matchers in &groups {
            let got = self
                .storage
                .select(matchers, mint, maxt)
                .map_err(|e| QueryError::exec(e.0))?;
            for s in got {
                if groups.len() > 1 && out.iter().any(|o| o.labels == s.labels) {
                    continue;
                }
                out.push(s);
            }
        }
        let n: usize = out.iter().map(|s| s.samples.len()).sum();
        self.samples_loaded = self.samples_loaded.saturating_add(n);
        if self.samples_loaded > self.opts.max_samples {
            return Err(QueryError::exec(
                "query processing would load too many samples into memory in query execution",
            ));
        }
        Ok(out)
    }

    /// The series [`Evaluator::select`] would answer, handed to `f` one at
    /// a time as storage reads them, so only one series' samples are held
    /// at once. The sample budget counts every series loaded, as `select`
    /// does. Selectors with `or` matcher groups (whose answers need merging)
    /// take the loaded path.
    fn for_each_series(
        &mut self,
        vs: &pp::VectorSelector,
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(&mut Self, SeriesData) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        let groups = selector_matchers(vs)?;
        if groups.len() != 1 {
            for s in self.select(vs, mint, maxt)? {
                f(self, s)?;
            }
            return Ok(());
        }
        let storage = self.storage;
        let mut failed: Option<QueryError> = None;
        storage
            .select_each(&groups[0], mint, maxt, &mut |s| {
                self.samples_loaded = self.samples_loaded.saturating_add(s.samples.len());
                let res = if self.samples_loaded > self.opts.max_samples {
                    Err(QueryError::exec(
                        "query processing would load too many samples into memory in query execution",
                    ))
                } else {
                    f(self, s)
                };
                match res {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })
            .map_err(|e| QueryError::exec(e.0))?;
        failed.map_or(Ok(()), Err)
    }

    /// Evaluates an instant-vector, scalar or string expression.
    pub(crate) fn eval(&mut self, expr: &Expr, steps: Steps) -> Result<Val, QueryError> {
        let v = self.eval_node(expr, steps)?;
        // Like Prometheus, refuse a node whose points alone (on top of the
        // samples loaded so far) exceed the per-query sample budget.
        if let Val::Vector(vs) = &v {
            let points: usize = vs.iter().map(Vec::len).sum();
            if points.saturating_add(self.samples_loaded) > self.opts.max_samples {
                return Err(QueryError::exec(
                    "query processing would load too many samples into memory in query execution",
                ));
            }
        }
        Ok(v)
    }

    fn eval_node(&mut self, expr: &Expr, steps: Steps) -> Result<Val, QueryError> {
        self.check()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; steps.len()])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, steps),
            Expr::Unary(u) => match self.eval(&u.expr, steps)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(vs) => {
                    let mut cache = LabelCache::default();
                    let out: Vec<StepVec> = vs
                        .iter()
                        .map(|vec| vec.iter().map(|(l, v)| (cache.drop_name(l), -v)).collect())
                        .collect();
                    // Dropping the name can make two series one label set:
                    // Prometheus refuses that over the whole result, even
                    // when the two never share a step.
                    let mut ids = Interner::default();
                    let mut origin: FastMap<u32, u32> = FastMap::default();
                    for (vin, vout) in vs.iter().zip(&out) {
                        for ((li, _), (lo, _)) in vin.iter().zip(vout) {
                            let (i, o) = (ids.id(li), ids.id(lo));
                            if *origin.entry(o).or_insert(i) != i {
                                return Err(QueryError::exec(
                                    "vector cannot contain metrics with the same labelset",
                                ));
                            }
                        }
                    }
                    Ok(Val::Vector(out))
                }
                Val::String(_) => Err(QueryError::bad(
                    "unary expression only allowed on expressions of type scalar or vector",
                )),
            },
            Expr::VectorSelector(vs) => {
                let per_step = self.eval_vector_selector(vs, steps)?;
                Ok(Val::Vector(
                    per_step
                        .into_iter()
                        .map(|v| v.into_iter().map(|(l, _, v)| (l, v)).collect())
                        .collect(),
                ))
            }
            Expr::MatrixSelector(_) | Expr::Subquery(_) => Err(QueryError::bad(
                "range vector is only allowed as a function argument or at the top level",
            )),
            Expr::Binary(b) => binary::eval_binary(self, b, steps),
            Expr::Aggregate(a) => aggregate::eval_aggregate(self, a, steps),
            Expr::Call(c) => functions::eval_call(self, c, steps),
            Expr::Extension(_) => Err(QueryError::bad("extension expressions are not supported")),
        }
    }

    /// Evaluates a vector selector at every step: the latest non-stale
    /// sample within the lookback window, with its own timestamp.
    pub(crate) fn eval_vector_selector(
        &mut self,
        vs: &pp::VectorSelector,
        steps: Steps,
    ) -> Result<Vec<Vec<TimedSample>>, QueryError> {
        let at = self.resolve_at(&vs.at);
        let off = offset_ms(&vs.offset);
        let ref_t = |ts: i64| at.unwrap_or(ts) - off;
        let lookback = self.opts.lookback_delta_ms;
        let (first, last) = (ref_t(steps.start), ref_t(steps.at(steps.len() - 1)));
        let n = steps.len();
        let mut out: Vec<Vec<TimedSample>> = vec![Vec::new(); n];
        self.for_each_series(vs, first.min(last) - lookback, first.max(last), |ev, s| {
            ev.check()?;
            let l: L = Rc::new(s.labels);
            let mut pos = 0usize;
            for (i, slot) in out.iter_mut().enumerate() {
                let rt = ref_t(steps.at(i));
                // Index of the first sample after rt; the sample before it is
                // the candidate. Reference times only grow with the step.
                if at.is_some() {
                    pos = s.samples.partition_point(|x| x.timestamp_ms <= rt);
                } else {
                    while pos < s.samples.len() && s.samples[pos].timestamp_ms <= rt {
                        pos += 1;
                    }
                }
                if pos == 0 {
                    continue;
                }
                let smp = s.samples[pos - 1];
                if smp.timestamp_ms < rt - lookback || is_stale_nan(smp.value) {
                    continue;
                }
                slot.push((l.clone(), smp.timestamp_ms, smp.value));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A matrix selector's window parameters (with no series yet) and the
    /// time range to load for evaluating it at every step of `steps`.
    fn matrix_window(&self, ms: &pp::MatrixSelector, steps: Steps) -> (MatrixArg, i64, i64) {
        let at = self.resolve_at(&ms.vs.at);
        let off = offset_ms(&ms.vs.offset);
        let range_ms = duration_ms(&ms.range);
        let ends = [
            at.unwrap_or(steps.start) - off,
            at.unwrap_or(steps.at(steps.len() - 1)) - off,
        ];
        let arg = MatrixArg {
            series: Vec::new(),
            absent_labels: absent_labels(&ms.vs),
            range_ms,
            at,
            offset_ms: off,
            moving_at_base: None,
        };
        (arg, ends[0].min(ends[1]) - range_ms, ends[0].max(ends[1]))
    }

    /// Hands each series of a range-vector argument to `f` with the
    /// argument's window parameters (`prepare` may adjust them first). A
    /// matrix selector is streamed from storage one series at a time, so a
    /// range function over many long series holds one of them at once; a
    /// subquery is evaluated whole first.
    pub(crate) fn each_matrix_series(
        &mut self,
        expr: &Expr,
        steps: Steps,
        prepare: impl FnOnce(&mut MatrixArg),
        mut f: impl FnMut(&mut Self, &MatrixArg, L, Vec<Sample>) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        if let Expr::MatrixSelector(ms) = unwrap_parens(expr) {
            let (mut arg, mint, maxt) = self.matrix_window(ms, steps);
            prepare(&mut arg);
            return self.for_each_series(&ms.vs, mint, maxt, |ev, mut s| {
                s.samples.retain(|x| !is_stale_nan(x.value));
                f(ev, &arg, Rc::new(s.labels), s.samples)
            });
        }
        let mut arg = self.eval_matrix_arg(expr, steps)?;
        prepare(&mut arg);
        let series = std::mem::take(&mut arg.series);
        for (l, samples) in series {
            f(self, &arg, l, samples)?;
        }
        Ok(())
    }

    /// Builds the range-vector argument of a function call from a matrix
    /// selector or a subquery, loading data for every step of `steps`.
    pub(crate) fn eval_matrix_arg(
        &mut self,
        expr: &Expr,
        steps: Steps,
    ) -> Result<MatrixArg, QueryError> {
        match unwrap_parens(expr) {
            Expr::MatrixSelector(ms) => {
                let (mut arg, mint, maxt) = self.matrix_window(ms, steps);
                self.for_each_series(&ms.vs, mint, maxt, |_, mut s| {
                    s.samples.retain(|x| !is_stale_nan(x.value));
                    arg.series.push((Rc::new(s.labels), s.samples));
                    Ok(())
                })?;
                Ok(arg)
            }
            Expr::Subquery(sq) => {
                let at = self.resolve_at(&sq.at);
                let off = offset_ms(&sq.offset);
                let range_ms = duration_ms(&sq.range);
                let step = sq
                    .step
                    .as_ref()
                    .map(duration_ms)
                    .filter(|s| *s > 0)
                    .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
                let (outer_start, outer_end) = match at {
                    Some(t) => (t, t),
                    None => (steps.start, steps.at(steps.len() - 1)),
                };
                // Inner steps are aligned to absolute multiples of the step,
                // starting with the first one inside the earliest window.
                let lo = outer_start - off - range_ms;
                let mut start = step * (lo / step);
                if start < lo {
                    start += step;
                }
                let end = outer_end - off;
                let mut series: Vec<(L, Vec<Sample>)> = Vec::new();
                if start <= end {
                    let inner = Steps { start, end, step };
                    // Every inner step holds at least one point per series;
                    // refuse before allocating an absurd number of steps.
                    if inner.len() > self.opts.max_samples {
                        return Err(QueryError::exec(
                            "query processing would load too many samples into memory in query execution",
                        ));
                    }
                    match self.eval(&sq.expr, inner)? {
                        Val::Vector(vs) => {
                            for s in to_series(&vs, inner) {
                                series.push((Rc::new(s.labels), s.samples));
                            }
                        }
                        _ => {
                            return Err(QueryError::bad(
                                "subquery is only allowed on instant vector",
                            ));
                        }
                    }
                }
                Ok(MatrixArg {
                    series,
                    absent_labels: Labels::empty(),
                    range_ms,
                    at,
                    offset_ms: off,
                    moving_at_base: None,
                })
            }
            other => Err(QueryError::bad(format!(
                "expected type range vector, got {}",
                other.value_type()
            ))),
        }
    }

    /// A range vector at the top level of an instant query: the raw samples
    /// of each series' window.
    fn eval_matrix_top(&mut self, expr: &Expr, t: i64) -> Result<Vec<SeriesData>, QueryError> {
        let arg = self.eval_matrix_arg(expr, Steps::instant(t))?;
        let (lo, hi) = arg.window(t);
        let mut out = Vec::new();
        for (l, samples) in &arg.series {
            let w = window_slice(samples, lo, hi);
            if !w.is_empty() {
                out.push(SeriesData {
                    labels: (**l).clone(),
                    samples: w.to_vec(),
                });
            }
        }
        Ok(out)
    }
}

/// Translates a selector's matchers; several groups when the selector uses
/// Prometheus 3's `or` inside braces.
fn selector_matchers(vs: &pp::VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let conv = |m: &promql_parser::label::Matcher| -> Result<Matcher, QueryError> {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        Matcher::new(m.name.clone(), op, m.value.clone())
            .map_err(|e| QueryError::bad(e.to_string()))
    };
    let mut base = Vec::new();
    if let Some(name) = &vs.name {
        base.push(Matcher::equal(vigil_wire::METRIC_NAME_LABEL, name.clone()));
    }
    let mut groups = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        let mut g = base.clone();
        for m in &vs.matchers.matchers {
            g.push(conv(m)?);
        }
        groups.push(g);
    } else {
        for og in &vs.matchers.or_matchers {
            let mut g = base.clone();
            for m in og.iter().chain(vs.matchers.matchers.iter()) {
                g.push(conv(m)?);
            }
            groups.push(g);
        }
    }
    Ok(groups)
}

/// The labels `absent()` gives: equality matchers, except names matched in
/// any other way or more than once, and never the metric name.
pub(crate) fn absent_labels(vs: &pp::VectorSelector) -> Labels {
    let mut set: Vec<(String, String)> = Vec::new();
    let mut empty: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == vigil_wire::METRIC_NAME_LABEL {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !set.iter().any(|(n, _)| *n == m.name) {
            set.push((m.name.clone(), m.value.clone()));
        } else {
            empty.push(m.name.clone());
        }
    }
    set.retain(|(n, _)| !empty.contains(n));
    Labels::from_pairs(set)
}

/// Memoises label rewrites (like dropping the metric name) per input label
/// set, so a rewrite is done once per series rather than once per step.
#[derive(Default)]
pub(crate) struct LabelCache {
    map: FastMap<*const Labels, L>,
}

impl LabelCache {
    pub fn get_or(&mut self, l: &L, f: impl FnOnce(&Labels) -> Labels) -> L {
        // Keys are the addresses of labels kept alive by the input vectors
        // for the whole evaluation of the node, so they are never reused.
        self.map
            .entry(Rc::as_ptr(l))
            .or_insert_with(|| Rc::new(f(l)))
            .clone()
    }

    pub fn drop_name(&mut self, l: &L) -> L {
        if l.get(vigil_wire::METRIC_NAME_LABEL).is_none() {
            return l.clone();
        }
        self.get_or(l, |l| l.without_metric_name())
    }
}

/// Prometheus's `labels.Labels.String()`: `{a="b", c="d"}`, metric name
/// included as a label.
pub(crate) fn labels_string(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|x| format!("{}={:?}", x.name, x.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Gives every distinct label set seen by one node a small id, looking
/// labels up by address first so content is hashed once per `Rc`, not once
/// per step.
#[derive(Default)]
pub(crate) struct Interner {
    by_ptr: FastMap<*const Labels, u32>,
    by_content: HashMap<Labels, u32>,
    seen: Vec<u32>,
}

impl Interner {
    /// The id of `l`'s content. Callers keep every `l` alive for as long as
    /// the interner, so addresses are never reused.
    pub fn id(&mut self, l: &L) -> u32 {
        if let Some(id) = self.by_ptr.get(&Rc::as_ptr(l)) {
            return *id;
        }
        let next = self.by_content.len() as u32;
        let id = *self.by_content.entry((**l).clone()).or_insert(next);
        self.by_ptr.insert(Rc::as_ptr(l), id);
        id
    }

    /// Fails when one instant vector holds two samples with equal labels.
    pub fn check_unique(&mut self, vec: &StepVec) -> Result<(), QueryError> {
        if vec.len() < 2 {
            return Ok(());
        }
        let mut seen = std::mem::take(&mut self.seen);
        seen.clear();
        for (l, _) in vec {
            let id = self.id(l);
            seen.push(id);
        }
        seen.sort_unstable();
        let dup = seen.windows(2).any(|w| w[0] == w[1]);
        self.seen = seen;
        if dup {
            return Err(QueryError::exec(
                "vector cannot contain metrics with the same labelset",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(11_000), "11,000");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }
}
