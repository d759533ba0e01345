//! The agent's HTTP server: `/metrics`, `/-/healthy`, `/api/v1/targets`
//! (Prometheus's targets API: the scrape targets, discovered and dropped),
//! and the two LLM doors
//! (`POST /v1/metrics` for OTLP/HTTP in protobuf or JSON, gzip or not, and
//! the same exports over OTLP/gRPC; `POST /v1/llm/usage` for usage events).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::llm::LlmState;
use crate::pipeline::Pipeline;

/// Largest request body accepted (OTLP batches, usage arrays).
pub(crate) const MAX_BODY: usize = 16 << 20;

#[derive(Clone)]
struct AppState {
    pipeline: Arc<Pipeline>,
    llm: Arc<LlmState>,
}

/// Builds the router; the LLM routes exist only when `llm_enabled`.
pub fn router(pipeline: Arc<Pipeline>, llm: Arc<LlmState>, llm_enabled: bool) -> Router {
    let mut r = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/api/v1/targets", get(targets));
    if llm_enabled {
        r = r
            .route("/v1/metrics", post(otlp_metrics))
            .route("/v1/llm/usage", post(usage));
    }
    r.layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AppState { pipeline, llm })
}

async fn metrics(State(st): State<AppState>) -> Response {
    let body = st.pipeline.render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct TargetsQuery {
    state: Option<String>,
    #[serde(rename = "scrapePool")]
    scrape_pool: Option<String>,
}

/// `GET /api/v1/targets[?state=active|dropped|any][&scrapePool=JOB]`, in
/// Prometheus's format.
async fn targets(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<TargetsQuery>,
) -> Response {
    let data = st
        .pipeline
        .targets
        .api(q.state.as_deref(), q.scrape_pool.as_deref());
    axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
}

fn header(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn answer(a: vigil_otlp::answer::Answer) -> Response {
    (
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_REQUEST),
        [(header::CONTENT_TYPE, a.content_type)],
        a.body,
    )
        .into_response()
}

async fn otlp_metrics(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let decoded = vigil_otlp::decode::decode_http(
        header(&headers, header::CONTENT_TYPE),
        header(&headers, header::CONTENT_ENCODING),
        &body,
        MAX_BODY,
    );
    let (format, req) = match decoded {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "bad OTLP request");
            return (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                format!("{e}\n"),
            )
                .into_response();
        }
    };
    match export(&st.llm, &req) {
        Ok(warning) => answer(vigil_otlp::answer::accepted(format, warning)),
        Err((message, rejected)) => {
            answer(vigil_otlp::answer::refused(format, 400, &message, rejected))
        }
    }
}

/// Takes one export (HTTP or gRPC): `Ok` with the partial-success warning
/// when everything was kept, `Err` with the message and the refused count
/// when anything was refused (the accepted points are kept).
pub(crate) fn export(
    llm: &LlmState,
    req: &vigil_otlp::ExportMetricsServiceRequest,
) -> Result<Option<String>, (String, u64)> {
    let outcome = llm.ingest_otlp(req);
    llm.stats
        .otlp_points_accepted
        .fetch_add(outcome.accepted, Ordering::Relaxed);
    llm.stats
        .otlp_points_rejected
        .fetch_add(outcome.rejected, Ordering::Relaxed);
    llm.otlp_refusals(&outcome);
    if outcome.rejected > 0 {
        let message = outcome.refusal_message();
        tracing::debug!(%message, "OTLP request partly refused");
        return Err((message, outcome.rejected));
    }
    Ok(outcome.exemplar_warning())
}

/// OTLP/gRPC exports into the same aggregates as `POST /v1/metrics`.
pub(crate) struct GrpcHandler(pub Arc<LlmState>);

impl vigil_otlp::grpc::Handler for GrpcHandler {
    fn export(
        self: Arc<Self>,
        req: vigil_otlp::ExportMetricsServiceRequest,
        _ctx: vigil_otlp::grpc::CallContext,
    ) -> vigil_otlp::grpc::ExportFuture {
        let result = export(&self.0, &req);
        Box::pin(async move {
            match result {
                Ok(warning) => Ok(vigil_otlp::answer::response(warning)),
                Err((message, rejected)) => Err(vigil_otlp::grpc::refusal(&message, rejected)),
            }
        })
    }
}

async fn usage(State(st): State<AppState>, body: Bytes) -> Response {
    match st.llm.ingest_usage(&body) {
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"accepted": 0, "rejected": 0, "error": e})),
        )
            .into_response(),
        Ok(r) => {
            let status = if r.rejected > 0 {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, axum::Json(r)).into_response()
        }
    }
}
