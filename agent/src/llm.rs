//! LLM usage: one aggregator fed by two doors — OTLP/HTTP metrics from
//! OpenTelemetry GenAI instrumentation ([`otlp`]) and JSON usage events
//! ([`usage`]) — and rendered as Prometheus series.
//!
//! The aggregator holds cumulative state: cumulative OTLP points replace a
//! series' value, delta points and usage events add to it. It is bounded by
//! `llm.max_series`; series past the bound are refused and counted
//! (`vigil_agent_llm_series_refused_total`), never grown without limit.

pub mod genai;
pub mod otlp;
pub mod prices;
pub mod topn;
pub mod usage;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use vigil_wire::exposition::format_value;
use vigil_wire::remote_write::MetricType;
use vigil_wire::{Labels, METRIC_NAME_LABEL};

use crate::Collector;
use crate::config::{LlmConfig, ModelPrice};
use crate::family::Family;

/// Collector name of the LLM aggregates.
pub const SOURCE: &str = "llm";

/// The state of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesState {
    Value(f64),
    /// Explicit-bucket histogram: per-bucket (not cumulative) counts, one
    /// more than `bounds` (the +Inf bucket).
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug, Clone)]
struct FamilyState {
    help: String,
    kind: MetricType,
    /// Key: the metric-name suffix within the family (`""`, `_sum`,
    /// `_count` for summaries) and the labels without `__name__`.
    series: BTreeMap<(String, Labels), SeriesState>,
}

/// Why an update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("metric {name} already has type {existing}, not {new}")]
    TypeConflict {
        name: String,
        existing: &'static str,
        new: &'static str,
    },
    #[error("series limit of {0} reached")]
    SeriesLimit(usize),
    #[error("histogram has {counts} bucket counts for {bounds} bounds")]
    BadHistogram { counts: usize, bounds: usize },
}

/// What one histogram point added: its sum, count and per-bucket counts
/// (not cumulative, one more than the bounds).
#[derive(Debug, Clone, PartialEq)]
pub struct HistIncrease {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<u64>,
}

/// A series taken out of the exposition with its state (see [`topn`]).
#[derive(Debug, Clone)]
pub struct Parked {
    family: String,
    key: (String, Labels),
    state: SeriesState,
}

/// Cumulative series keyed by family name.
#[derive(Debug)]
pub struct Aggregator {
    families: BTreeMap<String, FamilyState>,
    series_count: usize,
    max_series: usize,
}

impl Aggregator {
    pub fn new(max_series: usize) -> Self {
        Self {
            families: BTreeMap::new(),
            series_count: 0,
            max_series,
        }
    }

    /// Sets (`add == false`) or adds to (`add == true`) a plain value.
    #[allow(clippy::too_many_arguments)]
    pub fn value(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        suffix: &str,
        labels: Labels,
        v: f64,
        add: bool,
    ) -> Result<(), UpdateError> {
        let st = self.entry(name, help, kind, suffix, labels)?;
        match st {
            SeriesState::Value(cur) if add && !cur.is_nan() => *cur += v,
            other => *other = SeriesState::Value(v),
        }
        Ok(())
    }

    /// Sets or adds a whole histogram (OTLP points).
    #[allow(clippy::too_many_arguments)]
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: Labels,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        count: u64,
        add: bool,
    ) -> Result<HistIncrease, UpdateError> {
        if counts.len() != bounds.len() + 1 {
            return Err(UpdateError::BadHistogram {
                counts: counts.len(),
                bounds: bounds.len(),
            });
        }
        let st = self.entry(name, help, MetricType::Histogram, "", labels)?;
        let increase = match st {
            SeriesState::Histogram {
                bounds: b,
                counts: c,
                sum: s,
                count: n,
            } if add && b.as_slice() == bounds => {
                for (dst, src) in c.iter_mut().zip(counts) {
                    *dst += src;
                }
                *s += sum;
                *n += count;
                HistIncrease {
                    sum,
                    count,
                    buckets: counts.to_vec(),
                }
            }
            other => {
                // A cumulative point replaces the state: what it adds is the
                // difference, unless the count went down (the sender
                // restarted and counts from zero again).
                let increase = match other {
                    SeriesState::Histogram {
                        bounds: b,
                        counts: c,
                        sum: s,
                        count: n,
                    } if count >= *n => HistIncrease {
                        sum: sum - *s,
                        count: count - *n,
                        buckets: if b.as_slice() == bounds {
                            counts
                                .iter()
                                .zip(c.iter())
                                .map(|(new, old)| new.saturating_sub(*old))
                                .collect()
                        } else {
                            // New bounds: the increase cannot be placed in
                            // buckets, so it goes to +Inf.
                            let mut v = vec![0; counts.len()];
                            v[counts.len() - 1] = count - *n;
                            v
                        },
                    },
                    _ => HistIncrease {
                        sum,
                        count,
                        buckets: counts.to_vec(),
                    },
                };
                *other = SeriesState::Histogram {
                    bounds: bounds.to_vec(),
                    counts: counts.to_vec(),
                    sum,
                    count,
                };
                increase
            }
        };
        Ok(increase)
    }

    /// Adds one observation to a histogram with the given bounds.
    pub fn observe(
        &mut self,
        name: &str,
        help: &str,
        labels: Labels,
        bounds: &[f64],
        v: f64,
    ) -> Result<(), UpdateError> {
        let mut counts = vec![0u64; bounds.len() + 1];
        let idx = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        counts[idx] = 1;
        self.histogram(name, help, labels, bounds, &counts, v, 1, true)
            .map(|_| ())
    }

    /// Takes every series of `family` whose `label` is `value` out of the
    /// aggregator, with its state, so it can be put back unchanged.
    pub fn take_series(&mut self, family: &str, label: &str, value: &str) -> Vec<Parked> {
        let Some(fam) = self.families.get_mut(family) else {
            return Vec::new();
        };
        let keys: Vec<(String, Labels)> = fam
            .series
            .keys()
            .filter(|(_, l)| l.get(label) == Some(value))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(state) = fam.series.remove(&key) {
                self.series_count -= 1;
                out.push(Parked {
                    family: family.to_string(),
                    key,
                    state,
                });
            }
        }
        out
    }

    /// Puts parked series back. A series that was written again meanwhile
    /// keeps its newer state; one over the series limit is refused.
    pub fn restore_series(&mut self, parked: Vec<Parked>) -> Vec<UpdateError> {
        let mut errors = Vec::new();
        for p in parked {
            let Some(fam) = self.families.get_mut(&p.family) else {
                continue;
            };
            if fam.series.contains_key(&p.key) {
                continue;
            }
            if self.series_count >= self.max_series {
                errors.push(UpdateError::SeriesLimit(self.max_series));
                continue;
            }
            self.series_count += 1;
            fam.series.insert(p.key, p.state);
        }
        errors
    }

    fn entry(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        suffix: &str,
        labels: Labels,
    ) -> Result<&mut SeriesState, UpdateError> {
        let fam = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| FamilyState {
                help: help.to_string(),
                kind,
                series: BTreeMap::new(),
            });
        if fam.kind != kind {
            return Err(UpdateError::TypeConflict {
                name: name.to_string(),
                existing: fam.kind.as_prometheus_str(),
                new: kind.as_prometheus_str(),
            });
        }
        let key = (suffix.to_string(), labels);
        if !fam.series.contains_key(&key) {
            if self.series_count >= self.max_series {
                return Err(UpdateError::SeriesLimit(self.max_series));
            }
            self.series_count += 1;
        }
        Ok(fam
            .series
            .entry(key)
            .or_insert(SeriesState::Value(f64::NAN)))
    }

    /// Renders every family (histograms as `_bucket{le}`, `_sum`, `_count`).
    pub fn families(&self) -> Vec<Family> {
        let mut out = Vec::with_capacity(self.families.len());
        for (name, fam) in &self.families {
            let mut f = Family::new(name.clone(), fam.help.clone(), fam.kind);
            for ((suffix, labels), st) in &fam.series {
                let with_name = |metric: String, extra: Option<(&str, String)>| {
                    let mut l = labels.clone();
                    l.set(METRIC_NAME_LABEL, metric);
                    if let Some((k, v)) = extra {
                        l.set(k, v);
                    }
                    l
                };
                match st {
                    SeriesState::Value(v) => {
                        f.push_labels(with_name(format!("{name}{suffix}"), None), *v)
                    }
                    SeriesState::Histogram {
                        bounds,
                        counts,
                        sum,
                        count,
                    } => {
                        let mut cum = 0u64;
                        for (i, c) in counts.iter().enumerate() {
                            cum += c;
                            let le = bounds
                                .get(i)
                                .map_or_else(|| "+Inf".to_string(), |b| format_value(*b));
                            f.push_labels(
                                with_name(format!("{name}_bucket"), Some(("le", le))),
                                cum as f64,
                            );
                        }
                        f.push_labels(with_name(format!("{name}_sum"), None), *sum);
                        f.push_labels(with_name(format!("{name}_count"), None), *count as f64);
                    }
                }
            }
            out.push(f);
        }
        out
    }
}

/// Counters about the LLM doors themselves.
#[derive(Debug, Default)]
pub struct LlmStats {
    pub events_accepted: AtomicU64,
    pub events_rejected: AtomicU64,
    pub otlp_points_accepted: AtomicU64,
    pub otlp_points_rejected: AtomicU64,
    pub series_refused: AtomicU64,
    /// OTLP data refused, by reason (`exemplar` counts exemplars not kept).
    pub otlp_rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// The bounded labels' state.
#[derive(Debug)]
pub struct Bounds {
    pub tenants: topn::TopN,
    pub agents: topn::TopN,
    pub tools: topn::TopN,
}

/// Shared LLM state: the aggregator, the price table and counters.
pub struct LlmState {
    pub(crate) agg: Mutex<Aggregator>,
    /// The built-in table (unless turned off) overlaid with `llm.prices`.
    pub(crate) prices: BTreeMap<String, ModelPrice>,
    pub(crate) default_prices: bool,
    pub(crate) token_buckets: Vec<f64>,
    pub(crate) duration_buckets: Vec<f64>,
    pub(crate) ttft_buckets: Vec<f64>,
    /// The bounded `tenant`, `agent` and `tool` labels. Locked after `agg`.
    pub(crate) bounds: Mutex<Bounds>,
    /// (provider, model) pairs already logged as unpriced.
    pub(crate) unpriced_logged: Mutex<HashSet<(String, String)>>,
    pub stats: LlmStats,
}

impl LlmState {
    pub fn new(cfg: &LlmConfig) -> Self {
        Self {
            agg: Mutex::new(Aggregator::new(cfg.max_series)),
            prices: {
                let mut table = if cfg.default_prices {
                    prices::default_prices()
                } else {
                    BTreeMap::new()
                };
                table.extend(cfg.prices.iter().map(|(k, v)| (k.clone(), *v)));
                table
            },
            default_prices: cfg.default_prices,
            token_buckets: cfg.token_buckets.clone(),
            duration_buckets: cfg.duration_buckets.clone(),
            ttft_buckets: cfg.ttft_buckets.clone(),
            bounds: Mutex::new(Bounds {
                tenants: topn::TopN::new(
                    "tenant",
                    genai::TENANT_FAMILIES,
                    cfg.top_tenants,
                    cfg.pinned_tenants.iter().cloned(),
                ),
                agents: topn::TopN::new("agent", genai::AGENT_FAMILIES, cfg.top_agents, []),
                tools: topn::TopN::new("tool", genai::TOOL_FAMILIES, cfg.top_tools, []),
            }),
            unpriced_logged: Mutex::new(HashSet::new()),
            stats: LlmStats::default(),
        }
    }

    /// Current aggregates as families.
    pub fn snapshot(&self) -> Vec<Family> {
        self.agg.lock().families()
    }

    /// Price of a model: `provider/model` first, then `model`; then the
    /// same for the model's name without a release suffix
    /// (`gpt-4o-2024-08-06` is priced as `gpt-4o` unless listed itself).
    pub fn price(&self, provider: &str, model: &str) -> Option<ModelPrice> {
        prices::model_keys(model).into_iter().find_map(|m| {
            self.prices
                .get(&format!("{provider}/{m}"))
                .or_else(|| self.prices.get(m))
                .copied()
        })
    }

    /// Translates an OTLP export request into the aggregates.
    pub fn ingest_otlp(
        &self,
        req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
    ) -> otlp::OtlpOutcome {
        let mut agg = self.agg.lock();
        otlp::ingest(req, &mut agg, self, |e| self.refused(e))
    }

    /// Logs, once per model, that a model has no price.
    pub(crate) fn log_unpriced(&self, provider: &str, model: &str) {
        if self
            .unpriced_logged
            .lock()
            .insert((provider.to_string(), model.to_string()))
        {
            tracing::warn!(
                provider,
                model,
                "no price configured for this model; cost not counted, requests counted in llm_unpriced_requests_total (set llm.prices; logged once)"
            );
        }
    }

    /// Counts what an OTLP request had refused, by reason.
    pub fn otlp_refusals(&self, outcome: &otlp::OtlpOutcome) {
        let mut by = self.stats.otlp_rejected.lock();
        for (reason, n) in &outcome.rejected_by_reason {
            *by.entry(reason).or_insert(0) += n;
        }
        if outcome.exemplars_dropped > 0 {
            *by.entry("exemplar").or_insert(0) += outcome.exemplars_dropped;
        }
    }

    /// Counts a refused update (logged at debug: the counter is the signal).
    pub(crate) fn refused(&self, e: &UpdateError) {
        if matches!(e, UpdateError::SeriesLimit(_)) {
            self.stats.series_refused.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(error = %e, "LLM series update refused");
    }

    /// The `vigil_agent_llm_*` families.
    pub fn self_families(&self) -> Vec<Family> {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut events = Family::counter(
            "vigil_agent_llm_events_total",
            "Usage events received, by outcome.",
        );
        events.push(&[("outcome", "accepted")], get(&s.events_accepted));
        events.push(&[("outcome", "rejected")], get(&s.events_rejected));
        let mut points = Family::counter(
            "vigil_agent_otlp_points_total",
            "OTLP data points received, by outcome.",
        );
        points.push(&[("outcome", "accepted")], get(&s.otlp_points_accepted));
        points.push(&[("outcome", "rejected")], get(&s.otlp_points_rejected));
        let mut table = Family::new(
            "vigil_agent_llm_price_table_info",
            "The price table in use: as_of is the date of the built-in list prices, empty when llm.default_prices is off.",
            MetricType::Gauge,
        );
        let as_of = if self.default_prices {
            prices::PRICES_AS_OF
        } else {
            ""
        };
        table.push(&[("as_of", as_of)], 1.0);
        let mut rejected = Family::counter(
            "vigil_agent_otlp_rejected_total",
            "OTLP data refused, by reason: data points (exponential_histogram, series_limit, type_conflict, bad_histogram) and exemplars not kept (exemplar).",
        );
        for (reason, n) in s.otlp_rejected.lock().iter() {
            rejected.push(&[("reason", reason)], *n as f64);
        }
        vec![
            events,
            points,
            table,
            rejected,
            Family::single(
                "vigil_agent_llm_series_refused_total",
                "LLM series updates refused because llm.max_series was reached.",
                MetricType::Counter,
                get(&s.series_refused),
            ),
        ]
    }
}

impl genai::Pricing for LlmState {
    fn price(&self, provider: &str, model: &str) -> Option<ModelPrice> {
        LlmState::price(self, provider, model)
    }

    fn unpriced(&self, provider: &str, model: &str) {
        self.log_unpriced(provider, model);
    }

    fn bounded(
        &self,
        which: genai::Bounded,
        name: &str,
        weight: f64,
        agg: &mut Aggregator,
    ) -> String {
        let mut b = self.bounds.lock();
        let top = match which {
            genai::Bounded::Tenant => &mut b.tenants,
            genai::Bounded::Agent => &mut b.agents,
            genai::Bounded::Tool => &mut b.tools,
        };
        top.label_for(name, weight, agg)
    }
}

/// Publishes the LLM aggregates on their interval, and once more at
/// shutdown so nothing received is lost.
pub struct LlmCollector {
    state: Arc<LlmState>,
}

impl LlmCollector {
    pub fn new(state: Arc<LlmState>) -> Self {
        Self { state }
    }
}

impl Collector for LlmCollector {
    fn name(&self) -> String {
        SOURCE.into()
    }

    async fn collect(&mut self) -> Vec<Family> {
        self.state.snapshot()
    }

    fn flush_on_shutdown(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let mut a = Aggregator::new(100);
        for v in [0.5, 1.5, 3.0, 100.0] {
            a.observe("d_seconds", "h", l(&[("m", "x")]), &[1.0, 2.0, 4.0], v)
                .expect("observe");
        }
        let f = a.families();
        let text = crate::family::render_text(f.iter());
        assert!(
            text.contains("d_seconds_bucket{le=\"1\",m=\"x\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("d_seconds_bucket{le=\"4\",m=\"x\"} 3\n"));
        assert!(text.contains("d_seconds_bucket{le=\"+Inf\",m=\"x\"} 4\n"));
        assert!(text.contains("d_seconds_sum{m=\"x\"} 105\n"));
        assert!(text.contains("d_seconds_count{m=\"x\"} 4\n"));
    }

    #[test]
    fn delta_adds_and_cumulative_replaces() {
        let mut a = Aggregator::new(100);
        a.value("c_total", "", MetricType::Counter, "", l(&[]), 5.0, true)
            .expect("add");
        a.value("c_total", "", MetricType::Counter, "", l(&[]), 2.0, true)
            .expect("add");
        a.value("g", "", MetricType::Gauge, "", l(&[]), 7.0, false)
            .expect("set");
        a.value("g", "", MetricType::Gauge, "", l(&[]), 3.0, false)
            .expect("set");
        let f = a.families();
        assert_eq!(f[0].series[0].value, 7.0);
        assert_eq!(f[1].series[0].value, 3.0);
    }

    #[test]
    fn configured_prices_override_the_built_in_table() {
        let mut cfg = LlmConfig::default();
        cfg.prices
            .insert("gpt-4o".into(), ModelPrice::new(1.0, 2.0));
        let st = LlmState::new(&cfg);
        assert_eq!(st.price("openai", "gpt-4o").map(|p| p.input), Some(1.0));
        assert_eq!(
            st.price("openai", "claude-sonnet-4-20250514")
                .map(|p| p.output),
            Some(15.0),
            "a pinned release is priced from the built-in table"
        );
        cfg.default_prices = false;
        let st = LlmState::new(&cfg);
        assert_eq!(st.price("anthropic", "claude-sonnet-4"), None);
        assert!(st.price("openai", "gpt-4o").is_some());
    }

    #[test]
    fn limits_and_type_conflicts_are_refused() {
        let mut a = Aggregator::new(1);
        a.value("a", "", MetricType::Gauge, "", l(&[("x", "1")]), 1.0, false)
            .expect("first");
        assert_eq!(
            a.value("a", "", MetricType::Gauge, "", l(&[("x", "2")]), 1.0, false),
            Err(UpdateError::SeriesLimit(1))
        );
        assert!(matches!(
            a.value(
                "a",
                "",
                MetricType::Counter,
                "",
                l(&[("x", "1")]),
                1.0,
                true
            ),
            Err(UpdateError::TypeConflict { .. })
        ));
    }
}
