//! Rules against a remote Prometheus-compatible query API
//! (`rules.remote_query`), as Thanos Ruler does: every recording and
//! alerting rule expression, and the `query` template function, is sent to
//! `<url>/api/v1/query` and evaluated there, where the data lives. Rule
//! output (recorded series, `ALERTS`, `ALERTS_FOR_STATE`) is still written
//! to the local store, and from there forwarded by `remote_write` when it
//! is configured; the restore of alert `for` state after a restart reads
//! `ALERTS_FOR_STATE` from the local store, where the rules wrote it.
//!
//! A failed remote query (network, timeout, non-2xx, `status: error`) fails
//! that rule's evaluation: it shows in the rule's `health`/`lastError` on
//! `/api/v1/rules`, in `vigil_rule_evaluation_failures_total` and in
//! `vigil_rules_remote_query_failures_total`; the rule runs again at its
//! next interval.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use vigil_promql::{Queryable, SeriesData, StorageError, Value, VectorSample};
use vigil_queue::HttpClient;
use vigil_wire::{Labels, Matcher, Sample};

use crate::remote::RemoteQueryConfig;
use crate::storage::TsdbQueryable;

/// Counters of the remote query client.
#[derive(Debug, Default)]
pub struct RemoteQueryMetrics {
    pub queries: AtomicU64,
    pub failures: AtomicU64,
    pub micros: AtomicU64,
}

impl RemoteQueryMetrics {
    pub fn render(&self, url: &str, out: &mut String) {
        let url = vigil_wire::exposition::escape_label_value(url);
        for (name, kind, help, v) in [
            (
                "vigil_rules_remote_query_requests_total",
                "counter",
                "Rule queries sent to the remote query API.",
                self.queries.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_rules_remote_query_failures_total",
                "counter",
                "Rule queries that failed (network, timeout, HTTP or PromQL error).",
                self.failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_rules_remote_query_duration_seconds_total",
                "counter",
                "Time spent in remote rule queries.",
                self.micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{url=\"{url}\"}} {}",
                vigil_wire::exposition::format_value(v)
            );
        }
    }
}

/// Storage for the rule manager: expressions go to the remote API, raw
/// selects (the `for`-state restore) to the local store.
pub struct RemoteQueryable {
    http: HttpClient,
    endpoint: String,
    pub url: String,
    timeout: Duration,
    local: TsdbQueryable,
    runtime: tokio::runtime::Handle,
    pub metrics: Arc<RemoteQueryMetrics>,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<ApiSample>),
    Matrix(Vec<ApiSeries>),
    Scalar((f64, String)),
    String((f64, String)),
}

#[derive(Deserialize)]
struct ApiSample {
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct ApiSeries {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad sample value {s:?}")),
    }
}

fn ms(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

/// Turns a Prometheus API response body into a query value.
pub(crate) fn decode(status: u16, body: &[u8]) -> Result<Value, String> {
    let resp: ApiResponse = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        format!(
            "HTTP {status}: unreadable response ({e}): {}",
            text.trim().chars().take(200).collect::<String>()
        )
    })?;
    if resp.status != "success" {
        return Err(format!(
            "HTTP {status}: {}: {}",
            resp.error_type.unwrap_or_else(|| "error".into()),
            resp.error.unwrap_or_default()
        ));
    }
    let data = resp
        .data
        .ok_or_else(|| "response without data".to_string())?;
    Ok(match data {
        ApiData::Vector(v) => Value::Vector(
            v.into_iter()
                .map(|s| {
                    Ok(VectorSample {
                        labels: Labels::from_pairs(s.metric),
                        t_ms: ms(s.value.0),
                        v: parse_value(&s.value.1)?,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        ApiData::Matrix(m) => Value::Matrix(
            m.into_iter()
                .map(|s| {
                    Ok(SeriesData {
                        labels: Labels::from_pairs(s.metric),
                        samples: s
                            .values
                            .iter()
                            .map(|(t, v)| Ok(Sample::new(ms(*t), parse_value(v)?)))
                            .collect::<Result<_, String>>()?,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        ApiData::Scalar((t, v)) => Value::Scalar {
            t_ms: ms(t),
            v: parse_value(&v)?,
        },
        ApiData::String((t, s)) => Value::String { t_ms: ms(t), s },
    })
}

impl RemoteQueryable {
    pub fn new(
        cfg: &RemoteQueryConfig,
        local: TsdbQueryable,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, vigil_queue::ClientError> {
        let http = HttpClient::new(&cfg.http().options(cfg.timeout.0))?;
        Ok(Self {
            http,
            endpoint: format!("{}/api/v1/query", cfg.url.trim_end_matches('/')),
            url: cfg.url.clone(),
            timeout: cfg.timeout.0,
            local,
            runtime,
            metrics: Arc::new(RemoteQueryMetrics::default()),
        })
    }

    async fn query(
        http: HttpClient,
        endpoint: String,
        expr: String,
        at_ms: i64,
    ) -> Result<Value, String> {
        let time = format!("{}.{:03}", at_ms.div_euclid(1000), at_ms.rem_euclid(1000));
        let req = http
            .request(reqwest::Method::POST, &endpoint)
            .map_err(|e| e.to_string())?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", &expr)
            .append_pair("time", &time)
            .finish();
        let resp = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        decode(status, &body)
    }
}

impl Queryable for RemoteQueryable {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        self.local.select(matchers, start_ms, end_ms)
    }

    fn instant_query(&self, expr: &str, at_ms: i64) -> Option<Result<Value, StorageError>> {
        let started = Instant::now();
        self.metrics.queries.fetch_add(1, Ordering::Relaxed);
        // Rules evaluate on blocking threads; the request runs on the
        // runtime and this thread waits for it (never `block_on`, which
        // would panic if called from a runtime thread).
        let (tx, rx) = std::sync::mpsc::channel();
        let fut = Self::query(
            self.http.clone(),
            self.endpoint.clone(),
            expr.to_string(),
            at_ms,
        );
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let result = match rx.recv_timeout(self.timeout + Duration::from_secs(5)) {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        self.metrics
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.metrics.failures.fetch_add(1, Ordering::Relaxed);
        }
        Some(result.map_err(|e| StorageError(format!("remote query {}: {e}", self.endpoint))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_api_answers_are_decoded() {
        let v = decode(
            200,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1700000000.123,"1"]},{"metric":{},"value":[1700000000.123,"+Inf"]}]}}"#,
        )
        .expect("vector");
        let Value::Vector(v) = v else {
            panic!("not a vector")
        };
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].labels.get("job"), Some("a"));
        assert_eq!(v[0].t_ms, 1_700_000_000_123);
        assert_eq!(v[0].v, 1.0);
        assert!(v[1].v.is_infinite());
        let s = decode(
            200,
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"NaN"]}}"#,
        )
        .expect("scalar");
        assert!(matches!(s, Value::Scalar { v, .. } if v.is_nan()));
    }

    #[test]
    fn errors_carry_the_api_error_type_and_message() {
        let e = decode(
            400,
            br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\""}"#,
        )
        .expect_err("error");
        assert_eq!(e, "HTTP 400: bad_data: invalid parameter \"query\"");
        let e = decode(502, b"<html>bad gateway</html>").expect_err("not json");
        assert!(e.starts_with("HTTP 502: unreadable response"), "{e}");
    }
}
