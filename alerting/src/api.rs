//! The Alertmanager v2 HTTP API subset that Prometheus and `amtool` use,
//! with Alertmanager's JSON shapes: alerts (list with filters, post),
//! alert groups, silences (list, get, create/update, expire), receivers and
//! status.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};
use vigil_wire::Matcher;

use crate::alert::{Alert, PostableAlert, format_go_time};
use crate::matchers::{fingerprint_hex, matches_all, parse_matchers};
use crate::silence::{PostableSilence, SilenceError, SilenceState};
use crate::store::Write;
use crate::{Alerting, Error};

/// Builds the `/api/v2` routes.
pub fn router(a: Arc<Alerting>) -> axum::Router {
    axum::Router::new()
        .route("/api/v2/alerts", get(get_alerts).post(post_alerts))
        .route("/api/v2/alerts/groups", get(get_groups))
        .route("/api/v2/silences", get(get_silences).post(post_silence))
        .route(
            "/api/v2/silence/{id}",
            get(get_silence).delete(delete_silence),
        )
        .route("/api/v2/receivers", get(get_receivers))
        .route("/api/v2/status", get(get_status))
        .route("/api/v2/alerts/", post(post_alerts))
        .merge(crate::incident::api::routes())
        .with_state(a)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(Value::String(msg.into()))).into_response()
}

/// Decodes `application/x-www-form-urlencoded` text.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters as (name, value) pairs; names may repeat.
pub(crate) fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

struct AlertFilter {
    matchers: Vec<Matcher>,
    active: bool,
    silenced: bool,
    inhibited: bool,
    receiver: Option<regex::Regex>,
}

fn bool_param(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("invalid boolean {other:?}")),
    }
}

fn parse_filter(q: &Option<String>) -> Result<AlertFilter, String> {
    let mut f = AlertFilter {
        matchers: Vec::new(),
        active: true,
        silenced: true,
        inhibited: true,
        receiver: None,
    };
    for (k, v) in query_pairs(q) {
        match k.as_str() {
            "filter" => f
                .matchers
                .extend(parse_matchers(&v).map_err(|e| e.to_string())?),
            "active" => f.active = bool_param(&v)?,
            "silenced" => f.silenced = bool_param(&v)?,
            "inhibited" => f.inhibited = bool_param(&v)?,
            "unprocessed" => {
                bool_param(&v)?;
            }
            "receiver" if !v.is_empty() => {
                f.receiver = Some(
                    regex::Regex::new(&format!("^(?:{v})$"))
                        .map_err(|e| format!("invalid receiver regex: {e}"))?,
                );
            }
            _ => {}
        }
    }
    Ok(f)
}

fn gettable(a: &Alert, receivers: &[String], inhibited: &[String], silenced: &[String]) -> Value {
    let state = if inhibited.is_empty() && silenced.is_empty() {
        "active"
    } else {
        "suppressed"
    };
    json!({
        "annotations": a.annotations,
        "endsAt": format_go_time(&a.ends_at),
        "fingerprint": fingerprint_hex(a.fingerprint),
        "receivers": receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "startsAt": format_go_time(&a.starts_at),
        "status": {"inhibitedBy": inhibited, "silencedBy": silenced, "state": state},
        "updatedAt": format_go_time(&a.updated_at),
        "generatorURL": a.generator_url,
        "labels": a.labels,
    })
}

/// Applies a filter to one alert; returns its JSON if it passes.
fn filtered(
    st: &crate::dispatch::State,
    a: &Alert,
    f: &AlertFilter,
    now: chrono::DateTime<Utc>,
) -> Option<Value> {
    if a.resolved_at(now) || !matches_all(&f.matchers, &a.labels) {
        return None;
    }
    let receivers = st.rt.routes.receivers_for(&a.labels);
    if let Some(re) = &f.receiver
        && !receivers.iter().any(|r| re.is_match(r))
    {
        return None;
    }
    let (inh, sil) = st.mute_status(&a.labels, now);
    let suppressed = !inh.is_empty() || !sil.is_empty();
    if (!f.active && !suppressed)
        || (!f.silenced && !sil.is_empty())
        || (!f.inhibited && !inh.is_empty())
    {
        return None;
    }
    Some(gettable(a, &receivers, &inh, &sil))
}

async fn get_alerts(State(a): State<Arc<Alerting>>, RawQuery(q): RawQuery) -> Response {
    let f = match parse_filter(&q) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = Utc::now();
    let st = a.state.lock();
    let mut list: Vec<(&Alert, Value)> = st
        .alerts
        .values()
        .filter_map(|al| filtered(&st, al, &f, now).map(|v| (al, v)))
        .collect();
    list.sort_by_key(|(al, _)| al.fingerprint);
    Json(Value::Array(list.into_iter().map(|(_, v)| v).collect())).into_response()
}

async fn post_alerts(State(a): State<Arc<Alerting>>, body: axum::body::Bytes) -> Response {
    let alerts: Vec<PostableAlert> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid alerts: {e}")),
    };
    match a.push(alerts).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(Error::InvalidAlerts(msg)) => error(StatusCode::BAD_REQUEST, msg),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_groups(State(a): State<Arc<Alerting>>, RawQuery(q): RawQuery) -> Response {
    let f = match parse_filter(&q) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = Utc::now();
    let st = a.state.lock();
    let mut groups: Vec<(String, Value)> = Vec::new();
    for g in st.groups.values() {
        let receiver = st.rt.routes.nodes[g.route].receiver.clone();
        if let Some(re) = &f.receiver
            && !re.is_match(&receiver)
        {
            continue;
        }
        let mut alerts: Vec<&Alert> = g.alerts.values().collect();
        alerts.sort_by(|x, y| crate::alert::notification_order(&x.labels, &y.labels));
        let items: Vec<Value> = alerts
            .into_iter()
            .filter_map(|al| filtered(&st, al, &f, now))
            .collect();
        if items.is_empty() {
            continue;
        }
        groups.push((
            g.key.clone(),
            json!({"labels": g.labels, "receiver": {"name": receiver}, "alerts": items}),
        ));
    }
    groups.sort_by(|x, y| x.0.cmp(&y.0));
    Json(Value::Array(groups.into_iter().map(|(_, v)| v).collect())).into_response()
}

/// A silence passes a filter when, for every filter matcher, it has a
/// matcher on the same label whose value the filter matcher accepts.
fn silence_passes(s: &crate::silence::Silence, filter: &[Matcher]) -> bool {
    filter.iter().all(|fm| {
        s.matchers
            .iter()
            .any(|sm| sm.name == fm.name && fm.matches_value(&sm.value))
    })
}

async fn get_silences(State(a): State<Arc<Alerting>>, RawQuery(q): RawQuery) -> Response {
    let mut filter = Vec::new();
    for (k, v) in query_pairs(&q) {
        if k == "filter" {
            match parse_matchers(&v) {
                Ok(ms) => filter.extend(ms),
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
    }
    let now = Utc::now();
    let st = a.state.lock();
    let mut list: Vec<&crate::silence::Silence> = st
        .silences
        .list()
        .filter(|s| silence_passes(s, &filter))
        .collect();
    // Alertmanager's order: active by end, pending by start, expired newest first.
    let rank = |s: &crate::silence::Silence| match s.state(now) {
        SilenceState::Active => 0,
        SilenceState::Pending => 1,
        SilenceState::Expired => 2,
    };
    list.sort_by(|x, y| {
        rank(x).cmp(&rank(y)).then_with(|| match x.state(now) {
            SilenceState::Active => x.ends_at.cmp(&y.ends_at),
            SilenceState::Pending => x.starts_at.cmp(&y.starts_at),
            SilenceState::Expired => y.ends_at.cmp(&x.ends_at),
        })
    });
    Json(Value::Array(
        list.into_iter().map(|s| s.to_json(now)).collect(),
    ))
    .into_response()
}

async fn post_silence(State(a): State<Arc<Alerting>>, body: axum::body::Bytes) -> Response {
    let p: PostableSilence = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    let now = Utc::now();
    let changed = {
        let mut st = a.state.lock();
        st.silences.upsert(p, now)
    };
    match changed {
        Ok(list) => {
            let id = list.last().map(|s| s.id.clone()).unwrap_or_default();
            let writes = list
                .iter()
                .map(|s| Write::PutSilence(Box::new(s.clone())))
                .collect();
            if let Err(e) = a.store.write(writes).await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
            for s in &list {
                a.publish_silence(s);
            }
            Json(json!({"silenceID": id})).into_response()
        }
        Err(SilenceError::NotFound(id)) => {
            error(StatusCode::NOT_FOUND, format!("silence {id} not found"))
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn get_silence(State(a): State<Arc<Alerting>>, Path(id): Path<String>) -> Response {
    let now = Utc::now();
    let st = a.state.lock();
    match st.silences.get(&id) {
        Some(s) => Json(s.to_json(now)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

async fn delete_silence(State(a): State<Arc<Alerting>>, Path(id): Path<String>) -> Response {
    let now = Utc::now();
    let res = a.state.lock().silences.expire(&id, now);
    match res {
        Ok(s) => {
            if let Err(e) = a
                .store
                .write(vec![Write::PutSilence(Box::new(s.clone()))])
                .await
            {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
            a.publish_silence(&s);
            // Expiring a silence may release alerts; flush them on schedule.
            a.wake.notify_one();
            StatusCode::OK.into_response()
        }
        Err(SilenceError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, format!("silence {id} not found"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_receivers(State(a): State<Arc<Alerting>>) -> Response {
    let cfg = a.runtime.read();
    let list: Vec<Value> = cfg
        .cfg
        .receivers
        .iter()
        .map(|r| json!({"name": r.name.value}))
        .collect();
    Json(Value::Array(list)).into_response()
}

/// The Alertmanager release whose API v2 this server implements, reported
/// as `versionInfo.version` (the version amtool checks).
pub const ALERTMANAGER_API_VERSION: &str = "0.25.0";

/// Alertmanager's `clusterStatus`: this member's name, `ready` or
/// `settling`, and every live member (itself included); `disabled` alone.
pub fn cluster_status(a: &Alerting) -> Value {
    match a.cluster() {
        Some(c) => serde_json::to_value(c.status()).unwrap_or(Value::Null),
        None => json!({"name": "", "peers": [], "status": "disabled"}),
    }
}

async fn get_status(State(a): State<Arc<Alerting>>) -> Response {
    let original = a.runtime.read().cfg.original.clone();
    let uptime = format_go_time(&a.started);
    Json(json!({
        "cluster": cluster_status(&a),
        "config": {"original": original},
        "uptime": uptime,
        // amtool compares `version` with its own and warns on every call
        // when they differ, so it carries the Alertmanager API version this
        // server speaks; `branch` and `revision` say that it is Vigil, and
        // which Vigil.
        "versionInfo": {
            "branch": "vigil",
            "buildDate": "",
            "buildUser": "vigil",
            "goVersion": "rust",
            "revision": concat!("vigil-", env!("CARGO_PKG_VERSION")),
            "version": ALERTMANAGER_API_VERSION,
        },
        "vigil": {"version": env!("CARGO_PKG_VERSION")},
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_repeated_filters() {
        let q =
            Some("filter=alertname%3D%22X%22&filter=sev%3D~%22a%7Cb%22&active=false&x".to_string());
        let pairs = query_pairs(&q);
        assert_eq!(pairs[0], ("filter".into(), "alertname=\"X\"".into()));
        assert_eq!(pairs[1].1, "sev=~\"a|b\"");
        let f = parse_filter(&q).expect("valid filter");
        assert_eq!(f.matchers.len(), 2);
        assert!(!f.active);
        assert_eq!(url_decode("a+b%2"), "a b%2");
    }
}
