//! Cardinality budgets and cardinality statistics.
//!
//! A budget limits the *creation* of series: a sample for a series that
//! already exists is always accepted, while a sample that would create a new
//! series past a budget is refused (as Prometheus's `sample_limit` and
//! Mimir's `max_global_series_per_metric` / `max_global_series_per_user`
//! behave). The writer thread checks the budgets at the moment it would
//! assign a new series id, against counts it keeps exact in memory (live
//! series, series per metric name from the inverted index, series per
//! owner), so concurrent requests can never overshoot a budget and the check
//! costs a few hash lookups, only on the rare path of a new series.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use vigil_wire::METRIC_NAME_LABEL;

use crate::head::State;

/// Budgets on the number of live series. Zero means unlimited everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Live series in the whole store.
    pub max_total: usize,
    /// Live series sharing one metric name (`__name__`).
    pub max_per_metric: usize,
    /// Per-metric overrides of `max_per_metric` (0 exempts the metric).
    pub per_metric: HashMap<String, usize>,
    /// Live series created by one owner (an agent); series loaded from disk
    /// at start-up belong to no owner.
    pub max_per_owner: usize,
}

impl SeriesLimits {
    /// The budget for series named `metric` (0 = unlimited).
    pub fn metric_limit(&self, metric: &str) -> usize {
        self.per_metric
            .get(metric)
            .copied()
            .unwrap_or(self.max_per_metric)
    }

    /// Whether any budget is set at all.
    pub fn is_unlimited(&self) -> bool {
        self.max_total == 0
            && self.max_per_owner == 0
            && self.max_per_metric == 0
            && self.per_metric.values().all(|&n| n == 0)
    }
}

/// The budgets an append runs under and who is appending.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    pub limits: Arc<SeriesLimits>,
    /// The agent creating series; `None` skips the per-owner budget.
    pub owner: Option<Arc<str>>,
}

/// Which budget refused a new series. Displayed as the `limit` label value
/// of the collector's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesLimit {
    PerMetric,
    PerAgent,
    Total,
}

impl SeriesLimit {
    pub const ALL: [SeriesLimit; 3] = [
        SeriesLimit::PerMetric,
        SeriesLimit::PerAgent,
        SeriesLimit::Total,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SeriesLimit::PerMetric => "per_metric",
            SeriesLimit::PerAgent => "per_agent",
            SeriesLimit::Total => "total",
        }
    }
}

impl fmt::Display for SeriesLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Series created within one commit group, not yet in [`State`].
#[derive(Default)]
pub(crate) struct GroupCreations {
    pub total: usize,
    pub by_metric: HashMap<String, usize>,
    pub by_owner: HashMap<Arc<str>, usize>,
}

impl GroupCreations {
    /// The budget that creating one more series named `metric` for `owner`
    /// would break, most specific first, so the answer names the culprit.
    pub fn check(&self, st: &State, budget: &Budget, metric: &str) -> Option<SeriesLimit> {
        let l = &budget.limits;
        let per_metric = l.metric_limit(metric);
        if per_metric > 0 {
            let now = st.index.count(METRIC_NAME_LABEL, metric)
                + self.by_metric.get(metric).copied().unwrap_or(0);
            if now >= per_metric {
                return Some(SeriesLimit::PerMetric);
            }
        }
        if l.max_per_owner > 0
            && let Some(owner) = &budget.owner
        {
            let now = st.owners.get(owner).copied().unwrap_or(0)
                + self.by_owner.get(owner).copied().unwrap_or(0);
            if now >= l.max_per_owner {
                return Some(SeriesLimit::PerAgent);
            }
        }
        if l.max_total > 0 && st.live + self.total >= l.max_total {
            return Some(SeriesLimit::Total);
        }
        None
    }

    pub fn record(&mut self, metric: &str, owner: Option<&Arc<str>>) {
        self.total += 1;
        *self.by_metric.entry(metric.to_string()).or_default() += 1;
        if let Some(o) = owner {
            *self.by_owner.entry(o.clone()).or_default() += 1;
        }
    }
}

/// The numbers behind Prometheus's `/api/v1/status/tsdb`, computed from the
/// in-memory index. Lists hold the `top` largest entries, largest first
/// (ties by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cardinality {
    pub num_series: u64,
    /// Distinct `name=value` pairs.
    pub num_label_pairs: u64,
    /// Chunks held in memory (open heads and cut chunks not yet stored).
    pub chunk_count: u64,
    /// Oldest and newest in-memory sample; `i64::MAX`/`i64::MIN` when the
    /// heads are empty, as Prometheus reports an empty head.
    pub min_time: i64,
    pub max_time: i64,
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
    /// Live series per owner (agent), all of them.
    pub series_count_by_owner: Vec<(String, u64)>,
}

fn top(mut v: Vec<(String, u64)>, n: usize) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// Like [`top`], formatting only the `name=value` strings that are kept.
fn top_pairs(mut v: Vec<(&str, &str, u64)>, n: usize) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1))));
    v.truncate(n);
    v.into_iter()
        .map(|(name, value, c)| (format!("{name}={value}"), c))
        .collect()
}

pub(crate) fn cardinality(st: &State, n: usize) -> Cardinality {
    let mut metrics = Vec::new();
    let mut values_per_name = Vec::new();
    let mut bytes_per_name = Vec::new();
    let mut pairs: Vec<(&str, &str, u64)> = Vec::new();
    let mut num_label_pairs = 0u64;
    for (name, values) in st.index.postings() {
        let mut bytes = 0u64;
        for (value, ids) in values {
            let count = ids.len() as u64;
            num_label_pairs += 1;
            if name == METRIC_NAME_LABEL {
                metrics.push((value.clone(), count));
            }
            pairs.push((name, value, count));
            bytes += value.len() as u64 * count;
        }
        values_per_name.push((name.clone(), values.len() as u64));
        bytes_per_name.push((name.clone(), bytes));
    }
    let (mut chunk_count, mut min_time, mut max_time) = (0u64, i64::MAX, i64::MIN);
    for s in st.series.iter().flatten() {
        chunk_count += s.pending.len() as u64 + u64::from(!s.head.is_empty());
        let first = s
            .pending
            .first()
            .map(|c| c.min_t)
            .or_else(|| (!s.head.is_empty()).then(|| s.head.first_t()));
        if let (Some(lo), Some((hi, _))) = (first, s.last) {
            min_time = min_time.min(lo);
            max_time = max_time.max(hi);
        }
    }
    let mut owners: Vec<(String, u64)> = st
        .owners
        .iter()
        .map(|(o, c)| (o.to_string(), *c as u64))
        .collect();
    owners.sort();
    Cardinality {
        num_series: st.live as u64,
        num_label_pairs,
        chunk_count,
        min_time,
        max_time,
        series_count_by_metric_name: top(metrics, n),
        label_value_count_by_label_name: top(values_per_name, n),
        memory_in_bytes_by_label_name: top(bytes_per_name, n),
        series_count_by_label_value_pair: top_pairs(pairs, n),
        series_count_by_owner: owners,
    }
}
