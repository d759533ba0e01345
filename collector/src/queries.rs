//! The read side of Prometheus's HTTP API: `/api/v1/query`,
//! `/api/v1/query_range`, `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, `/api/v1/metadata` and friends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use serde_json::{Value, json};
use vigil_promql::{ErrorKind, QueryContext, QueryError};
use vigil_wire::Matcher;

use crate::api::{ApiError, ApiResult, ErrorType, success, success_with};
use crate::params::{MAX_TIME_MS, MIN_TIME_MS, Params, now_ms, parse_duration_param, parse_time};
use crate::server::App;

const MAX_POINTS_PER_SERIES: i64 = 11_000;

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(s) => parse_time(s)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{name}\": {e}"))),
    }
}

fn query_error(app: &App, e: QueryError) -> ApiError {
    let kind = match e.kind {
        ErrorKind::BadData => ErrorType::BadData,
        ErrorKind::Execution => ErrorType::Execution,
        ErrorKind::Timeout => ErrorType::Timeout,
        ErrorKind::Canceled => ErrorType::Canceled,
    };
    app.telemetry.query_error(kind.as_str());
    ApiError {
        kind,
        message: e.message,
    }
}

/// Runs a PromQL evaluation on the blocking pool under the concurrency
/// limit and the timeout; a query that outlives its timeout is told to stop
/// through its cancel flag.
async fn evaluate<F>(app: &Arc<App>, p: &Params, eval: F) -> ApiResult
where
    F: FnOnce(&App, &QueryContext) -> Result<vigil_promql::Value, QueryError> + Send + 'static,
{
    let mut timeout = app.cfg.query.timeout.0;
    if let Some(t) = p.get("timeout").filter(|t| !t.is_empty()) {
        let ms = parse_duration_param(t)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"timeout\": {e}")))?;
        if ms > 0 {
            timeout = timeout.min(Duration::from_millis(ms as u64));
        }
    }
    let permit = app
        .query_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal("query limiter closed", e))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let ctx = QueryContext {
        cancel: Some(cancel.clone()),
        timeout: Some(timeout),
    };
    let worker = app.clone();
    let started = Instant::now();
    let handle = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        eval(&worker, &ctx)
    });
    let outcome = tokio::time::timeout(timeout + Duration::from_millis(250), handle).await;
    app.telemetry.queries_total.fetch_add(1, Ordering::Relaxed);
    app.telemetry
        .query_seconds_sum_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    match outcome {
        Err(_) => {
            cancel.store(true, Ordering::Relaxed);
            app.telemetry.query_error("timeout");
            Err(ApiError {
                kind: ErrorType::Timeout,
                message: "query timed out in query execution".into(),
            })
        }
        Ok(Err(join)) => Err(ApiError::internal("query worker failed", join)),
        Ok(Ok(Err(e))) => Err(query_error(app, e)),
        Ok(Ok(Ok(value))) => Ok(success_with(|out| value.write_api_json(out))),
    }
}

fn query_param(p: &Params) -> Result<String, ApiError> {
    p.get("query")
        .filter(|q| !q.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query must not be empty"))
}

/// `GET|POST /api/v1/query`.
pub async fn instant_query(State(app): State<Arc<App>>, p: Params) -> ApiResult {
    let query = query_param(&p)?;
    let at = time_param(&p, "time", now_ms())?;
    evaluate(&app, &p, move |app, ctx| {
        app.engine.instant(&app.queryable(), &query, at, ctx)
    })
    .await
}

/// `GET|POST /api/v1/query_range`.
pub async fn range_query(State(app): State<Arc<App>>, p: Params) -> ApiResult {
    let query = query_param(&p)?;
    let start = p
        .get("start")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"start\": missing"))
        .and_then(|s| {
            parse_time(s)
                .map_err(|e| ApiError::bad_data(format!("invalid parameter \"start\": {e}")))
        })?;
    let end = p
        .get("end")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"end\": missing"))
        .and_then(|s| {
            parse_time(s).map_err(|e| ApiError::bad_data(format!("invalid parameter \"end\": {e}")))
        })?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let step = p
        .get("step")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"step\": missing"))
        .and_then(|s| {
            parse_duration_param(s)
                .map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))
        })?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    evaluate(&app, &p, move |app, ctx| {
        app.engine
            .range(&app.queryable(), &query, start, end, step, ctx)
    })
    .await
}

/// Parses `match[]` selectors into matcher sets.
fn matcher_sets(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for sel in p.get_all("match[]") {
        sets.push(parse_selector(sel)?);
    }
    Ok(sets)
}

/// Parses one series selector (`up{job="x"}`) into matchers.
pub fn parse_selector(sel: &str) -> Result<Vec<Matcher>, ApiError> {
    let expr = vigil_promql::parse(sel)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {}", e.message)))?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(ApiError::bad_data(format!(
            "invalid parameter \"match[]\": {sel:?} is not a series selector"
        )));
    };
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(vigil_wire::METRIC_NAME_LABEL, name.clone()));
    }
    for m in vs.matchers.matchers.iter() {
        let op = match &m.op {
            promql_parser::label::MatchOp::Equal => vigil_wire::MatchOp::Equal,
            promql_parser::label::MatchOp::NotEqual => vigil_wire::MatchOp::NotEqual,
            promql_parser::label::MatchOp::Re(_) => vigil_wire::MatchOp::RegexMatch,
            promql_parser::label::MatchOp::NotRe(_) => vigil_wire::MatchOp::RegexNoMatch,
        };
        out.push(
            Matcher::new(m.name.clone(), op, m.value.clone())
                .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))?,
        );
    }
    if out.iter().all(Matcher::matches_empty) {
        return Err(ApiError::bad_data(
            "match[] must contain at least one non-empty matcher",
        ));
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> Result<T, vigil_tsdb::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let worker = app.clone();
    match tokio::task::spawn_blocking(move || f(&worker)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError {
            kind: ErrorType::Execution,
            message: e.to_string(),
        }),
        Err(e) => Err(ApiError::internal("storage worker failed", e)),
    }
}

/// `GET|POST /api/v1/series`.
pub async fn series(State(app): State<Arc<App>>, p: Params) -> ApiResult {
    let sets = matcher_sets(&p)?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let start = time_param(&p, "start", MIN_TIME_MS)?;
    let end = time_param(&p, "end", MAX_TIME_MS)?;
    let limit = limit_param(&p)?;
    let series = blocking(&app, move |app| app.db.series(&sets, start, end)).await?;
    let data: Vec<Value> = series
        .iter()
        .take(limit)
        .map(|labels| {
            let obj: serde_json::Map<String, Value> = labels
                .iter()
                .map(|l| (l.name.clone(), Value::String(l.value.clone())))
                .collect();
            Value::Object(obj)
        })
        .collect();
    Ok(success(Value::Array(data)))
}

fn limit_param(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None | Some("") | Some("0") => Ok(usize::MAX),
        Some(s) => s.parse::<usize>().map_err(|_| {
            ApiError::bad_data(format!(
                "invalid parameter \"limit\": {s:?} is not a number"
            ))
        }),
    }
}

/// `GET|POST /api/v1/labels`.
pub async fn label_names(State(app): State<Arc<App>>, p: Params) -> ApiResult {
    let sets = matcher_sets(&p)?;
    let start = time_param(&p, "start", MIN_TIME_MS)?;
    let end = time_param(&p, "end", MAX_TIME_MS)?;
    let limit = limit_param(&p)?;
    let names = blocking(&app, move |app| app.db.label_names(&sets, start, end)).await?;
    Ok(success(json!(
        names.into_iter().take(limit).collect::<Vec<_>>()
    )))
}

/// `GET /api/v1/label/<name>/values`.
pub async fn label_values(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    p: Params,
) -> ApiResult {
    if name != vigil_wire::METRIC_NAME_LABEL && !vigil_wire::labels::is_valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let sets = matcher_sets(&p)?;
    let start = time_param(&p, "start", MIN_TIME_MS)?;
    let end = time_param(&p, "end", MAX_TIME_MS)?;
    let limit = limit_param(&p)?;
    let values = blocking(&app, move |app| {
        app.db.label_values(&name, &sets, start, end)
    })
    .await?;
    Ok(success(json!(
        values.into_iter().take(limit).collect::<Vec<_>>()
    )))
}

/// `GET /api/v1/metadata`: type, help and unit per metric, from ingested
/// metadata (remote_write metadata and `# HELP`/`# TYPE` lines).
pub async fn metadata(State(app): State<Arc<App>>, p: Params) -> ApiResult {
    let metric = p
        .get("metric")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let limit = limit_param(&p)?;
    let all = blocking(&app, |app| app.db.metadata()).await?;
    let mut data = serde_json::Map::new();
    for (name, meta) in all {
        if metric.as_ref().is_some_and(|m| *m != name) {
            continue;
        }
        if data.len() >= limit {
            break;
        }
        data.insert(
            name,
            json!([{
                "type": meta.metric_type.as_prometheus_str(),
                "help": meta.help,
                "unit": meta.unit,
            }]),
        );
    }
    Ok(success(Value::Object(data)))
}

/// `GET|POST /api/v1/query_exemplars`: Vigil stores no exemplars.
pub async fn query_exemplars() -> ApiResult {
    Ok(success(json!([])))
}

/// `GET /api/v1/status/buildinfo`.
pub async fn buildinfo() -> ApiResult {
    Ok(success(json!({
        // Grafana enables features by the Prometheus version it sees; Vigil
        // answers as the Prometheus release whose API it implements.
        "version": "2.42.0",
        "vigilVersion": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("VIGIL_GIT_REVISION").unwrap_or("unknown"),
        "branch": "main",
        "buildUser": "vigil",
        "buildDate": "",
        "goVersion": "rust",
    })))
}

/// `GET /api/v1/rules`, as Prometheus answers it.
pub async fn rules(State(app): State<Arc<App>>, p: Params) -> ApiResult {
    let type_filter = p.get("type").filter(|t| !t.is_empty());
    let filter = vigil_rules::RuleTypeFilter::parse(type_filter).map_err(ApiError::bad_data)?;
    let mut data = app.rules.rules_json(type_filter);
    // Anomaly rules are alerting rules in groups of their own.
    if let Some(groups) = data["groups"].as_array_mut() {
        groups.extend(app.anomaly.rules_json(filter));
    }
    Ok(success(data))
}

/// `GET /api/v1/alerts`: every pending or firing alert of the rule engine,
/// threshold and anomaly rules alike.
pub async fn alerts(State(app): State<Arc<App>>) -> ApiResult {
    let mut data = app.rules.alerts_json();
    if let Some(alerts) = data["alerts"].as_array_mut() {
        alerts.extend(app.anomaly.alerts_json());
    }
    Ok(success(data))
}
