//! Vigil's incident API (an extension beside Alertmanager's, which stays
//! as it is), in Prometheus's `{"status", "data"}` envelope:
//!
//! * `GET /api/vigil/v1/incidents?state=open|closed&start=…&end=…&filter=…&limit=…`
//!   (newest first; `filter` takes Alertmanager matchers and may repeat;
//!   times are RFC 3339 or Unix seconds; incidents active at some point
//!   between `start` and `end`)
//! * `GET /api/vigil/v1/incidents/{id}`
//! * `POST /api/vigil/v1/incidents/{id}/notes` `{"author", "text"}`
//! * `POST /api/vigil/v1/alerts/ack` `{"fingerprint", "author", "comment"}`

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Incident, IncidentError, IncidentFilter};
use crate::Alerting;
use crate::alert::format_go_time;
use crate::matchers::{fingerprint_hex, parse_matchers};

/// Most incidents one listing returns.
pub const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 100;

pub fn routes() -> axum::Router<Arc<Alerting>> {
    axum::Router::new()
        .route("/api/vigil/v1/incidents", get(list))
        .route("/api/vigil/v1/incidents/{id}", get(one))
        .route("/api/vigil/v1/incidents/{id}/notes", post(note))
        .route("/api/vigil/v1/alerts/ack", post(ack))
}

fn fail(status: StatusCode, kind: &str, msg: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": kind, "error": msg.into()})),
    )
        .into_response()
}

fn ok(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

fn refused(e: IncidentError) -> Response {
    match e {
        IncidentError::UnknownAlert(_) | IncidentError::UnknownIncident(_) => {
            fail(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        IncidentError::Resolved(_) => fail(StatusCode::CONFLICT, "conflict", e.to_string()),
        IncidentError::Invalid(_) => fail(StatusCode::BAD_REQUEST, "bad_data", e.to_string()),
        IncidentError::Store(_) => {
            tracing::error!(error = %e, "incident change not persisted");
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the change could not be stored",
            )
        }
    }
}

fn time(t: &DateTime<Utc>) -> Value {
    Value::String(format_go_time(t))
}

/// An incident as the API shows it.
pub fn incident_json(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "fingerprint": fingerprint_hex(i.fingerprint),
        "state": if i.is_open() { "open" } else { "closed" },
        "labels": i.labels,
        "annotations": i.annotations,
        "startsAt": time(&i.starts_at),
        "endsAt": i.ends_at.as_ref().map(time),
        "peakValue": i.peak_value,
        "acknowledged": i.acked(),
        "acks": i.acks.iter().map(|a| json!({
            "id": a.id, "author": a.author, "comment": a.comment, "at": time(&a.at),
        })).collect::<Vec<_>>(),
        "notifications": i.notifications.iter().map(|n| json!({
            "id": n.id, "receiver": n.receiver, "integration": n.integration,
            "at": time(&n.at), "status": if n.ok { "ok" } else { "failed" },
            "error": n.error, "attempts": n.attempts, "alertStatus": n.status,
            "escalation": n.escalation,
        })).collect::<Vec<_>>(),
        "notificationsDropped": i.notifications_dropped,
        "escalations": i.escalations.iter().map(|e| json!({
            "rule": e.rule, "receiver": e.receiver, "after": e.after, "at": time(&e.at),
        })).collect::<Vec<_>>(),
        "notes": i.notes.iter().map(|n| json!({
            "id": n.id, "author": n.author, "text": n.text, "at": time(&n.at),
        })).collect::<Vec<_>>(),
        "updatedAt": time(&i.updated_at),
    })
}

/// RFC 3339 or Unix seconds (with a fraction), as Prometheus's API takes.
fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && let Some(t) = DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
    {
        return Ok(t);
    }
    crate::alert::parse_time(v)
        .map_err(|_| format!("{name}={v:?} is not a time (RFC 3339 or Unix seconds)"))
}

/// Parses the listing's query parameters.
pub fn parse_filter(q: &Option<String>) -> Result<IncidentFilter, String> {
    let mut f = IncidentFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in crate::api::query_pairs(q) {
        match k.as_str() {
            "state" => {
                f.open = match v.as_str() {
                    "open" => Some(true),
                    "closed" => Some(false),
                    "" | "all" => None,
                    other => {
                        return Err(format!("state={other:?}: expected open, closed or all"));
                    }
                }
            }
            "start" => f.from = Some(parse_time("start", &v)?),
            "end" => f.to = Some(parse_time("end", &v)?),
            "filter" => f
                .matchers
                .extend(parse_matchers(&v).map_err(|e| e.to_string())?),
            "limit" => {
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("limit={v:?} is not a positive number"))?;
                if n == 0 || n > MAX_LIMIT {
                    return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
                }
                f.limit = n;
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    if let (Some(a), Some(b)) = (f.from, f.to)
        && a > b
    {
        return Err("start is after end".into());
    }
    Ok(f)
}

async fn list(State(a): State<Arc<Alerting>>, RawQuery(q): RawQuery) -> Response {
    let f = match parse_filter(&q) {
        Ok(f) => f,
        Err(e) => return fail(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    ok(Value::Array(
        a.incidents(&f).iter().map(incident_json).collect(),
    ))
}

async fn one(State(a): State<Arc<Alerting>>, Path(id): Path<String>) -> Response {
    match a.incident(&id) {
        Some(i) => ok(incident_json(&i)),
        None => refused(IncidentError::UnknownIncident(id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    author: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    fingerprint: String,
    author: String,
    #[serde(default)]
    comment: String,
}

fn body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("invalid body: {e}"))
}

async fn note(
    State(a): State<Arc<Alerting>>,
    Path(id): Path<String>,
    b: axum::body::Bytes,
) -> Response {
    let n: NoteBody = match body(&b) {
        Ok(n) => n,
        Err(e) => return fail(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    match a.add_note(&id, &n.author, &n.text).await {
        Ok(i) => ok(incident_json(&i)),
        Err(e) => refused(e),
    }
}

async fn ack(State(a): State<Arc<Alerting>>, b: axum::body::Bytes) -> Response {
    let k: AckBody = match body(&b) {
        Ok(k) => k,
        Err(e) => return fail(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    match a.ack(&k.fingerprint, &k.author, &k.comment).await {
        Ok(i) => ok(incident_json(&i)),
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parameters() {
        let f = parse_filter(&Some(
            "state=open&filter=severity%3D%22page%22&limit=5&start=1700000000&end=2024-01-01T00%3A00%3A00Z"
                .into(),
        ))
        .expect("valid");
        assert_eq!(f.open, Some(true));
        assert_eq!(f.limit, 5);
        assert_eq!(f.matchers.len(), 1);
        assert_eq!(f.from.map(|t| t.timestamp()), Some(1_700_000_000));
        assert!(parse_filter(&Some("state=maybe".into())).is_err());
        assert!(parse_filter(&Some("limit=0".into())).is_err());
        assert!(parse_filter(&Some("start=yesterday".into())).is_err());
        assert!(parse_filter(&Some("filter=a%3D~%22(%22".into())).is_err());
        assert!(parse_filter(&Some("bogus=1".into())).is_err());
        assert_eq!(parse_filter(&None).expect("defaults").limit, DEFAULT_LIMIT);
    }
}
