//! The agent's HTTP server: `/metrics`, `/-/healthy`, and the two LLM doors
//! (`POST /v1/metrics` for OTLP/HTTP in protobuf or JSON, `POST
//! /v1/llm/usage` for usage events).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;

use crate::llm::LlmState;
use crate::pipeline::Pipeline;

/// Largest request body accepted (OTLP batches, usage arrays).
const MAX_BODY: usize = 16 << 20;

#[derive(Clone)]
struct AppState {
    pipeline: Arc<Pipeline>,
    llm: Arc<LlmState>,
}

/// Builds the router; the LLM routes exist only when `llm_enabled`.
pub fn router(pipeline: Arc<Pipeline>, llm: Arc<LlmState>, llm_enabled: bool) -> Router {
    let mut r = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }));
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

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

async fn otlp_metrics(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        && !enc.eq_ignore_ascii_case("identity")
    {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {enc:?}; send uncompressed OTLP"),
        )
            .into_response();
    }
    let ct = content_type(&headers);
    let json = match ct.as_str() {
        "application/x-protobuf" | "application/protobuf" => false,
        "application/json" => true,
        other => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type {other:?}; use application/x-protobuf or application/json"),
            )
                .into_response();
        }
    };
    let req: Result<ExportMetricsServiceRequest, String> = if json {
        serde_json::from_slice(&body).map_err(|e| format!("invalid OTLP JSON: {e}"))
    } else {
        ExportMetricsServiceRequest::decode(body.as_ref())
            .map_err(|e| format!("invalid OTLP protobuf: {e}"))
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "bad OTLP request");
            return (StatusCode::BAD_REQUEST, e).into_response();
        }
    };
    let outcome = st.llm.ingest_otlp(&req);
    st.llm
        .stats
        .otlp_points_accepted
        .fetch_add(outcome.accepted, Ordering::Relaxed);
    st.llm
        .stats
        .otlp_points_rejected
        .fetch_add(outcome.rejected, Ordering::Relaxed);
    st.llm.otlp_refusals(&outcome);
    // Something refused: 400, as OTLP/HTTP answers a request it cannot take
    // whole (a `google.rpc.Status` naming what and why); the accepted points
    // are kept, as remote_write's partial writes are.
    if outcome.rejected > 0 {
        let message = format!(
            "{} data points accepted, {} refused: {}",
            outcome.accepted,
            outcome.rejected,
            outcome.errors.join("; ")
        );
        tracing::debug!(%message, "OTLP request partly refused");
        let status = RpcStatus {
            code: 3, // INVALID_ARGUMENT
            message,
        };
        return if json {
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({"code": status.code, "message": status.message}).to_string(),
            )
                .into_response()
        } else {
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                status.encode_to_vec(),
            )
                .into_response()
        };
    }
    // Exemplars only: the points are kept, the warning says what was not.
    let resp = ExportMetricsServiceResponse {
        partial_success: (outcome.exemplars_dropped > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: 0,
            error_message: format!(
                "{} exemplars not kept: Vigil stores no exemplars (their data points were accepted)",
                outcome.exemplars_dropped
            ),
        }),
    };
    if json {
        let body = serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec());
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            resp.encode_to_vec(),
        )
            .into_response()
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
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
