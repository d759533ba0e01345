//! Cardinality budgets on ingest: who an ingest request counts against, what
//! the sender is told when new series are refused, the counters behind
//! `VigilCardinalityLimitHit`, and the two status endpoints SREs read
//! (`/api/v1/status/tsdb` in Prometheus's format, `/api/v1/status/limits`).
//!
//! The budgets themselves are enforced by the store at the moment it would
//! create a series ([`vigil_tsdb::Db::append_with_budget`]), so they are
//! exact under concurrent requests and cost nothing for existing series.
//! Refused metric names come from senders and are unbounded, so they never
//! become metric labels: the counters are labelled by budget only, and the
//! names live in a bounded table served by `/api/v1/status/limits`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};
use vigil_tsdb::{AppendOutcome, Budget, SeriesLimit, SeriesLimits};

use crate::params::now_ms;
use crate::server::App;

/// Offenders remembered for `/api/v1/status/limits`; past it the one
/// refused longest ago is forgotten.
const MAX_OFFENDERS: usize = 1000;
/// Metrics named in one 400 answer.
const MAX_MESSAGE_METRICS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OffenderKey {
    limit: SeriesLimit,
    metric: String,
    agent: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy)]
struct OffenderStats {
    series: u64,
    last_ms: i64,
}

/// The address an ingest request came from, for agents without a token.
/// Served as `ConnectInfo<PeerAddr>` by both the plain and the TLS
/// listener (axum only provides `SocketAddr` for its own TCP listener).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// The budgets in force and what they refused.
pub struct Cardinality {
    limits: Arc<SeriesLimits>,
    /// New series refused, by [`SeriesLimit`] (index of `SeriesLimit::ALL`).
    rejected_series: [AtomicU64; 3],
    offenders: Mutex<HashMap<OffenderKey, OffenderStats>>,
}

fn slot(limit: SeriesLimit) -> usize {
    match limit {
        SeriesLimit::PerMetric => 0,
        SeriesLimit::PerAgent => 1,
        SeriesLimit::Total => 2,
    }
}

impl Cardinality {
    pub fn new(limits: SeriesLimits) -> Self {
        Self {
            limits: Arc::new(limits),
            rejected_series: Default::default(),
            offenders: Mutex::new(HashMap::new()),
        }
    }

    /// The budget an ingest request runs under. The agent is the ingest
    /// token's name when authentication is on, else the peer's IP address
    /// (its port changes with every connection).
    pub fn budget(&self, agent: Option<Arc<str>>, peer: Option<SocketAddr>) -> Budget {
        let owner = agent.or_else(|| peer.map(|p| Arc::from(p.ip().to_string())));
        Budget {
            limits: self.limits.clone(),
            owner,
        }
    }

    fn limit_value(&self, limit: SeriesLimit, metric: &str) -> usize {
        match limit {
            SeriesLimit::PerMetric => self.limits.metric_limit(metric),
            SeriesLimit::PerAgent => self.limits.max_per_owner,
            SeriesLimit::Total => self.limits.max_total,
        }
    }

    /// Counts the series `outcome` refused and returns the lines that tell
    /// the sender why (empty when nothing was refused).
    pub fn observe(&self, outcome: &AppendOutcome, agent: Option<&Arc<str>>) -> String {
        if outcome.series_limited.is_empty() {
            return String::new();
        }
        let now = now_ms();
        let mut msg = String::new();
        let mut offenders = self.offenders.lock();
        for (i, ((limit, metric), series)) in outcome.series_limited.iter().enumerate() {
            self.rejected_series[slot(*limit)].fetch_add(*series, Ordering::Relaxed);
            let key = OffenderKey {
                limit: *limit,
                metric: metric.clone(),
                agent: agent.cloned(),
            };
            if !offenders.contains_key(&key) {
                // First refusal of this metric (since it was last forgotten):
                // worth a warning; repeats are only counted.
                tracing::warn!(limit = %limit, metric = %metric, agent = ?agent.map(|a| a.to_string()), budget = self.limit_value(*limit, metric), "series over the cardinality budget refused");
                if offenders.len() >= MAX_OFFENDERS
                    && let Some(oldest) = offenders
                        .iter()
                        .min_by_key(|(_, s)| s.last_ms)
                        .map(|(k, _)| k.clone())
                {
                    offenders.remove(&oldest);
                }
            }
            let e = offenders.entry(key).or_insert(OffenderStats {
                series: 0,
                last_ms: now,
            });
            e.series += series;
            e.last_ms = now;
            if i < MAX_MESSAGE_METRICS {
                let budget = self.limit_value(*limit, metric);
                let _ = match limit {
                    SeriesLimit::PerMetric => writeln!(
                        msg,
                        "per-metric series limit of {budget} exceeded: {series} new series of {metric:?} refused"
                    ),
                    SeriesLimit::PerAgent => writeln!(
                        msg,
                        "per-agent series limit of {budget} exceeded for agent {:?}: {series} new series of {metric:?} refused",
                        agent.map(|a| a.to_string()).unwrap_or_default()
                    ),
                    SeriesLimit::Total => writeln!(
                        msg,
                        "total series limit of {budget} exceeded: {series} new series of {metric:?} refused"
                    ),
                };
            } else if i == MAX_MESSAGE_METRICS {
                let _ = writeln!(
                    msg,
                    "... and {} more metrics",
                    outcome.series_limited.len() - MAX_MESSAGE_METRICS
                );
            }
        }
        msg
    }

    /// `vigil_cardinality_*` metrics; every budget's counter is present from
    /// the start so `increase()` sees the first refusal.
    pub fn render(&self, out: &mut String) {
        crate::telemetry::labelled_counter(
            out,
            "vigil_cardinality_rejected_series_total",
            "New series refused because a cardinality budget was reached, by budget.",
            "limit",
            SeriesLimit::ALL.iter().map(|l| {
                (
                    l.as_str().to_string(),
                    self.rejected_series[slot(*l)].load(Ordering::Relaxed),
                )
            }),
        );
        let name = "vigil_cardinality_series_limit";
        let _ = writeln!(
            out,
            "# HELP {name} Configured cardinality budgets in series (0 = unlimited).\n# TYPE {name} gauge"
        );
        for (l, v) in [
            (SeriesLimit::PerMetric, self.limits.max_per_metric),
            (SeriesLimit::PerAgent, self.limits.max_per_owner),
            (SeriesLimit::Total, self.limits.max_total),
        ] {
            let _ = writeln!(out, "{name}{{limit=\"{l}\"}} {v}");
        }
    }

    fn status(&self, app: &App) -> Value {
        let card = app.db.cardinality(10);
        let mut offenders: Vec<(OffenderKey, OffenderStats)> = self
            .offenders
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        offenders.sort_by(|a, b| {
            b.1.series
                .cmp(&a.1.series)
                .then_with(|| a.0.metric.cmp(&b.0.metric))
        });
        offenders.truncate(100);
        let l = &self.limits;
        json!({
            "limits": {
                "maxSeriesTotal": l.max_total,
                "maxSeriesPerMetric": l.max_per_metric,
                "maxSeriesPerAgent": l.max_per_owner,
                "maxSeriesPerMetricOverrides": l.per_metric,
            },
            "numSeries": card.num_series,
            "seriesCountByMetricName": name_values(&card.series_count_by_metric_name),
            "seriesCountByAgent": name_values(&card.series_count_by_owner),
            "rejectedSeriesTotal": SeriesLimit::ALL.iter().map(|l| (l.as_str().to_string(), json!(self.rejected_series[slot(*l)].load(Ordering::Relaxed)))).collect::<serde_json::Map<_, _>>(),
            "topRejected": offenders.iter().map(|(k, s)| json!({
                "limit": k.limit.as_str(),
                "metric": k.metric,
                "agent": k.agent.as_deref(),
                "budget": self.limit_value(k.limit, &k.metric),
                "rejectedSeries": s.series,
                "lastRejected": rfc3339(s.last_ms),
            })).collect::<Vec<_>>(),
        })
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn name_values(v: &[(String, u64)]) -> Vec<Value> {
    v.iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}

#[derive(serde::Deserialize, Default)]
pub struct TsdbStatusParams {
    /// Entries per list (Prometheus's `limit`, default 10).
    limit: Option<usize>,
}

/// `GET /api/v1/status/tsdb`, as Prometheus answers it.
pub async fn status_tsdb(
    State(app): State<Arc<App>>,
    axum::extract::Query(params): axum::extract::Query<TsdbStatusParams>,
) -> Response {
    let limit = params.limit.unwrap_or(10);
    if limit == 0 {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "errorType": "bad_data", "error": "limit must be a positive number"})),
        )
            .into_response();
    }
    let db = app.db.clone();
    let Ok(c) = tokio::task::spawn_blocking(move || db.cardinality(limit)).await else {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"status": "error", "errorType": "internal", "error": "internal error"})),
        )
            .into_response();
    };
    Json(json!({
        "status": "success",
        "data": {
            "headStats": {
                "numSeries": c.num_series,
                "numLabelPairs": c.num_label_pairs,
                "chunkCount": c.chunk_count,
                "minTime": c.min_time,
                "maxTime": c.max_time,
            },
            "seriesCountByMetricName": name_values(&c.series_count_by_metric_name),
            "labelValueCountByLabelName": name_values(&c.label_value_count_by_label_name),
            "memoryInBytesByLabelName": name_values(&c.memory_in_bytes_by_label_name),
            "seriesCountByLabelValuePair": name_values(&c.series_count_by_label_value_pair),
        }
    }))
    .into_response()
}

/// `GET /api/v1/status/limits`: the budgets, series per agent, and the
/// metrics refused most.
pub async fn status_limits(State(app): State<Arc<App>>) -> Response {
    let worker = app.clone();
    match tokio::task::spawn_blocking(move || worker.cardinality.status(&worker)).await {
        Ok(data) => Json(json!({"status": "success", "data": data})).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"status": "error", "errorType": "internal", "error": "internal error"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_tsdb::RejectReason;

    fn outcome(entries: &[(SeriesLimit, &str, u64)], samples: u64) -> AppendOutcome {
        let mut o = AppendOutcome {
            accepted: 5,
            ..AppendOutcome::default()
        };
        for (l, m, n) in entries {
            o.series_limited.insert((*l, m.to_string()), *n);
            *o.rejected.entry(RejectReason::SeriesLimit(*l)).or_default() += samples;
        }
        o
    }

    #[test]
    fn refusals_are_counted_by_budget_and_explained() {
        let c = Cardinality::new(SeriesLimits {
            max_per_metric: 2,
            per_metric: HashMap::from([("big".to_string(), 7)]),
            max_per_owner: 9,
            ..SeriesLimits::default()
        });
        assert_eq!(c.observe(&AppendOutcome::default(), None), "");
        let agent: Arc<str> = Arc::from("agent-1");
        let msg = c.observe(
            &outcome(
                &[
                    (SeriesLimit::PerMetric, "big", 3),
                    (SeriesLimit::PerAgent, "x", 1),
                ],
                4,
            ),
            Some(&agent),
        );
        assert_eq!(
            msg,
            "per-metric series limit of 7 exceeded: 3 new series of \"big\" refused\n\
             per-agent series limit of 9 exceeded for agent \"agent-1\": 1 new series of \"x\" refused\n"
        );
        let mut out = String::new();
        c.render(&mut out);
        assert!(
            out.contains("vigil_cardinality_rejected_series_total{limit=\"per_metric\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("vigil_cardinality_rejected_series_total{limit=\"per_agent\"} 1\n"));
        assert!(out.contains("vigil_cardinality_rejected_series_total{limit=\"total\"} 0\n"));
        assert!(out.contains("vigil_cardinality_series_limit{limit=\"per_metric\"} 2\n"));
    }

    #[test]
    fn long_answers_and_the_offender_table_are_bounded() {
        let c = Cardinality::new(SeriesLimits {
            max_total: 1,
            ..SeriesLimits::default()
        });
        let names: Vec<String> = (0..MAX_OFFENDERS + 50).map(|i| format!("m{i}")).collect();
        let entries: Vec<(SeriesLimit, &str, u64)> = names
            .iter()
            .map(|n| (SeriesLimit::Total, n.as_str(), 1))
            .collect();
        let msg = c.observe(&outcome(&entries, 1), None);
        assert_eq!(msg.lines().count(), MAX_MESSAGE_METRICS + 1);
        assert!(msg.ends_with(&format!("... and {} more metrics\n", names.len() - 10)));
        assert_eq!(c.offenders.lock().len(), MAX_OFFENDERS);
        assert_eq!(
            c.rejected_series[slot(SeriesLimit::Total)].load(Ordering::Relaxed),
            names.len() as u64
        );
    }

    #[test]
    fn the_agent_is_the_token_name_else_the_peer_ip() {
        let c = Cardinality::new(SeriesLimits::default());
        let peer: SocketAddr = "10.1.2.3:45678".parse().expect("addr");
        assert_eq!(
            c.budget(Some(Arc::from("agent-1")), Some(peer))
                .owner
                .as_deref(),
            Some("agent-1")
        );
        assert_eq!(
            c.budget(None, Some(peer)).owner.as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(c.budget(None, None).owner, None);
    }
}
