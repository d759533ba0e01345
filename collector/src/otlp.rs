//! OTLP metrics at the collector: `POST /v1/metrics` (OTLP/HTTP, protobuf
//! or JSON, gzip or not) and OTLP/gRPC `MetricsService/Export` (port 4317
//! by default, see `otlp` in the configuration). Both use the translation
//! the agent uses ([`vigil_otlp`]) and feed the remote_write ingest path:
//! the same limits, the same cardinality budgets, the same
//! `vigil_samples_rejected_total{reason}` counters, and the same ingest
//! tokens (gRPC reads the token from the `authorization` metadata).
//!
//! Prometheus's rules hold: points are cumulative (delta-temporality points
//! are refused by name with reason `delta_temporality`, as Prometheus
//! refuses them without its delta-to-cumulative conversion; SDKs default
//! to cumulative), exponential histograms are refused by name
//! (`exponential_histogram`), and the resource gives `job`, `instance`
//! and `target_info`. A point is translated into all of its samples or
//! refused whole. Whatever was refused is named in a 400 (gRPC
//! `INVALID_ARGUMENT`) whose details carry `rejected_data_points`; the
//! accepted points of that request are stored, as remote_write's are.
//! Exemplars are not stored: their points are, and the answer's
//! `partial_success` says so. A point flagged `FLAG_NO_RECORDED_VALUE`
//! writes stale markers, as Prometheus does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vigil_otlp::answer::{self, Answer};
use vigil_otlp::decode::Format;
use vigil_otlp::translate::{HistogramPoint, Sink, ValuePoint};
use vigil_otlp::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use vigil_tsdb::{MetricMeta, SeriesSamples};
use vigil_wire::labels::{LabelError, LabelLimits};
use vigil_wire::{Labels, Sample};

use crate::auth::{Access, AgentIdentity};
use crate::cardinality::PeerAddr;
use crate::ingest::{Stored, store};
use crate::params::now_ms;
use crate::server::App;

/// Why a point was not turned into samples.
#[derive(Debug, thiserror::Error)]
pub enum PointError {
    #[error(
        "delta temporality refused: Vigil stores cumulative series, as Prometheus does (set the SDK's OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative, or send through the agent, which accumulates deltas)"
    )]
    Delta,
    #[error("invalid labels: {0}")]
    Labels(LabelError),
    #[error("histogram has {counts} bucket counts for {bounds} bounds")]
    BadHistogram { counts: usize, bounds: usize },
}

/// Translated points as the store takes them.
struct SampleSink {
    limits: LabelLimits,
    now: i64,
    series: BTreeMap<Labels, Vec<Sample>>,
    metadata: BTreeMap<String, MetricMeta>,
}

impl SampleSink {
    fn labels(&self, name: String, labels: &Labels) -> Result<Labels, PointError> {
        let pairs = std::iter::once((vigil_wire::labels::METRIC_NAME_LABEL.to_string(), name))
            .chain(labels.iter().map(|l| (l.name.clone(), l.value.clone())));
        Labels::try_from_pairs(pairs, &self.limits).map_err(PointError::Labels)
    }

    fn time(&self, ms: i64) -> i64 {
        if ms == 0 { self.now } else { ms }
    }

    fn meta(&mut self, f: &vigil_otlp::Family<'_>) {
        self.metadata
            .entry(f.name.to_string())
            .or_insert_with(|| MetricMeta {
                metric_type: f.kind,
                help: f.help.to_string(),
                unit: f.unit.to_string(),
            });
    }

    fn push(&mut self, all: Vec<(Labels, f64)>, ts: i64) {
        for (labels, v) in all {
            self.series
                .entry(labels)
                .or_default()
                .push(Sample::new(ts, v));
        }
    }
}

impl Sink for SampleSink {
    type Error = PointError;

    fn reason(e: &PointError) -> &'static str {
        match e {
            PointError::Delta => "delta_temporality",
            PointError::Labels(_) => "invalid_labels",
            PointError::BadHistogram { .. } => "bad_histogram",
        }
    }

    fn value(&mut self, p: ValuePoint<'_>) -> Result<(), PointError> {
        if p.delta {
            return Err(PointError::Delta);
        }
        let labels = self.labels(format!("{}{}", p.family.name, p.suffix), &p.labels)?;
        self.meta(&p.family);
        let ts = self.time(p.time_ms);
        // A point without a recorded value ends its series: a stale
        // marker, as Prometheus writes it.
        let v = if p.no_value {
            vigil_wire::stale_nan()
        } else {
            p.value
        };
        self.push(vec![(labels, v)], ts);
        Ok(())
    }

    fn histogram(&mut self, p: HistogramPoint<'_>) -> Result<(), PointError> {
        if p.delta {
            return Err(PointError::Delta);
        }
        if p.counts.len() != p.bounds.len() + 1 && !p.no_value {
            return Err(PointError::BadHistogram {
                counts: p.counts.len(),
                bounds: p.bounds.len(),
            });
        }
        let name = p.family.name;
        let mut all = Vec::with_capacity(p.bounds.len() + 3);
        // OTLP counts per bucket; Prometheus's buckets are cumulative, and
        // +Inf is the point's count.
        let mut cumulative: u64 = 0;
        for (i, bound) in p.bounds.iter().enumerate() {
            // (Counts are checked above, except for a point without a
            // recorded value, whose counts mean nothing.)
            cumulative = cumulative.saturating_add(p.counts.get(i).copied().unwrap_or(0));
            let mut l = p.labels.clone();
            l.set("le", vigil_wire::exposition::format_value(*bound));
            all.push((
                self.labels(format!("{name}_bucket"), &l)?,
                cumulative as f64,
            ));
        }
        let mut l = p.labels.clone();
        l.set("le", "+Inf");
        all.push((self.labels(format!("{name}_bucket"), &l)?, p.count as f64));
        all.push((self.labels(format!("{name}_sum"), &p.labels)?, p.sum));
        all.push((
            self.labels(format!("{name}_count"), &p.labels)?,
            p.count as f64,
        ));
        if p.no_value {
            for (_, v) in &mut all {
                *v = vigil_wire::stale_nan();
            }
        }
        self.meta(&p.family);
        let ts = self.time(p.time_ms);
        self.push(all, ts);
        Ok(())
    }
}

/// What became of one export.
enum Outcome {
    /// Stored whole; the partial-success warning, if any.
    Accepted(Option<String>),
    /// Something refused: status, message, refused data points.
    Refused(u16, String, u64),
}

/// Translates and stores one export; runs on a blocking thread.
fn export(
    app: &App,
    req: &ExportMetricsServiceRequest,
    agent: Option<Arc<str>>,
    peer: Option<SocketAddr>,
    pusher: Option<(String, String)>,
    from: &str,
) -> Outcome {
    let budget = app.cardinality.budget(agent.clone(), peer);
    let mut sink = SampleSink {
        limits: app.cfg.label_limits(),
        now: now_ms(),
        series: BTreeMap::new(),
        metadata: BTreeMap::new(),
    };
    let translated = vigil_otlp::translate(req, &mut sink);
    app.agents.observe(pusher, agent.as_deref());
    let limits = &app.cfg.limits;
    if sink.series.len() > limits.max_series_per_request {
        let message = format!(
            "{} series in one request, over the limit of {}",
            sink.series.len(),
            limits.max_series_per_request
        );
        app.telemetry.request_rejected("too_many_series");
        app.telemetry.log_refusal(from, "too_many_series", &message);
        return Outcome::Refused(400, message, translated.accepted + translated.rejected);
    }
    let batch: Vec<SeriesSamples> = sink
        .series
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.timestamp_ms);
            SeriesSamples { labels, samples }
        })
        .collect();
    let stored = store(
        app,
        batch,
        Vec::new(),
        sink.metadata.into_iter().collect(),
        budget,
    );
    let (outcome, owner) = match stored {
        Stored::Failed(e) => {
            tracing::error!(error = %e, "append failed; OTLP request not acknowledged");
            app.telemetry.request_rejected("storage_error");
            // 503: the sender keeps the batch and retries.
            return Outcome::Refused(503, "storage error; retry".into(), 0);
        }
        Stored::Ok(outcome, owner) => (outcome, owner),
    };
    let limited = app.cardinality.observe(&outcome, owner.as_ref());
    for (reason, n) in &translated.rejected_by_reason {
        app.telemetry.samples_rejected(reason, *n);
    }
    app.telemetry
        .samples_rejected("exemplar", translated.exemplars_dropped);
    let store_rejected: u64 = outcome.rejected.values().sum();
    if translated.rejected == 0 && store_rejected == 0 {
        return Outcome::Accepted(translated.exemplar_warning());
    }
    let mut message = if translated.rejected > 0 {
        translated.refusal_message()
    } else {
        format!("{} data points accepted", translated.accepted)
    };
    if store_rejected > 0 {
        let parts: Vec<String> = outcome
            .rejected
            .iter()
            .map(|(reason, n)| {
                app.telemetry.samples_rejected(&reason.to_string(), *n);
                format!("{reason}={n}")
            })
            .collect();
        message.push_str(&format!(
            "; {} samples stored, {store_rejected} refused by the store ({})",
            outcome.accepted,
            parts.join(", ")
        ));
        if !limited.is_empty() {
            message.push_str("; ");
            message.push_str(limited.trim_end());
        }
    }
    app.telemetry
        .log_refusal(from, "samples_rejected", &message);
    Outcome::Refused(400, message, translated.rejected + store_rejected)
}

fn http_answer(a: Answer) -> Response {
    (
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_REQUEST),
        [(header::CONTENT_TYPE, a.content_type)],
        a.body,
    )
        .into_response()
}

fn sender(agent: Option<&str>, peer: Option<SocketAddr>) -> String {
    match (agent, peer) {
        (Some(a), Some(p)) => format!("{a} ({p})"),
        (Some(a), None) => a.to_string(),
        (None, Some(p)) => p.to_string(),
        (None, None) => "unknown".into(),
    }
}

/// `POST /v1/metrics`.
pub async fn http(
    State(app): State<Arc<App>>,
    agent: Option<Extension<AgentIdentity>>,
    peer: Option<Extension<ConnectInfo<PeerAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.telemetry
        .otlp_requests_total
        .fetch_add(1, Ordering::Relaxed);
    let agent = agent.map(|a| a.0.0);
    let peer = peer.map(|p| (p.0).0.0);
    let from = sender(agent.as_deref(), peer);
    let pusher = crate::agents::identity_from_headers(&headers);
    let hv = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (ct, enc) = (hv(header::CONTENT_TYPE), hv(header::CONTENT_ENCODING));
    let worker = app.clone();
    let result = tokio::task::spawn_blocking(move || {
        let max = worker.cfg.limits.max_decompressed_bytes.0 as usize;
        let (format, req) =
            match vigil_otlp::decode::decode_http(ct.as_deref(), enc.as_deref(), &body, max) {
                Ok(d) => d,
                Err(e) => {
                    worker.telemetry.request_rejected(e.reason());
                    worker
                        .telemetry
                        .log_refusal(&from, e.reason(), &e.to_string());
                    // The answer speaks the request's format when it is one
                    // of OTLP's, plain text otherwise.
                    return match Format::from_content_type(ct.as_deref().unwrap_or("")) {
                        Ok(f) => answer::refused(f, e.status(), &e.to_string(), 0),
                        Err(_) => Answer {
                            status: e.status(),
                            content_type: "text/plain; charset=utf-8",
                            body: format!("{e}\n").into_bytes(),
                        },
                    };
                }
            };
        match export(&worker, &req, agent, peer, pusher, &from) {
            Outcome::Accepted(warning) => answer::accepted(format, warning),
            Outcome::Refused(status, message, n) => answer::refused(format, status, &message, n),
        }
    })
    .await;
    match result {
        Ok(a) => http_answer(a),
        Err(e) => {
            tracing::error!(error = %e, "OTLP ingest worker failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// OTLP/gRPC exports, checked against the ingest tokens like HTTP.
pub struct GrpcHandler(pub Arc<App>);

impl vigil_otlp::grpc::Handler for GrpcHandler {
    fn export(
        self: Arc<Self>,
        req: ExportMetricsServiceRequest,
        ctx: vigil_otlp::grpc::CallContext,
    ) -> vigil_otlp::grpc::ExportFuture {
        Box::pin(async move {
            let app = self.0.clone();
            app.telemetry
                .otlp_requests_total
                .fetch_add(1, Ordering::Relaxed);
            if !app.tokens.allows(Access::Ingest, ctx.bearer.as_deref()) {
                tracing::debug!(peer = ?ctx.peer, "OTLP/gRPC export refused: missing or wrong token");
                return Err(tonic::Status::unauthenticated(
                    "missing or wrong ingest token (authorization: Bearer TOKEN)",
                ));
            }
            let agent: Option<Arc<str>> = app
                .tokens
                .ingest_agent(ctx.bearer.as_deref())
                .map(Arc::from);
            let from = sender(agent.as_deref(), ctx.peer);
            let worker = app.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                export(&worker, &req, agent, ctx.peer, None, &from)
            })
            .await
            .map_err(|e| tonic::Status::internal(format!("ingest worker failed: {e}")))?;
            match outcome {
                Outcome::Accepted(warning) => {
                    Ok::<ExportMetricsServiceResponse, tonic::Status>(answer::response(warning))
                }
                Outcome::Refused(503, message, _) => Err(tonic::Status::unavailable(message)),
                Outcome::Refused(_, message, n) => Err(vigil_otlp::grpc::refusal(&message, n)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_otlp::Family;
    use vigil_wire::remote_write::MetricType;

    fn sink() -> SampleSink {
        SampleSink {
            limits: LabelLimits::default(),
            now: 1_000,
            series: BTreeMap::new(),
            metadata: BTreeMap::new(),
        }
    }

    const FAMILY: Family<'static> = Family {
        name: "lat_seconds",
        otlp_name: "lat",
        help: "Latency",
        unit: "seconds",
        kind: MetricType::Histogram,
    };

    fn get(s: &SampleSink, name: &str, le: Option<&str>) -> Option<(i64, f64)> {
        s.series
            .iter()
            .find(|(l, _)| l.metric_name() == Some(name) && l.get("le") == le)
            .map(|(_, v)| (v[0].timestamp_ms, v[0].value))
    }

    #[test]
    fn histogram_buckets_become_cumulative_and_inf_is_the_count() {
        let mut s = sink();
        let labels = Labels::from_pairs([("job", "svc")]);
        s.histogram(HistogramPoint {
            family: FAMILY,
            labels,
            bounds: &[0.1, 1.0],
            counts: &[1, 2, 4],
            sum: 9.5,
            count: 7,
            delta: false,
            time_ms: 5_000,
            no_value: false,
        })
        .expect("stored");
        assert_eq!(
            get(&s, "lat_seconds_bucket", Some("0.1")),
            Some((5_000, 1.0))
        );
        assert_eq!(get(&s, "lat_seconds_bucket", Some("1")), Some((5_000, 3.0)));
        assert_eq!(
            get(&s, "lat_seconds_bucket", Some("+Inf")),
            Some((5_000, 7.0))
        );
        assert_eq!(get(&s, "lat_seconds_sum", None), Some((5_000, 9.5)));
        assert_eq!(get(&s, "lat_seconds_count", None), Some((5_000, 7.0)));
        assert_eq!(s.metadata["lat_seconds"].unit, "seconds");
    }

    #[test]
    fn delta_bad_and_unlabellable_points_store_nothing() {
        let mut s = sink();
        let point = |delta, counts: &'static [u64], labels| HistogramPoint {
            family: FAMILY,
            labels,
            bounds: &[1.0],
            counts,
            sum: 1.0,
            count: 1,
            delta,
            time_ms: 0,
            no_value: false,
        };
        let e = s.histogram(point(true, &[1, 0], Labels::empty()));
        assert!(matches!(e, Err(PointError::Delta)));
        let e = s.histogram(point(false, &[1], Labels::empty()));
        assert!(matches!(e, Err(PointError::BadHistogram { .. })));
        // An attribute named like the metric-name label.
        let e = s.histogram(point(
            false,
            &[1, 0],
            Labels::from_pairs([("__name__", "x")]),
        ));
        assert!(matches!(e, Err(PointError::Labels(_))));
        assert!(s.series.is_empty() && s.metadata.is_empty());
        // A point without a time gets the request's.
        s.value(ValuePoint {
            family: Family {
                kind: MetricType::Gauge,
                ..FAMILY
            },
            suffix: "",
            labels: Labels::empty(),
            value: 2.0,
            delta: false,
            time_ms: 0,
            no_value: false,
        })
        .expect("stored");
        assert_eq!(get(&s, "lat_seconds", None), Some((1_000, 2.0)));
        // A point without a recorded value is a stale marker in each series.
        s.histogram(HistogramPoint {
            no_value: true,
            time_ms: 2_000,
            ..point(false, &[], Labels::from_pairs([("job", "gone")]))
        })
        .expect("stale markers");
        let gone: Vec<_> = s
            .series
            .iter()
            .filter(|(l, _)| l.get("job") == Some("gone"))
            .collect();
        assert_eq!(gone.len(), 4, "bucket le=1, +Inf, sum, count");
        assert!(
            gone.iter()
                .all(|(_, v)| v[0].timestamp_ms == 2_000 && vigil_wire::is_stale_nan(v[0].value))
        );
    }
}
