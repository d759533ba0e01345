//! The two places a report reads from: the collector's own query engine
//! (the scheduled digest) and any Prometheus-compatible HTTP API
//! (`vigil report --url`, which also works against Prometheus).

use std::time::Duration;

use vigil_promql::{Engine, QueryContext, Queryable, Value};
use vigil_wire::Labels;

use super::Source;

/// The collector's engine over its storage.
pub struct EngineSource<'a> {
    pub engine: &'a Engine,
    pub storage: &'a dyn Queryable,
}

fn engine_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Source for EngineSource<'_> {
    fn instant(&self, expr: &str, at_ms: i64) -> Result<Vec<(Labels, f64)>, String> {
        match self
            .engine
            .instant(self.storage, expr, at_ms, &QueryContext::default())
            .map_err(engine_error)?
        {
            Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
            Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
            other => Err(format!("{expr}: expected a vector, got {other:?}")),
        }
    }

    fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<super::Matrix, String> {
        match self
            .engine
            .range(
                self.storage,
                expr,
                start_ms,
                end_ms,
                step_ms,
                &QueryContext::default(),
            )
            .map_err(engine_error)?
        {
            Value::Matrix(m) => Ok(m
                .into_iter()
                .map(|s| {
                    let points = s
                        .samples
                        .iter()
                        .map(|p| (p.timestamp_ms, p.value))
                        .collect();
                    (s.labels, points)
                })
                .collect()),
            other => Err(format!("{expr}: expected a matrix, got {other:?}")),
        }
    }
}

/// A Prometheus-compatible query API over HTTP(S).
pub struct HttpSource {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl HttpSource {
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            client,
            runtime,
        })
    }

    fn get(&self, path: &str, params: &[(&str, String)]) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut req = self
                .client
                .post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form_body(params));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| format!("{url}: HTTP {status}, not a JSON answer: {e}"))?;
            if body["status"] != "success" {
                return Err(format!(
                    "{url}: HTTP {status}: {}",
                    body["error"].as_str().unwrap_or("request failed")
                ));
            }
            Ok(body["data"].clone())
        })
    }
}

/// `application/x-www-form-urlencoded`: unreserved bytes as they are,
/// everything else percent-encoded.
fn form_body(params: &[(&str, String)]) -> String {
    let enc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn parse_value(v: &serde_json::Value) -> Result<(i64, f64), String> {
    let t = v[0].as_f64().ok_or("sample without a timestamp")?;
    let x = v[1]
        .as_str()
        .ok_or("sample without a value")?
        .parse::<f64>()
        .map_err(|e| format!("sample value: {e}"))?;
    Ok(((t * 1000.0).round() as i64, x))
}

fn parse_metric(m: &serde_json::Value) -> Labels {
    Labels::from_pairs(
        m.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
    )
}

impl Source for HttpSource {
    fn instant(&self, expr: &str, at_ms: i64) -> Result<Vec<(Labels, f64)>, String> {
        let data = self.get(
            "/api/v1/query",
            &[
                ("query", expr.to_string()),
                ("time", format!("{:.3}", at_ms as f64 / 1000.0)),
            ],
        )?;
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| Ok((parse_metric(&s["metric"]), parse_value(&s["value"])?.1)))
                .collect(),
            Some("scalar") => Ok(vec![(Labels::empty(), parse_value(&data["result"])?.1)]),
            other => Err(format!("{expr}: expected a vector, got {other:?}")),
        }
    }

    fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<super::Matrix, String> {
        let data = self.get(
            "/api/v1/query_range",
            &[
                ("query", expr.to_string()),
                ("start", format!("{:.3}", start_ms as f64 / 1000.0)),
                ("end", format!("{:.3}", end_ms as f64 / 1000.0)),
                ("step", format!("{:.3}", step_ms as f64 / 1000.0)),
            ],
        )?;
        data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let points = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(parse_value)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((parse_metric(&s["metric"]), points))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_bodies_escape_promql() {
        assert_eq!(
            super::form_body(&[("query", "up{job=\"a b\"}".into()), ("time", "1.5".into())]),
            "query=up%7Bjob%3D%22a%20b%22%7D&time=1.5"
        );
    }
}
