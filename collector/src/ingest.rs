//! Ingestion: Prometheus remote_write 1.0 and the text exposition format.
//!
//! A request is validated whole before anything reaches the store: a bad
//! label, a sample too far in the future or a series over the limit refuses
//! the request with 400 and stores nothing. Samples the store itself refuses
//! (out of order, conflicting duplicates, too old) are counted and reported
//! in a 400, while the valid samples of the same request are kept; unlike
//! Prometheus, which drops the whole batch, so a re-sent batch is never lost.
//! Series over a cardinality budget are refused the same way (the rest of
//! the request is stored, 400 names the budget and the metrics, as Mimir
//! answers); see [`crate::cardinality`].
//!
//! What Vigil cannot store is never acknowledged and dropped: native
//! histograms and exemplars in remote_write, and exemplars in an imported
//! exposition, are refused by name in the same 400 (the float samples of
//! the request are stored) and counted in `vigil_samples_rejected_total`
//! with reason `native_histogram` or `exemplar`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vigil_tsdb::{AppendOutcome, Budget, MetricMeta, SeriesHint, SeriesSamples};
use vigil_wire::exposition::{self, FamilyMetadata};
use vigil_wire::remote_write::{self, MetricType};
use vigil_wire::{Labels, Sample};

use crate::auth::AgentIdentity;
use crate::cardinality::PeerAddr;
use crate::params::now_ms;
use crate::server::App;

/// Why a request was refused before touching the store.
#[derive(Debug)]
struct Refusal {
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

fn refuse(app: &App, sender: &str, r: Refusal) -> Response {
    app.telemetry.request_rejected(r.reason);
    app.telemetry.log_refusal(sender, r.reason, &r.message);
    (StatusCode::BAD_REQUEST, format!("{}\n", r.message)).into_response()
}

/// Who sent a request, for the log: the agent its token names, and the
/// peer address.
fn sender(
    agent: Option<&Extension<AgentIdentity>>,
    peer: Option<&Extension<ConnectInfo<PeerAddr>>>,
) -> String {
    let addr = peer.map(|p| (p.0).0.0.to_string());
    match (agent, addr) {
        (Some(a), Some(addr)) => format!("{} ({addr})", a.0.0),
        (Some(a), None) => a.0.0.to_string(),
        (None, Some(addr)) => addr,
        (None, None) => "unknown".into(),
    }
}

/// `POST /api/v1/write`.
pub async fn remote_write(
    State(app): State<Arc<App>>,
    agent: Option<Extension<AgentIdentity>>,
    peer: Option<Extension<ConnectInfo<PeerAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from = sender(agent.as_ref(), peer.as_ref());
    let token = agent.as_ref().map(|a| a.0.0.clone());
    let pusher = crate::agents::identity_from_headers(&headers);
    let budget = budget(&app, agent, peer);
    app.telemetry
        .write_requests_total
        .fetch_add(1, Ordering::Relaxed);
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        && !enc.eq_ignore_ascii_case("snappy")
    {
        return refuse(
            &app,
            &from,
            Refusal::new(
                "bad_encoding",
                format!(
                    "unsupported Content-Encoding {enc:?}: remote_write bodies are snappy-compressed"
                ),
            ),
        );
    }
    // A request of a scrape's or a remote_write shard's size is decoded
    // right here, and its commit awaited without a thread parked on it:
    // every hand-off between threads is a wake-up that waits for a free
    // core on a loaded host. Larger bodies are decoded on the blocking pool
    // so that they cannot hold up other requests on this worker.
    let inline = remote_write::decompressed_len(&body).is_ok_and(|n| n <= INLINE_DECODE_BYTES);
    let prepared = if inline {
        Ok(prepare_remote_write(&app, &body, pusher, token.as_deref()))
    } else {
        let worker = app.clone();
        tokio::task::spawn_blocking(move || {
            prepare_remote_write(&worker, &body, pusher, token.as_deref())
        })
        .await
    };
    let result = match prepared {
        Err(e) => Err(e),
        Ok(Err(refusal)) => Ok(Err(refusal)),
        Ok(Ok(p)) => {
            let stored = store_async(&app, p.batch, p.hints, p.metadata, budget).await;
            Ok(Ok((stored, p.unstorable)))
        }
    };
    finish(&app, &from, result)
}

/// Decompressed remote_write bodies up to this size are decoded on the
/// async worker that received them (about a millisecond of work at most).
const INLINE_DECODE_BYTES: usize = 512 << 10;

/// A remote_write request decoded and validated, ready to store.
struct PreparedWrite {
    batch: Vec<SeriesSamples>,
    hints: Vec<Option<SeriesHint>>,
    metadata: Vec<(String, MetricMeta)>,
    unstorable: Unstorable,
}

fn prepare_remote_write(
    app: &App,
    body: &[u8],
    pusher: Option<(String, String)>,
    token: Option<&str>,
) -> Result<PreparedWrite, Refusal> {
    let malformed = |e| Refusal::new("malformed", format!("malformed remote_write body: {e}"));
    let raw = remote_write::decompress(body, app.cfg.limits.max_decompressed_bytes.0 as usize)
        .map_err(malformed)?;
    let mut req = remote_write::WriteRequestView::decode(&raw).map_err(malformed)?;
    // Any decoded push shows its sender alive, whatever is refused.
    app.agents.observe(pusher, token);
    let (batch, hints, unstorable) = validate_remote_write(app, &req)?;
    // Metadata is taken only from a request that passed validation.
    let metadata: Vec<(String, MetricMeta)> = std::mem::take(&mut req.metadata)
        .into_iter()
        .filter(|m| vigil_wire::labels::is_valid_metric_name(&m.metric_family_name))
        .map(|m| {
            (
                m.metric_family_name,
                MetricMeta {
                    metric_type: MetricType::try_from(m.r#type).unwrap_or(MetricType::Unknown),
                    help: m.help,
                    unit: m.unit,
                },
            )
        })
        .collect();
    Ok(PreparedWrite {
        batch,
        hints,
        metadata,
        unstorable,
    })
}

#[derive(serde::Deserialize, Default)]
pub struct ImportParams {
    /// Timestamp (ms) for samples without one; defaults to now.
    timestamp: Option<i64>,
}

/// `POST /api/v1/import/prometheus`: a text exposition, as VictoriaMetrics
/// accepts it. Samples without a timestamp get the request time.
pub async fn import_prometheus(
    State(app): State<Arc<App>>,
    agent: Option<Extension<AgentIdentity>>,
    peer: Option<Extension<ConnectInfo<PeerAddr>>>,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from = sender(agent.as_ref(), peer.as_ref());
    let token = agent.as_ref().map(|a| a.0.0.clone());
    let pusher = crate::agents::identity_from_headers(&headers);
    let budget = budget(&app, agent, peer);
    app.telemetry
        .import_requests_total
        .fetch_add(1, Ordering::Relaxed);
    let worker = app.clone();
    let result = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body)
            .map_err(|e| Refusal::new("malformed", format!("body is not UTF-8: {e}")))?;
        let now = now_ms();
        let default_ts = params.timestamp.unwrap_or(now);
        // Grouped while parsing, so a large import holds one label set per
        // series rather than one per sample line.
        let mut by_series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let mut unstorable = Unstorable::default();
        let family_metadata = exposition::parse_each(text, &worker.cfg.label_limits(), |s| {
            if s.has_exemplar {
                unstorable.exemplar(&s.labels, 1);
            }
            by_series
                .entry(s.labels)
                .or_default()
                .push(Sample::new(s.timestamp_ms.unwrap_or(default_ts), s.value));
        })
        .map_err(|e| Refusal::new("malformed", format!("malformed exposition: {e}")))?;
        worker.agents.observe(pusher, token.as_deref());
        if by_series.len() > worker.cfg.limits.max_series_per_request {
            return Err(Refusal::new(
                "too_many_series",
                format!(
                    "{} series in one request, over the limit of {}",
                    by_series.len(),
                    worker.cfg.limits.max_series_per_request
                ),
            ));
        }
        let max_ts = now + worker.cfg.storage.max_future.0.as_millis() as i64;
        let mut batch = Vec::with_capacity(by_series.len());
        for (labels, mut samples) in by_series {
            if let Some(s) = samples.iter().find(|s| s.timestamp_ms > max_ts) {
                return Err(future_refusal(&labels, s.timestamp_ms, now));
            }
            samples.sort_by_key(|s| s.timestamp_ms);
            batch.push(SeriesSamples { labels, samples });
        }
        let metadata = family_metadata
            .into_iter()
            .map(|(name, m): (String, FamilyMetadata)| {
                (
                    name,
                    MetricMeta {
                        metric_type: m.metric_type.unwrap_or(MetricType::Unknown),
                        help: m.help.unwrap_or_default(),
                        unit: m.unit.unwrap_or_default(),
                    },
                )
            })
            .collect();
        Ok((
            store(&worker, batch, Vec::new(), metadata, budget),
            unstorable,
        ))
    })
    .await;
    finish(&app, &from, result)
}

fn future_refusal(labels: &Labels, ts: i64, now: i64) -> Refusal {
    Refusal::new(
        "too_far_in_future",
        format!(
            "sample of {labels} at {ts} ms is {} s in the future; refusing the request",
            (ts - now) / 1000
        ),
    )
}

/// What a request carried that Vigil does not store, refused by name while
/// the rest of the request is stored.
#[derive(Debug, Default)]
struct Unstorable {
    native_histograms: u64,
    exemplars: u64,
    /// A few of the series concerned, to name in the answer.
    histogram_series: Vec<String>,
    exemplar_series: Vec<String>,
}

impl Unstorable {
    const NAMED: usize = 3;

    fn native_histograms(&mut self, labels: &Labels, n: u64) {
        self.native_histograms += n;
        if self.histogram_series.len() < Self::NAMED {
            self.histogram_series.push(labels.to_string());
        }
    }

    fn exemplar(&mut self, labels: &Labels, n: u64) {
        self.exemplars += n;
        if self.exemplar_series.len() < Self::NAMED
            && !self
                .exemplar_series
                .iter()
                .any(|s| *s == labels.to_string())
        {
            self.exemplar_series.push(labels.to_string());
        }
    }

    fn is_empty(&self) -> bool {
        self.native_histograms == 0 && self.exemplars == 0
    }

    /// Counts the refusals and answers what to tell the sender.
    fn account(&self, app: &App) -> Vec<String> {
        let mut lines = Vec::new();
        let named = |series: &[String], total: u64| {
            let more = if total > series.len() as u64 {
                ", ..."
            } else {
                ""
            };
            format!("{}{more}", series.join(", "))
        };
        if self.native_histograms > 0 {
            app.telemetry
                .samples_rejected("native_histogram", self.native_histograms);
            lines.push(format!(
                "refused {} native histogram samples (series {}): Vigil stores float samples only; send classic histograms (Prometheus: remote_write send_native_histograms: false)",
                self.native_histograms,
                named(&self.histogram_series, self.native_histograms)
            ));
        }
        if self.exemplars > 0 {
            app.telemetry.samples_rejected("exemplar", self.exemplars);
            lines.push(format!(
                "refused {} exemplars (series {}): Vigil stores no exemplars; the samples they annotate are kept (Prometheus: remote_write send_exemplars: false)",
                self.exemplars,
                named(&self.exemplar_series, self.exemplars)
            ));
        }
        lines
    }
}

/// A validated request: what to store, the writer's hints for it (one per
/// entry), and what was refused by name.
type Validated = (Vec<SeriesSamples>, Vec<Option<SeriesHint>>, Unstorable);

/// Works on the borrowed view of the request. A series the store already
/// holds is found by its raw labels and shares the stored label set, so a
/// steady sender's request copies no label at all; only new series have
/// their strings copied out of the request buffer, after validation, with
/// one allocation per string and one per label set. The hints returned
/// beside the batch let the writer skip its own lookup of those series.
fn validate_remote_write(
    app: &App,
    req: &remote_write::WriteRequestView<'_>,
) -> Result<Validated, Refusal> {
    let limits = &app.cfg.limits;
    if req.series.len() > limits.max_series_per_request {
        return Err(Refusal::new(
            "too_many_series",
            format!(
                "{} series in one request, over the limit of {}",
                req.series.len(),
                limits.max_series_per_request
            ),
        ));
    }
    let label_limits = app.cfg.label_limits();
    let now = now_ms();
    let max_ts = now + app.cfg.storage.max_future.0.as_millis() as i64;
    let raw = |ts| req.labels_of(ts).iter().map(|l| (l.name, l.value));
    let mut known: Vec<Option<(SeriesHint, Labels)>> = app
        .db
        .find_series(|f| req.series.iter().map(|ts| f.find(raw(ts))).collect());
    let mut batch = Vec::with_capacity(req.series.len());
    let mut hints = Vec::with_capacity(req.series.len());
    let mut unstorable = Unstorable::default();
    for (i, ts) in req.series.iter().enumerate() {
        let invalid = |e| Refusal::new("invalid_labels", format!("series {i}: {e}"));
        let (labels, hint) = match known.get_mut(i).and_then(Option::take) {
            Some((hint, labels)) => {
                labels.check_limits(&label_limits).map_err(invalid)?;
                (labels, Some(hint))
            }
            None => (
                Labels::try_from_pairs(raw(ts), &label_limits).map_err(invalid)?,
                None,
            ),
        };
        if ts.histograms > 0 {
            unstorable.native_histograms(&labels, ts.histograms as u64);
        }
        if ts.exemplars > 0 {
            unstorable.exemplar(&labels, ts.exemplars as u64);
        }
        let samples = req.samples_of(ts);
        if samples.is_empty() {
            continue;
        }
        if let Some(s) = samples.iter().find(|s| s.timestamp_ms > max_ts) {
            return Err(future_refusal(&labels, s.timestamp_ms, now));
        }
        let mut samples = samples.to_vec();
        // Senders order samples per series; sort defensively so that a
        // reordered batch is not mistaken for out-of-order data.
        if !samples.is_sorted_by_key(|s| s.timestamp_ms) {
            samples.sort_by_key(|s| s.timestamp_ms);
        }
        batch.push(SeriesSamples { labels, samples });
        hints.push(hint);
    }
    Ok((batch, hints, unstorable))
}

/// The cardinality budget of a request: see [`crate::cardinality`].
fn budget(
    app: &App,
    agent: Option<Extension<AgentIdentity>>,
    peer: Option<Extension<ConnectInfo<PeerAddr>>>,
) -> Budget {
    app.cardinality
        .budget(agent.map(|a| a.0.0), peer.map(|p| (p.0).0.0))
}

/// What the store made of a validated request.
pub(crate) enum Stored {
    Ok(AppendOutcome, Option<Arc<str>>),
    Failed(String),
}

/// [`store`] for an async caller: metadata (rare: Prometheus sends it once
/// a minute) on the blocking pool, the samples' commit awaited.
async fn store_async(
    app: &Arc<App>,
    batch: Vec<SeriesSamples>,
    hints: Vec<Option<SeriesHint>>,
    metadata: Vec<(String, MetricMeta)>,
    budget: Budget,
) -> Stored {
    if !metadata.is_empty() {
        let worker = app.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || store_metadata(&worker, metadata)).await
        {
            tracing::warn!(error = %e, "storing metric metadata failed");
        }
    }
    let agent = budget.owner.clone();
    if batch.is_empty() {
        return Stored::Ok(AppendOutcome::default(), agent);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.db
        .append_hinted_then(batch, hints, now_ms(), budget, move |outcome, batch| {
            let _ = tx.send((outcome, batch));
        });
    match rx.await {
        Ok((Ok(outcome), _batch)) => Stored::Ok(outcome, agent),
        Ok((Err(e), _batch)) => Stored::Failed(e.to_string()),
        Err(_) => Stored::Failed(vigil_tsdb::Error::Closed.to_string()),
    }
}

fn store_metadata(app: &App, metadata: Vec<(String, MetricMeta)>) {
    for (name, meta) in metadata {
        if let Err(e) = app.db.set_metadata(&name, meta) {
            tracing::warn!(error = %e, metric = %name, "failed to store metric metadata");
        }
    }
}

pub(crate) fn store(
    app: &App,
    batch: Vec<SeriesSamples>,
    hints: Vec<Option<SeriesHint>>,
    metadata: Vec<(String, MetricMeta)>,
    budget: Budget,
) -> Stored {
    store_metadata(app, metadata);
    let agent = budget.owner.clone();
    if batch.is_empty() {
        return Stored::Ok(AppendOutcome::default(), agent);
    }
    match app.db.append_hinted(batch, hints, now_ms(), budget) {
        Ok(outcome) => Stored::Ok(outcome, agent),
        Err(e) => Stored::Failed(e.to_string()),
    }
}

fn finish(
    app: &App,
    from: &str,
    result: Result<Result<(Stored, Unstorable), Refusal>, tokio::task::JoinError>,
) -> Response {
    match result {
        Err(e) => {
            tracing::error!(error = %e, "ingest worker failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
        Ok(Err(refusal)) => refuse(app, from, refusal),
        Ok(Ok((Stored::Failed(e), _))) => {
            tracing::error!(error = %e, "append failed; request not acknowledged");
            app.telemetry.request_rejected("storage_error");
            // 5xx: the sender keeps the batch and retries.
            (StatusCode::SERVICE_UNAVAILABLE, "storage error; retry\n").into_response()
        }
        Ok(Ok((Stored::Ok(outcome, agent), unstorable))) => {
            let limited = app.cardinality.observe(&outcome, agent.as_ref());
            let rejected: u64 = outcome.rejected.values().sum();
            if rejected == 0 && unstorable.is_empty() {
                return StatusCode::NO_CONTENT.into_response();
            }
            let mut parts = Vec::new();
            for (reason, n) in &outcome.rejected {
                app.telemetry.samples_rejected(&reason.to_string(), *n);
                parts.push(format!("{reason}={n}"));
            }
            let mut msg = if rejected == 0 {
                format!("{} samples stored\n", outcome.accepted)
            } else {
                format!(
                    "{} samples stored, {rejected} rejected ({})\n{limited}",
                    outcome.accepted,
                    parts.join(", ")
                )
            };
            for line in unstorable.account(app) {
                msg.push_str(&line);
                msg.push('\n');
            }
            app.telemetry
                .log_refusal(from, "samples_rejected", msg.trim_end());
            (StatusCode::BAD_REQUEST, msg).into_response()
        }
    }
}
