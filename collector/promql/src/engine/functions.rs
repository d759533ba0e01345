//! The PromQL function library, following Prometheus 2.42's `functions.go`.
//!
//! Functions taking a range vector run per series and per step over the
//! step's window; the others run per step over instant vectors.

use std::collections::HashMap;
use std::rc::Rc;

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use promql_parser::parser::{Call, Expr};
use regex::Regex;
use vigil_wire::labels::is_valid_label_name;
use vigil_wire::{Labels, METRIC_NAME_LABEL, Sample};

use super::{
    Evaluator, FastMap, Interner, L, LabelCache, MatrixArg, QueryError, StepVec, Steps, Val,
    absent_labels, unwrap_parens, window_slice,
};

/// Kahan-compensated addition, as Prometheus's `kahanSumInc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Go's `math.Max`: +Inf beats everything (even NaN), then NaN wins, and
/// +0 beats -0. Rust's `f64::max` ignores NaN instead.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: the mirror image of [`go_max`].
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Prometheus's `quantile` over a set of values (sorts them, NaN first).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (n - 1.0).min(lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `extrapolatedRate`: rate, increase and delta.
fn extrapolated_rate(
    s: &[Sample],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.value - first.value;
    if counter {
        let mut last_v = 0.0;
        for x in s {
            if x.value < last_v {
                result += last_v;
            }
            last_v = x.value;
        }
    }
    let mut to_start = (first.timestamp_ms - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.timestamp_ms) as f64 / 1000.0;
    let sampled = (last.timestamp_ms - first.timestamp_ms) as f64 / 1000.0;
    let avg = sampled / (s.len() - 1) as f64;
    if counter && result > 0.0 && first.value >= 0.0 {
        let to_zero = sampled * (first.value / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `instantValue`: irate and idelta.
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let last = s[s.len() - 1];
    let prev = s[s.len() - 2];
    let mut v = if is_rate && last.value < prev.value {
        last.value
    } else {
        last.value - prev.value
    };
    let interval = last.timestamp_ms - prev.timestamp_ms;
    if interval == 0 {
        return None;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

fn linear_regression(s: &[Sample], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = s[0].value;
    let mut const_y = true;
    for (i, x) in s.iter().enumerate() {
        if const_y && i > 0 && x.value != init_y {
            const_y = false;
        }
        n += 1.0;
        let t = (x.timestamp_ms - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(t, sx, cx);
        (sy, cy) = kahan_inc(x.value, sy, cy);
        (sxy, cxy) = kahan_inc(t * x.value, sxy, cxy);
        (sx2, cx2) = kahan_inc(t * t, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn sum_over_time(s: &[Sample]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for x in s {
        (sum, c) = kahan_inc(x.value, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// A fold of a window's values into one, sample by sample.
trait Fold: Default + Copy {
    fn push(&mut self, v: f64);
    fn value(&self) -> f64;

    fn over(s: &[Sample]) -> f64 {
        let mut f = Self::default();
        for x in s {
            f.push(x.value);
        }
        f.value()
    }

    /// Pushes the first samples of [`LANES`] windows of at least `common`
    /// samples into `st` (fresh folds) faster than one [`Fold::push`] at a
    /// time, with the same arithmetic, and answers how many it pushed (the
    /// caller pushes the rest one by one). The default pushes none.
    fn push_prefix(_st: &mut [Self; LANES], _group: &[&[Sample]; LANES], _common: usize) -> usize {
        0
    }
}

/// `avg_over_time`: incremental mean (no overflow for huge values) with
/// Kahan compensation, as Prometheus computes it.
#[derive(Default, Clone, Copy)]
struct Avg {
    mean: f64,
    count: f64,
    c: f64,
}

impl Fold for Avg {
    #[inline(always)]
    fn push(&mut self, v: f64) {
        self.count += 1.0;
        if self.mean.is_infinite() {
            if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                return;
            }
            if !v.is_infinite() && !v.is_nan() {
                return;
            }
        }
        (self.mean, self.c) = kahan_inc(v / self.count - self.mean / self.count, self.mean, self.c);
    }

    fn value(&self) -> f64 {
        if self.mean.is_infinite() {
            self.mean
        } else {
            self.mean + self.c
        }
    }

    /// [`Avg::push`] for [`LANES`] windows side by side while every mean is
    /// finite, laid out lane by lane (the count is the same in every lane),
    /// each operation done for all lanes before the next and with both
    /// sides of [`kahan_inc`]'s choice computed and one selected, so the
    /// compiler turns the lanes into vector instructions instead of a
    /// branchy scalar chain (written one lane at a time, the loop compiled
    /// to mostly scalar code and ran 2.3 times slower). Every lane's
    /// operations and their order are [`Avg::push`]'s, so the answer is
    /// bit for bit the same. Stops after the first sample that makes a
    /// mean infinite: what follows goes through [`Avg::push`].
    fn push_prefix(st: &mut [Self; LANES], group: &[&[Sample]; LANES], common: usize) -> usize {
        // Cut to `common` so the loop's indexing needs no bounds checks.
        let windows = group.map(|w| &w[..common]);
        let mut mean = [0.0f64; LANES];
        let mut c = [0.0f64; LANES];
        let mut count = 0.0f64;
        let mut infinite = false;
        let mut i = 0;
        while i < common && !infinite {
            count += 1.0;
            let mut inc: [f64; LANES] = std::array::from_fn(|l| windows[l][i].value / count);
            for l in 0..LANES {
                inc[l] -= mean[l] / count;
            }
            let t: [f64; LANES] = std::array::from_fn(|l| mean[l] + inc[l]);
            for l in 0..LANES {
                let big = (mean[l] - t[l]) + inc[l];
                let small = (inc[l] - t[l]) + mean[l];
                let d = if mean[l].abs() >= inc[l].abs() {
                    big
                } else {
                    small
                };
                c[l] = if t[l].is_infinite() { 0.0 } else { c[l] + d };
            }
            infinite = t.iter().any(|x| x.is_infinite());
            mean = t;
            i += 1;
        }
        for (l, f) in st.iter_mut().enumerate() {
            *f = Avg {
                mean: mean[l],
                count,
                c: c[l],
            };
        }
        i
    }
}

fn avg_over_time(s: &[Sample]) -> f64 {
    Avg::over(s)
}

/// `stdvar_over_time`: Welford's running variance with Kahan compensation.
#[derive(Default, Clone, Copy)]
struct StdVar {
    count: f64,
    mean: f64,
    cmean: f64,
    aux: f64,
    caux: f64,
}

impl Fold for StdVar {
    #[inline(always)]
    fn push(&mut self, v: f64) {
        self.count += 1.0;
        let delta = v - (self.mean + self.cmean);
        (self.mean, self.cmean) = kahan_inc(delta / self.count, self.mean, self.cmean);
        (self.aux, self.caux) =
            kahan_inc(delta * (v - (self.mean + self.cmean)), self.aux, self.caux);
    }

    fn value(&self) -> f64 {
        (self.aux + self.caux) / self.count
    }
}

fn stdvar_over_time(s: &[Sample]) -> f64 {
    StdVar::over(s)
}

/// Windows folded together by [`fold_lanes`].
const LANES: usize = 4;

/// Folds up to [`LANES`] windows in lockstep. Each window's fold is one
/// chain of dependent divisions (the running mean divides by the count
/// after every sample), so one window at a time leaves the CPU waiting on
/// each division; stepping independent windows side by side lets their
/// chains overlap. Each window's arithmetic is exactly that of
/// [`Fold::over`], so the answers are bit for bit the same.
fn fold_lanes<F: Fold>(windows: &[&[Sample]]) -> Vec<f64> {
    let mut out = Vec::with_capacity(windows.len());
    for group in windows.chunks(LANES) {
        // A short last group repeats its first window in the spare lanes
        // (their answers are dropped): one group in lanes costs less than
        // even one window folded alone.
        let mut padded = [group[0]; LANES];
        padded[..group.len()].copy_from_slice(group);
        let (n, group) = (group.len(), &padded);
        let mut st = [F::default(); LANES];
        let common = group.iter().map(|w| w.len()).min().unwrap_or(0);
        let done = F::push_prefix(&mut st, group, common);
        for i in done..common {
            for (f, w) in st.iter_mut().zip(group).take(n) {
                f.push(w[i].value);
            }
        }
        for (f, w) in st.iter_mut().zip(group).take(n) {
            for x in &w[common..] {
                f.push(x.value);
            }
        }
        out.extend(st[..n].iter().map(Fold::value));
    }
    out
}

fn holt_winters(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, s[0].value);
    let mut b = s[1].value - s[0].value;
    for (i, x) in s.iter().enumerate().skip(1) {
        let xv = sf * x.value;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = xv + y;
    }
    Some(s1)
}

/// Names of functions that take a range vector, and whether they keep the
/// metric name.
fn is_matrix_function(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "irate"
            | "increase"
            | "delta"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "changes"
            | "resets"
            | "holt_winters"
            | "double_exponential_smoothing"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "quantile_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "last_over_time"
            | "present_over_time"
            | "absent_over_time"
    )
}

fn scalar_arg(ev: &mut Evaluator<'_>, e: &Expr, steps: Steps) -> Result<Vec<f64>, QueryError> {
    match ev.eval(e, steps)? {
        Val::Scalar(v) => Ok(v),
        _ => Err(QueryError::bad("expected a scalar argument")),
    }
}

fn string_arg(ev: &mut Evaluator<'_>, e: &Expr, steps: Steps) -> Result<String, QueryError> {
    match ev.eval(e, steps)? {
        Val::String(s) => Ok(s),
        _ => Err(QueryError::bad("expected a string argument")),
    }
}

fn vector_arg(ev: &mut Evaluator<'_>, e: &Expr, steps: Steps) -> Result<Vec<StepVec>, QueryError> {
    match ev.eval(e, steps)? {
        Val::Vector(v) => Ok(v),
        _ => Err(QueryError::bad("expected an instant vector argument")),
    }
}

pub(super) fn eval_call(ev: &mut Evaluator<'_>, c: &Call, steps: Steps) -> Result<Val, QueryError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    if is_matrix_function(name) {
        return eval_matrix_call(ev, name, &args, steps);
    }
    let n = steps.len();
    match name {
        "time" => Ok(Val::Scalar(
            (0..n).map(|i| steps.at(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        "scalar" => {
            let v = vector_arg(ev, args[0], steps)?;
            Ok(Val::Scalar(
                v.iter()
                    .map(|vec| if vec.len() == 1 { vec[0].1 } else { f64::NAN })
                    .collect(),
            ))
        }
        "vector" => {
            let s = scalar_arg(ev, args[0], steps)?;
            let l: L = Rc::new(Labels::empty());
            Ok(Val::Vector(
                s.into_iter().map(|v| vec![(l.clone(), v)]).collect(),
            ))
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = unwrap_parens(args[0]) {
                // The sample's own timestamp, not the evaluation time.
                let per_step = ev.eval_vector_selector(vs, steps)?;
                let mut cache = LabelCache::default();
                let out: Vec<StepVec> = per_step
                    .iter()
                    .map(|v| {
                        v.iter()
                            .map(|(l, t, _)| (cache.drop_name(l), *t as f64 / 1000.0))
                            .collect()
                    })
                    .collect();
                let mut uniq = Interner::default();
                for v in &out {
                    uniq.check_unique(v)?;
                }
                return Ok(Val::Vector(out));
            }
            let v = vector_arg(ev, args[0], steps)?;
            let mut cache = LabelCache::default();
            let mut out = Vec::with_capacity(n);
            let mut uniq = Interner::default();
            for (i, vec) in v.iter().enumerate() {
                let t = steps.at(i) as f64 / 1000.0;
                let o: StepVec = vec.iter().map(|(l, _)| (cache.drop_name(l), t)).collect();
                uniq.check_unique(&o)?;
                out.push(o);
            }
            Ok(Val::Vector(out))
        }
        "absent" => {
            let v = vector_arg(ev, args[0], steps)?;
            let labels: L = Rc::new(match unwrap_parens(args[0]) {
                Expr::VectorSelector(vs) => absent_labels(vs),
                _ => Labels::empty(),
            });
            Ok(Val::Vector(
                v.iter()
                    .map(|vec| {
                        if vec.is_empty() {
                            vec![(labels.clone(), 1.0)]
                        } else {
                            Vec::new()
                        }
                    })
                    .collect(),
            ))
        }
        "sort" | "sort_desc" => {
            let mut v = vector_arg(ev, args[0], steps)?;
            let desc = name == "sort_desc";
            for vec in &mut v {
                vec.sort_by(|a, b| {
                    let (x, y) = (a.1, b.1);
                    // NaN sorts last in both directions, as in Prometheus.
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                        _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                    }
                });
            }
            Ok(Val::Vector(v))
        }
        "label_replace" => label_replace(ev, &args, steps),
        "label_join" => label_join(ev, &args, steps),
        "histogram_quantile" => histogram_quantile(ev, &args, steps),
        "round" => {
            let v = vector_arg(ev, args[0], steps)?;
            let to = match args.get(1) {
                Some(e) => scalar_arg(ev, e, steps)?,
                None => vec![1.0; n],
            };
            map_values(ev, &v, |i, x| {
                let inv = 1.0 / to[i];
                Some((x * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let v = vector_arg(ev, args[0], steps)?;
            let lo = scalar_arg(ev, args[1], steps)?;
            let hi = scalar_arg(ev, args[2], steps)?;
            map_values(ev, &v, |i, x| {
                if hi[i] < lo[i] {
                    None
                } else {
                    Some(go_max(lo[i], go_min(hi[i], x)))
                }
            })
        }
        "clamp_min" => {
            let v = vector_arg(ev, args[0], steps)?;
            let lo = scalar_arg(ev, args[1], steps)?;
            map_values(ev, &v, |i, x| Some(go_max(x, lo[i])))
        }
        "clamp_max" => {
            let v = vector_arg(ev, args[0], steps)?;
            let hi = scalar_arg(ev, args[1], steps)?;
            map_values(ev, &v, |i, x| Some(go_min(x, hi[i])))
        }
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month"
        | "month" | "year" => {
            let v = match args.first() {
                Some(e) => vector_arg(ev, e, steps)?,
                None => {
                    let l: L = Rc::new(Labels::empty());
                    (0..n)
                        .map(|i| vec![(l.clone(), steps.at(i) as f64 / 1000.0)])
                        .collect()
                }
            };
            map_values(ev, &v, |_, x| Some(date_part(name, x)))
        }
        _ => {
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sgn" => |x| {
                    if x < 0.0 {
                        -1.0
                    } else if x > 0.0 {
                        1.0
                    } else {
                        x
                    }
                },
                "acos" => f64::acos,
                "acosh" => f64::acosh,
                "asin" => f64::asin,
                "asinh" => f64::asinh,
                "atan" => f64::atan,
                "atanh" => f64::atanh,
                "cos" => f64::cos,
                "cosh" => f64::cosh,
                "sin" => f64::sin,
                "sinh" => f64::sinh,
                "tan" => f64::tan,
                "tanh" => f64::tanh,
                "deg" => |x| x * 180.0 / std::f64::consts::PI,
                "rad" => |x| x * std::f64::consts::PI / 180.0,
                other => {
                    return Err(QueryError::bad(format!(
                        "function {other:?} is not supported"
                    )));
                }
            };
            let v = vector_arg(ev, args[0], steps)?;
            map_values(ev, &v, |_, x| Some(f(x)))
        }
    }
}

/// Applies `f(step, value)` to every sample, dropping the metric name.
fn map_values(
    ev: &mut Evaluator<'_>,
    v: &[StepVec],
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Result<Val, QueryError> {
    let mut cache = LabelCache::default();
    let mut out = Vec::with_capacity(v.len());
    let mut uniq = Interner::default();
    for (i, vec) in v.iter().enumerate() {
        ev.check()?;
        let o: StepVec = vec
            .iter()
            .filter_map(|(l, x)| f(i, *x).map(|y| (cache.drop_name(l), y)))
            .collect();
        uniq.check_unique(&o)?;
        out.push(o);
    }
    Ok(Val::Vector(out))
}

fn date_part(name: &str, v: f64) -> f64 {
    let secs = v as i64;
    let Some(t) = DateTime::from_timestamp(secs, 0) else {
        return f64::NAN;
    };
    match name {
        "minute" => t.minute() as f64,
        "hour" => t.hour() as f64,
        "day_of_week" => t.weekday().num_days_from_sunday() as f64,
        "day_of_month" => t.day() as f64,
        "day_of_year" => t.ordinal() as f64,
        "month" => t.month() as f64,
        "year" => t.year() as f64,
        _ => {
            // days_in_month: the day before the first of next month.
            let (y, m) = if t.month() == 12 {
                (t.year() + 1, 1)
            } else {
                (t.year(), t.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1)
                .and_then(|d| d.pred_opt())
                .map(|d| d.day() as f64)
                .unwrap_or(f64::NAN)
        }
    }
}

fn label_replace(ev: &mut Evaluator<'_>, args: &[&Expr], steps: Steps) -> Result<Val, QueryError> {
    let v = vector_arg(ev, args[0], steps)?;
    let dst = string_arg(ev, args[1], steps)?;
    let repl = string_arg(ev, args[2], steps)?;
    let src = string_arg(ev, args[3], steps)?;
    let re_str = string_arg(ev, args[4], steps)?;
    let re = Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {re_str}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut cache = LabelCache::default();
    let mut out = Vec::with_capacity(v.len());
    let mut uniq = Interner::default();
    for vec in &v {
        ev.check()?;
        let o: StepVec = vec
            .iter()
            .map(|(l, x)| {
                let nl = cache.get_or(l, |l| {
                    let src_val = l.get(&src).unwrap_or("");
                    match re.captures(src_val) {
                        None => l.clone(),
                        Some(caps) => {
                            let mut res = String::new();
                            caps.expand(&repl, &mut res);
                            let mut nl = l.clone();
                            nl.set(&dst, res);
                            nl
                        }
                    }
                });
                (nl, *x)
            })
            .collect();
        uniq.check_unique(&o)?;
        out.push(o);
    }
    Ok(Val::Vector(out))
}

fn label_join(ev: &mut Evaluator<'_>, args: &[&Expr], steps: Steps) -> Result<Val, QueryError> {
    let v = vector_arg(ev, args[0], steps)?;
    let dst = string_arg(ev, args[1], steps)?;
    let sep = string_arg(ev, args[2], steps)?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        let s = string_arg(ev, a, steps)?;
        if !is_valid_label_name(&s) {
            return Err(QueryError::exec(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !is_valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut cache = LabelCache::default();
    let mut out = Vec::with_capacity(v.len());
    let mut uniq = Interner::default();
    for vec in &v {
        ev.check()?;
        let o: StepVec = vec
            .iter()
            .map(|(l, x)| {
                let nl = cache.get_or(l, |l| {
                    let joined: Vec<&str> = srcs.iter().map(|s| l.get(s).unwrap_or("")).collect();
                    let mut nl = l.clone();
                    nl.set(&dst, joined.join(&sep));
                    nl
                });
                (nl, *x)
            })
            .collect();
        uniq.check_unique(&o)?;
        out.push(o);
    }
    Ok(Val::Vector(out))
}

/// Go's `strconv.ParseFloat` for `le` values (Rust's parser accepts the same
/// spellings of infinities and NaN, case-insensitively).
fn parse_le(s: &str) -> Option<f64> {
    s.trim_start_matches('+')
        .parse::<f64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok())
}

/// `bucketQuantile` over classic buckets (upper bound, cumulative count).
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    // Enforce monotonicity: a bucket never holds fewer than the one before.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let nb = merged.len() - 1;
    let b = merged[..nb].partition_point(|x| x.1 < rank);
    if b == nb {
        return merged[nb - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn histogram_quantile(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    steps: Steps,
) -> Result<Val, QueryError> {
    let q = scalar_arg(ev, args[0], steps)?;
    let v = vector_arg(ev, args[1], steps)?;
    // Per input label set: (group key including the metric name, output labels).
    let mut keys: FastMap<*const Labels, Option<(L, L, f64)>> = FastMap::default();
    let mut interned: HashMap<Labels, L> = HashMap::new();
    let mut out = Vec::with_capacity(v.len());
    let mut uniq = Interner::default();
    for (i, vec) in v.iter().enumerate() {
        ev.check()?;
        let mut groups: FastMap<*const Labels, usize> = FastMap::default();
        let mut ordered: Vec<(L, Vec<(f64, f64)>)> = Vec::new();
        for (l, x) in vec {
            let entry = keys.entry(Rc::as_ptr(l)).or_insert_with(|| {
                let ub = parse_le(l.get("le")?)?;
                // The metric name is part of the key (so two histograms
                // never merge) but not of the output.
                let key = l.drop_names(&["le".to_string()]);
                let mut outl = key.clone();
                let key = interned
                    .entry(key.clone())
                    .or_insert_with(|| Rc::new(key))
                    .clone();
                outl.remove(METRIC_NAME_LABEL);
                let outl = interned
                    .entry(outl.clone())
                    .or_insert_with(|| Rc::new(outl))
                    .clone();
                Some((key, outl, ub))
            });
            let Some((key, outl, ub)) = entry else {
                continue;
            };
            let gi = *groups.entry(Rc::as_ptr(key)).or_insert_with(|| {
                ordered.push((outl.clone(), Vec::new()));
                ordered.len() - 1
            });
            ordered[gi].1.push((*ub, *x));
        }
        let o: StepVec = ordered
            .into_iter()
            .map(|(l, mut b)| (l, bucket_quantile(q[i], &mut b)))
            .collect();
        uniq.check_unique(&o)?;
        out.push(o);
    }
    Ok(Val::Vector(out))
}

fn eval_matrix_call(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    steps: Steps,
) -> Result<Val, QueryError> {
    // The range-vector argument is the first, except for quantile_over_time.
    let mi = usize::from(name == "quantile_over_time");
    // The other arguments are scalars, one value per step.
    let mut extra: Vec<Vec<f64>> = Vec::new();
    for (j, a) in args.iter().enumerate() {
        if j != mi {
            extra.push(scalar_arg(ev, a, steps)?);
        }
    }
    let n = steps.len();
    if name == "absent_over_time" {
        let m: MatrixArg = ev.eval_matrix_arg(args[mi], steps)?;
        let l: L = Rc::new(m.absent_labels.clone());
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let (lo, hi) = m.window(steps.at(i));
            let any = m
                .series
                .iter()
                .any(|(_, s)| !window_slice(s, lo, hi).is_empty());
            out.push(if any {
                Vec::new()
            } else {
                vec![(l.clone(), 1.0)]
            });
        }
        return Ok(Val::Vector(out));
    }
    if n == 1
        && matches!(
            name,
            "avg_over_time" | "stdvar_over_time" | "stddev_over_time"
        )
    {
        return fold_instant(ev, name, args[mi], steps);
    }
    let keep_name = name == "last_over_time";
    let mut out: Vec<StepVec> = vec![Vec::new(); n];
    let mut seen: std::collections::HashSet<L> = std::collections::HashSet::new();
    let mut per_series = |ev: &mut Evaluator<'_>,
                          m: &MatrixArg,
                          l: &L,
                          samples: &[Sample]|
     -> Result<(), QueryError> {
        ev.check()?;
        let ol: L = if keep_name {
            l.clone()
        } else {
            Rc::new(l.without_metric_name())
        };
        let mut any = false;
        for (i, slot) in out.iter_mut().enumerate() {
            let ts = steps.at(i);
            let (lo, hi) = m.window(ts);
            let w = window_slice(samples, lo, hi);
            if w.is_empty() {
                continue;
            }
            let v = match name {
                "rate" => extrapolated_rate(w, lo, hi, m.range_ms, true, true),
                "increase" => extrapolated_rate(w, lo, hi, m.range_ms, true, false),
                "delta" => extrapolated_rate(w, lo, hi, m.range_ms, false, false),
                "irate" => instant_value(w, true),
                "idelta" => instant_value(w, false),
                "deriv" => (w.len() >= 2).then(|| linear_regression(w, w[0].timestamp_ms).0),
                "predict_linear" => (w.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(w, ts);
                    slope * extra[0][i] + intercept
                }),
                "changes" => {
                    let mut c = 0usize;
                    for p in w.windows(2) {
                        let (prev, cur) = (p[0].value, p[1].value);
                        if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                            c += 1;
                        }
                    }
                    Some(c as f64)
                }
                "resets" => Some(w.windows(2).filter(|p| p[1].value < p[0].value).count() as f64),
                "holt_winters" | "double_exponential_smoothing" => {
                    holt_winters(w, extra[0][i], extra[1][i])
                }
                "avg_over_time" => Some(avg_over_time(w)),
                "min_over_time" => Some(w.iter().skip(1).fold(w[0].value, |m, x| {
                    if x.value < m || m.is_nan() {
                        x.value
                    } else {
                        m
                    }
                })),
                "max_over_time" => Some(w.iter().skip(1).fold(w[0].value, |m, x| {
                    if x.value > m || m.is_nan() {
                        x.value
                    } else {
                        m
                    }
                })),
                "sum_over_time" => Some(sum_over_time(w)),
                "count_over_time" => Some(w.len() as f64),
                "quantile_over_time" => {
                    let mut vals: Vec<f64> = w.iter().map(|x| x.value).collect();
                    Some(quantile(extra[0][i], &mut vals))
                }
                "stddev_over_time" => Some(stdvar_over_time(w).sqrt()),
                "stdvar_over_time" => Some(stdvar_over_time(w)),
                "last_over_time" => Some(w[w.len() - 1].value),
                "present_over_time" => Some(1.0),
                _ => None,
            };
            if let Some(v) = v {
                slot.push((ol.clone(), v));
                any = true;
            }
        }
        // Prometheus rejects two output series with the same labels even
        // when they never overlap in time.
        if any && !seen.insert(ol.clone()) {
            return Err(QueryError::exec(
                "vector cannot contain metrics with the same labelset",
            ));
        }
        Ok(())
    };
    if name == "holt_winters" || name == "double_exponential_smoothing" {
        // The factors are validated against every step with data before
        // any series is computed, so this argument is loaded whole.
        let m: MatrixArg = ev.eval_matrix_arg(args[mi], steps)?;
        check_smoothing_factors(&m, steps, &extra)?;
        for (l, samples) in &m.series {
            per_series(ev, &m, l, samples)?;
        }
    } else {
        ev.each_matrix_series(
            args[mi],
            steps,
            |m| {
                if name == "predict_linear" {
                    m.emulate_moving_at(steps.start);
                }
            },
            |ev, m, l, samples| per_series(ev, m, &l, &samples),
        )?;
    }
    Ok(Val::Vector(out))
}

/// An instant `avg_over_time`, `stdvar_over_time` or `stddev_over_time`:
/// what the general path answers, with the series' windows folded
/// [`LANES`] at a time by [`fold_lanes`] (rules and instant queries over
/// long ranges spend most of their time in these folds). Holds at most
/// [`LANES`] series' samples at once.
fn fold_instant(
    ev: &mut Evaluator<'_>,
    name: &str,
    arg: &Expr,
    steps: Steps,
) -> Result<Val, QueryError> {
    let ts = steps.at(0);
    let mut out: StepVec = Vec::new();
    let mut seen: std::collections::HashSet<L> = std::collections::HashSet::new();
    // Output labels and samples, with the window's bounds in them.
    let mut batch: Vec<(L, Vec<Sample>, std::ops::Range<usize>)> = Vec::with_capacity(LANES);
    let mut flush = |batch: &mut Vec<(L, Vec<Sample>, std::ops::Range<usize>)>| {
        let windows: Vec<&[Sample]> = batch.iter().map(|(_, s, r)| &s[r.clone()]).collect();
        let values = match name {
            "avg_over_time" => fold_lanes::<Avg>(&windows),
            "stdvar_over_time" => fold_lanes::<StdVar>(&windows),
            _ => fold_lanes::<StdVar>(&windows)
                .into_iter()
                .map(f64::sqrt)
                .collect(),
        };
        for ((l, _, _), v) in batch.drain(..).zip(values) {
            // Prometheus rejects two output series with the same labels.
            if !seen.insert(l.clone()) {
                return Err(QueryError::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
            out.push((l, v));
        }
        Ok(())
    };
    ev.each_matrix_series(
        arg,
        steps,
        |_| {},
        |ev, m, l, samples| {
            ev.check()?;
            let (lo, hi) = m.window(ts);
            let a = samples.partition_point(|s| s.timestamp_ms < lo);
            let b = samples.partition_point(|s| s.timestamp_ms <= hi);
            if a >= b {
                return Ok(());
            }
            batch.push((Rc::new(l.without_metric_name()), samples, a..b));
            if batch.len() == LANES {
                flush(&mut batch)?;
            }
            Ok(())
        },
    )?;
    flush(&mut batch)?;
    Ok(Val::Vector(vec![out]))
}

/// Prometheus checks holt_winters' smoothing and trend factors only at
/// steps where some series has data in its window.
fn check_smoothing_factors(
    m: &MatrixArg,
    steps: Steps,
    extra: &[Vec<f64>],
) -> Result<(), QueryError> {
    let n = steps.len();
    let (sf, tf) = (&extra[0], &extra[1]);
    for i in 0..n {
        let has_data = m.series.iter().any(|(_, s)| {
            let (lo, hi) = m.window(steps.at(i));
            !window_slice(s, lo, hi).is_empty()
        });
        if !has_data {
            continue;
        }
        if sf[i] <= 0.0 || sf[i] >= 1.0 {
            return Err(QueryError::exec(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {:.6}",
                sf[i]
            )));
        }
        if tf[i] <= 0.0 || tf[i] >= 1.0 {
            return Err(QueryError::exec(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {:.6}",
                tf[i]
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_fold_bit_for_bit_as_one_window_at_a_time() {
        let odd = [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -0.0,
            1e308,
            -1e308,
            f64::MIN_POSITIVE,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let series: Vec<Vec<Sample>> = (0..19)
            .map(|i| {
                let len = [
                    0, 1, 2, 7, 100, 100, 99, 1000, 3, 64, 65, 300, 301, 5, 512, 77, 78, 1, 250,
                ][i];
                (0..len)
                    .map(|k| {
                        let r = next();
                        // Two in three windows see infinities and NaNs (the
                        // lanes stop early), the rest run the lanes through.
                        let v = if i % 3 != 0 && r % 13 == 0 {
                            odd[(r >> 8) as usize % odd.len()]
                        } else {
                            (r % 100_000) as f64 / 7.0 - 5_000.0
                        };
                        Sample::new(k as i64, v)
                    })
                    .collect()
            })
            .collect();
        let windows: Vec<&[Sample]> = series.iter().map(Vec::as_slice).collect();
        let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
        // Every run of consecutive windows, so that full groups of lanes
        // start at every mix of lengths, short and empty windows included.
        for (a, n) in (0..windows.len()).flat_map(|a| (a + 1..=windows.len()).map(move |b| (a, b)))
        {
            let w = &windows[a..n];
            assert_eq!(
                bits(fold_lanes::<Avg>(w)),
                bits(w.iter().map(|s| avg_over_time(s)).collect()),
                "avg over windows {a}..{n}"
            );
            assert_eq!(
                bits(fold_lanes::<StdVar>(w)),
                bits(w.iter().map(|s| stdvar_over_time(s)).collect()),
                "stdvar over windows {a}..{n}"
            );
        }
    }
}
