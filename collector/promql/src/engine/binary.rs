//! Binary operators: arithmetic, comparison (filtering or `bool`), and the
//! set operators, with Prometheus's vector-matching rules (`on`,
//! `ignoring`, `group_left`, `group_right`).

use std::collections::HashMap;
use std::rc::Rc;

use promql_parser::parser::ast::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use vigil_wire::{Labels, METRIC_NAME_LABEL};

use super::{
    Evaluator, FastMap, FastSet, Interner, L, LabelCache, QueryError, StepVec, Steps, Val,
    labels_string,
};

/// How two vectors are matched.
struct Matching {
    card: Card,
    /// `on(...)` when true, else `ignoring(...)`.
    on: bool,
    labels: Vec<String>,
    include: Vec<String>,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

fn matching(m: &Option<BinModifier>) -> Matching {
    let (on, labels) = match m.as_ref().and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
        Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
        None => (false, Vec::new()),
    };
    let (card, include) = match m.as_ref().map(|m| &m.card) {
        Some(VectorMatchCardinality::ManyToOne(ls)) => (Card::ManyToOne, ls.labels.clone()),
        Some(VectorMatchCardinality::OneToMany(ls)) => (Card::OneToMany, ls.labels.clone()),
        _ => (Card::OneToOne, Vec::new()),
    };
    Matching {
        card,
        on,
        labels,
        include,
    }
}

/// The matching signature: the `on` labels, or every label except the
/// `ignoring` ones and the metric name.
fn signature(l: &Labels, m: &Matching) -> Vec<(String, String)> {
    l.iter()
        .filter(|x| {
            if m.on {
                m.labels.contains(&x.name)
            } else {
                x.name != METRIC_NAME_LABEL && !m.labels.contains(&x.name)
            }
        })
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect()
}

/// Arithmetic drops the metric name; comparisons and `atan2` keep it
/// (Prometheus 2.42's `shouldDropMetricName`).
fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW)
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Go's `math.Mod`: the sign follows the dividend, like Rust's `%`.
fn arith(op: TokenId, l: f64, r: f64) -> f64 {
    match op {
        T_ADD => l + r,
        T_SUB => l - r,
        T_MUL => l * r,
        T_DIV => l / r,
        T_MOD => l % r,
        T_POW => l.powf(r),
        T_ATAN2 => l.atan2(r),
        _ => f64::NAN,
    }
}

fn compare(op: TokenId, l: f64, r: f64) -> bool {
    match op {
        T_EQLC => l == r,
        T_NEQ => l != r,
        T_GTR => l > r,
        T_LSS => l < r,
        T_GTE => l >= r,
        T_LTE => l <= r,
        _ => false,
    }
}

/// `vectorElemBinop`: the value and whether a comparison keeps the sample.
fn elem(op: TokenId, l: f64, r: f64) -> (f64, bool) {
    if is_comparison(op) {
        (l, compare(op, l, r))
    } else {
        (arith(op, l, r), true)
    }
}

pub(super) fn eval_binary(
    ev: &mut Evaluator<'_>,
    b: &BinaryExpr,
    steps: Steps,
) -> Result<Val, QueryError> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, steps)?;
    // `and` with an empty left side could short-circuit; Prometheus still
    // evaluates both sides, and so do we to surface the same errors.
    let rhs = ev.eval(&b.rhs, steps)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.iter()
                .zip(r.iter())
                .map(|(a, c)| {
                    if is_comparison(op) {
                        if compare(op, *a, *c) { 1.0 } else { 0.0 }
                    } else {
                        arith(op, *a, *c)
                    }
                })
                .collect(),
        )),
        (Val::Vector(l), Val::Scalar(r)) => vector_scalar(ev, op, &l, &r, false, return_bool),
        (Val::Scalar(l), Val::Vector(r)) => vector_scalar(ev, op, &r, &l, true, return_bool),
        (Val::Vector(l), Val::Vector(r)) => {
            let m = matching(&b.modifier);
            let mut out = Vec::with_capacity(l.len());
            let mut cache = SigCache::default();
            let mut results = ResultCache::default();
            // Inputs stay alive (iterated by reference) for the whole node, so
            // the pointer-keyed caches never see a reused address.
            let mut uniq = Interner::default();
            for (lv, rv) in l.iter().zip(r.iter()) {
                ev.check()?;
                let v = match op {
                    T_LAND => set_and(lv, rv, &m, &mut cache),
                    T_LOR => set_or(lv, rv, &m, &mut cache),
                    T_LUNLESS => set_unless(lv, rv, &m, &mut cache),
                    _ => vector_vector(op, lv, rv, &m, return_bool, &mut cache, &mut results)?,
                };
                uniq.check_unique(&v)?;
                out.push(v);
            }
            Ok(Val::Vector(out))
        }
        _ => Err(QueryError::bad(
            "binary expression must contain only scalar and instant vector types",
        )),
    }
}

fn vector_scalar(
    ev: &mut Evaluator<'_>,
    op: TokenId,
    vecs: &[StepVec],
    scalars: &[f64],
    swap: bool,
    return_bool: bool,
) -> Result<Val, QueryError> {
    let mut cache = LabelCache::default();
    let drop = drops_name(op) || return_bool;
    let mut out = Vec::with_capacity(vecs.len());
    let mut uniq = Interner::default();
    for (vec, s) in vecs.iter().zip(scalars) {
        ev.check()?;
        let mut o: StepVec = Vec::with_capacity(vec.len());
        for (l, v) in vec {
            let v = *v;
            let (lv, rv) = if swap { (*s, v) } else { (v, *s) };
            let (mut value, mut keep) = elem(op, lv, rv);
            // A comparison keeps the vector's value even when the scalar is
            // on the left.
            if is_comparison(op) && swap {
                value = rv;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if keep {
                let l = if drop { cache.drop_name(l) } else { l.clone() };
                o.push((l, value));
            }
        }
        uniq.check_unique(&o)?;
        out.push(o);
    }
    Ok(Val::Vector(out))
}

/// Signatures memoised per label set, as small ids.
#[derive(Default)]
struct SigCache {
    by_ptr: FastMap<*const Labels, Sig>,
    by_sig: HashMap<Vec<(String, String)>, Sig>,
}

impl SigCache {
    fn get(&mut self, l: &L, m: &Matching) -> Sig {
        if let Some(s) = self.by_ptr.get(&Rc::as_ptr(l)) {
            return *s;
        }
        let next = self.by_sig.len() as Sig;
        let id = *self.by_sig.entry(signature(l, m)).or_insert(next);
        self.by_ptr.insert(Rc::as_ptr(l), id);
        id
    }
}

/// A matching signature's id within one binary node.
type Sig = u32;

fn set_and(lhs: &StepVec, rhs: &StepVec, m: &Matching, c: &mut SigCache) -> StepVec {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: FastSet<Sig> = rhs.iter().map(|(l, _)| c.get(l, m)).collect();
    lhs.iter()
        .filter(|(l, _)| right.contains(&c.get(l, m)))
        .cloned()
        .collect()
}

fn set_or(lhs: &StepVec, rhs: &StepVec, m: &Matching, c: &mut SigCache) -> StepVec {
    let left: FastSet<Sig> = lhs.iter().map(|(l, _)| c.get(l, m)).collect();
    let mut out = lhs.clone();
    for (l, v) in rhs {
        if !left.contains(&c.get(l, m)) {
            out.push((l.clone(), *v));
        }
    }
    out
}

fn set_unless(lhs: &StepVec, rhs: &StepVec, m: &Matching, c: &mut SigCache) -> StepVec {
    if rhs.is_empty() {
        return lhs.clone();
    }
    let right: FastSet<Sig> = rhs.iter().map(|(l, _)| c.get(l, m)).collect();
    lhs.iter()
        .filter(|(l, _)| !right.contains(&c.get(l, m)))
        .cloned()
        .collect()
}

/// Prometheus's `resultMetric`.
fn result_metric(ls: &Labels, rs: &Labels, op: TokenId, m: &Matching, return_bool: bool) -> Labels {
    let mut out = ls.clone();
    if drops_name(op) || return_bool {
        out.remove(METRIC_NAME_LABEL);
    }
    if m.card == Card::OneToOne {
        if m.on {
            out = out.keep(&m.labels);
        } else {
            out = out.drop_names(&m.labels);
        }
    }
    for n in &m.include {
        match rs.get(n) {
            Some(v) => out.set(n, v),
            None => out.remove(n),
        }
    }
    out
}

/// Result label sets of one binary node, per (left, right) input pair, and
/// their ids for duplicate detection.
#[derive(Default)]
struct ResultCache {
    metrics: FastMap<(*const Labels, *const Labels), L>,
    ids: Interner,
}

fn vector_vector(
    op: TokenId,
    lhs: &StepVec,
    rhs: &StepVec,
    m: &Matching,
    return_bool: bool,
    c: &mut SigCache,
    results: &mut ResultCache,
) -> Result<StepVec, QueryError> {
    // Nothing can match, and Prometheus returns before checking either
    // side for duplicates.
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    // The "one" side is always treated as the right-hand side.
    let (many, one) = if m.card == Card::OneToMany {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    };
    let mut right: FastMap<Sig, (L, f64)> =
        FastMap::with_capacity_and_hasher(one.len(), Default::default());
    for (l, v) in one {
        let sig = c.get(l, m);
        if let Some((dup, _)) = right.get(&sig) {
            let side = if m.card == Card::OneToMany {
                "left"
            } else {
                "right"
            };
            let matched = if m.on {
                l.keep(&m.labels)
            } else {
                l.drop_names(&m.labels)
            };
            return Err(QueryError::exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                labels_string(&matched),
                labels_string(l),
                labels_string(dup)
            )));
        }
        right.insert(sig, (l.clone(), *v));
    }
    let mut matched: FastMap<Sig, FastSet<u32>> = FastMap::default();
    let mut out: StepVec = Vec::new();
    for (l, v) in many {
        let sig = c.get(l, m);
        let Some((rl, rv)) = right.get(&sig) else {
            continue;
        };
        let (vl, vr) = if m.card == Card::OneToMany {
            (*rv, *v)
        } else {
            (*v, *rv)
        };
        let (mut value, keep) = elem(op, vl, vr);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let metric = results
            .metrics
            .entry((Rc::as_ptr(l), Rc::as_ptr(rl)))
            .or_insert_with(|| Rc::new(result_metric(l, rl, op, m, return_bool)))
            .clone();
        match m.card {
            Card::OneToOne => {
                if matched.contains_key(&sig) {
                    return Err(QueryError::exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                matched.insert(sig, Default::default());
            }
            _ => {
                let set = matched.entry(sig).or_default();
                if !set.insert(results.ids.id(&metric)) {
                    return Err(QueryError::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
            }
        }
        out.push((metric, value));
    }
    Ok(out)
}
