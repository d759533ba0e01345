//! Aggregation operators (`sum`, `avg`, `count`, `min`, `max`, `group`,
//! `stddev`, `stdvar`, `topk`, `bottomk`, `quantile`, `count_values`) with
//! `by` / `without`, following Prometheus 2.42's `aggregation`.

use std::collections::HashMap;
use std::rc::Rc;

use promql_parser::parser::AggregateExpr;
use promql_parser::parser::ast::LabelModifier;
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use vigil_wire::labels::is_valid_label_name;
use vigil_wire::{Labels, METRIC_NAME_LABEL};

use super::functions::quantile;
use super::{Evaluator, FastMap, Interner, L, QueryError, StepVec, Steps, Val};
use crate::value::format_float;

struct Group {
    labels: L,
    value: f64,
    mean: f64,
    count: u64,
    /// topk/bottomk candidates, or every value for quantile.
    heap: Vec<(L, f64)>,
}

/// Go's `vectorByValueHeap` ordering (NaN lowest) for topk, and its reverse
/// (NaN still "lowest", i.e. on top) for bottomk.
fn heap_less(topk: bool, a: f64, b: f64) -> bool {
    if a.is_nan() && !b.is_nan() {
        return true;
    }
    if topk { a < b } else { a > b }
}

// A binary min-heap identical to Go's container/heap, so ties are resolved
// the same way Prometheus resolves them.
fn heap_up(h: &mut [(L, f64)], mut j: usize, topk: bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if i == j || !heap_less(topk, h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [(L, f64)], i0: usize, n: usize, topk: bool) {
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && heap_less(topk, h[j2].1, h[j1].1) {
            j = j2;
        }
        if !heap_less(topk, h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_push(h: &mut Vec<(L, f64)>, x: (L, f64), topk: bool) {
    h.push(x);
    let n = h.len();
    heap_up(h, n - 1, topk);
}

fn heap_pop(h: &mut Vec<(L, f64)>, topk: bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    heap_down(h, 0, n, topk);
    h.pop();
}

fn grouping_labels(l: &Labels, grouping: &[String], without: bool) -> Labels {
    if without {
        let mut out = l.drop_names(grouping);
        out.remove(METRIC_NAME_LABEL);
        out
    } else if grouping.is_empty() {
        Labels::empty()
    } else {
        l.keep(grouping)
    }
}

pub(super) fn eval_aggregate(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    steps: Steps,
) -> Result<Val, QueryError> {
    let op = a.op.id();
    let (without, mut grouping) = match &a.modifier {
        Some(LabelModifier::Exclude(ls)) => (true, ls.labels.clone()),
        Some(LabelModifier::Include(ls)) => (false, ls.labels.clone()),
        None => (false, Vec::new()),
    };
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, steps)?),
        None => None,
    };
    let input = match ev.eval(&a.expr, steps)? {
        Val::Vector(v) => v,
        _ => return Err(QueryError::bad("aggregation expects an instant vector")),
    };
    let mut value_label = String::new();
    if op == T_COUNT_VALUES {
        match &param {
            Some(Val::String(s)) => value_label = s.clone(),
            _ => return Err(QueryError::bad("count_values expects a string parameter")),
        }
        if !is_valid_label_name(&value_label) {
            return Err(QueryError::exec(format!(
                "invalid label name {value_label:?}"
            )));
        }
        if !without {
            grouping.push(value_label.clone());
            grouping.sort();
        }
    }
    // Group labels computed once per input label set, and the Rc for each
    // group's output labels reused across steps.
    let mut key_cache: FastMap<*const Labels, L> = FastMap::default();
    let mut interned: HashMap<Labels, L> = HashMap::new();
    let mut out: Vec<StepVec> = Vec::with_capacity(input.len());
    let mut uniq = Interner::default();
    for (i, vec) in input.iter().enumerate() {
        ev.check()?;
        let scalar_param = match &param {
            Some(Val::Scalar(v)) => v.get(i).copied().unwrap_or(f64::NAN),
            _ => f64::NAN,
        };
        let mut k: usize = 0;
        if op == T_TOPK || op == T_BOTTOMK {
            let f = scalar_param;
            // Go's convertibleToInt64.
            if !(-9.223_372_036_854_775e18..=9.223_372_036_854_775e18).contains(&f) {
                return Err(QueryError::exec(format!(
                    "Scalar value {} overflows int64",
                    go_float_v(f)
                )));
            }
            let ki = f as i64;
            if ki < 1 {
                out.push(Vec::new());
                continue;
            }
            k = ki.min(vec.len() as i64).max(1) as usize;
        }
        // Group keys are interned, so equal keys share one address.
        let mut groups: FastMap<*const Labels, usize> = FastMap::default();
        let mut ordered: Vec<Group> = Vec::new();
        for (l, v) in vec {
            let v = *v;
            let key: L = if op == T_COUNT_VALUES {
                let mut m = (**l).clone();
                m.set(&value_label, format_float(v));
                let g = grouping_labels(&m, &grouping, without);
                interned
                    .entry(g.clone())
                    .or_insert_with(|| Rc::new(g))
                    .clone()
            } else {
                key_cache
                    .entry(Rc::as_ptr(l))
                    .or_insert_with(|| {
                        let g = grouping_labels(l, &grouping, without);
                        interned
                            .entry(g.clone())
                            .or_insert_with(|| Rc::new(g))
                            .clone()
                    })
                    .clone()
            };
            let Some(&gi) = groups.get(&Rc::as_ptr(&key)) else {
                let mut g = Group {
                    labels: key.clone(),
                    value: v,
                    mean: v,
                    count: 1,
                    heap: Vec::new(),
                };
                match op {
                    T_STDDEV | T_STDVAR => g.value = 0.0,
                    T_TOPK | T_BOTTOMK | T_QUANTILE => g.heap.push((l.clone(), v)),
                    T_GROUP => g.value = 1.0,
                    _ => {}
                }
                groups.insert(Rc::as_ptr(&key), ordered.len());
                ordered.push(g);
                continue;
            };
            let g = &mut ordered[gi];
            match op {
                T_SUM => g.value += v,
                T_AVG => {
                    g.count += 1;
                    let skip = g.mean.is_infinite()
                        && ((v.is_infinite() && (g.mean > 0.0) == (v > 0.0))
                            || (!v.is_infinite() && !v.is_nan()));
                    if !skip {
                        let n = g.count as f64;
                        g.mean += v / n - g.mean / n;
                    }
                }
                T_MAX if g.value < v || g.value.is_nan() => g.value = v,
                T_MIN if g.value > v || g.value.is_nan() => g.value = v,
                T_COUNT | T_COUNT_VALUES => g.count += 1,
                T_STDDEV | T_STDVAR => {
                    g.count += 1;
                    let delta = v - g.mean;
                    g.mean += delta / g.count as f64;
                    g.value += delta * (v - g.mean);
                }
                T_TOPK | T_BOTTOMK => {
                    let topk = op == T_TOPK;
                    let top = g.heap[0].1;
                    let better = if topk { top < v } else { top > v };
                    if g.heap.len() < k || better || top.is_nan() {
                        if g.heap.len() == k {
                            if k == 1 {
                                g.heap[0] = (l.clone(), v);
                                continue;
                            }
                            heap_pop(&mut g.heap, topk);
                        }
                        heap_push(&mut g.heap, (l.clone(), v), topk);
                    }
                }
                T_QUANTILE => g.heap.push((l.clone(), v)),
                _ => {}
            }
        }
        let mut res: StepVec = Vec::with_capacity(ordered.len());
        for g in ordered {
            let value = match op {
                T_AVG => g.mean,
                T_COUNT | T_COUNT_VALUES => g.count as f64,
                T_STDVAR => g.value / g.count as f64,
                T_STDDEV => (g.value / g.count as f64).sqrt(),
                T_TOPK | T_BOTTOMK => {
                    let mut h = g.heap;
                    let topk = op == T_TOPK;
                    // Reverse of the heap order: best first, NaN last.
                    h.sort_by(|a, b| {
                        if heap_less(topk, b.1, a.1) {
                            std::cmp::Ordering::Less
                        } else if heap_less(topk, a.1, b.1) {
                            std::cmp::Ordering::Greater
                        } else {
                            std::cmp::Ordering::Equal
                        }
                    });
                    res.extend(h);
                    continue;
                }
                T_QUANTILE => {
                    let mut vals: Vec<f64> = g.heap.iter().map(|x| x.1).collect();
                    quantile(scalar_param, &mut vals)
                }
                _ => g.value,
            };
            res.push((g.labels, value));
        }
        uniq.check_unique(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

/// `%v` of a float in Go, for the overflow message.
fn go_float_v(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f:e}")
    }
}
