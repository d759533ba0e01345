//! A Prometheus-compatible query API as a backtest's storage (`--url`):
//! rule expressions go to `/api/v1/query_range` and are evaluated there
//! ([`RangeQuery`]); raw samples, for expressions that read what the
//! backtest itself recorded (and so must be evaluated here), come from an
//! instant query of a range selector, which Prometheus answers with the
//! stored samples.
//!
//! Prometheus does not return stale markers from a range selector, so a
//! series read this way ends at its last sample plus the lookback rather
//! than at its stale marker; expressions pushed down are not affected.

use std::time::Duration;

use anyhow::Context as _;
use vigil_promql::{Queryable, SeriesData, StorageError, Value};
use vigil_rules::backtest::RangeQuery;
use vigil_wire::{MatchOp, Matcher};

/// The query API at `url` (`http://host:9090`, without `/api/v1`).
pub struct RemoteApi {
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl RemoteApi {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .context("building the HTTP client")?;
        let base = url
            .trim_end_matches('/')
            .trim_end_matches("/api/v1")
            .to_string();
        let api = Self {
            base,
            client,
            runtime,
        };
        // Fail early and clearly on a wrong URL, not at the first rule.
        api.post("query", &[("query", "1".into()), ("time", "0".into())])
            .with_context(|| format!("{url} does not answer as a Prometheus query API"))?;
        Ok(api)
    }

    fn post(&self, endpoint: &str, form: &[(&str, String)]) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form {
            body.append_pair(k, v);
        }
        let body = body.finish();
        self.runtime.block_on(async {
            let resp = self
                .client
                .post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.with_context(|| format!("POST {url}"))?;
            crate::remote_query::decode(status, &bytes)
                .map_err(|e| anyhow::anyhow!("POST {url}: {e}"))
        })
    }
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Matchers as a PromQL selector (`{__name__="x",job=~"a.*"}`).
fn selector(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::RegexMatch => "=~",
                MatchOp::RegexNoMatch => "!~",
            };
            format!(
                "{}{op}\"{}\"",
                m.name,
                vigil_wire::exposition::escape_label_value(&m.value)
            )
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn matrix(v: Value) -> Result<Vec<SeriesData>, String> {
    match v {
        Value::Matrix(m) => Ok(m),
        other => Err(format!("expected a matrix, got a {}", other.type_name())),
    }
}

impl RangeQuery for RemoteApi {
    fn range_query(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<SeriesData>, String> {
        let v = self
            .post(
                "query_range",
                &[
                    ("query", expr.to_string()),
                    ("start", seconds(start_ms)),
                    ("end", seconds(end_ms)),
                    ("step", seconds(step_ms)),
                ],
            )
            .map_err(|e| format!("{e:#}"))?;
        matrix(v)
    }
}

impl Queryable for RemoteApi {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        // Prometheus 2.x range selectors include both ends.
        let range = (end_ms - start_ms).max(1);
        let v = self
            .post(
                "query",
                &[
                    ("query", format!("{}[{range}ms]", selector(matchers))),
                    ("time", seconds(end_ms)),
                ],
            )
            .map_err(|e| StorageError(format!("{e:#}")))?;
        let mut m = matrix(v).map_err(StorageError)?;
        for s in &mut m {
            s.samples
                .retain(|x| x.timestamp_ms >= start_ms && x.timestamp_ms <= end_ms);
        }
        m.retain(|s| !s.samples.is_empty());
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_round_trip_through_the_parser() {
        let ms = vec![
            Matcher::equal("__name__", "up"),
            Matcher::new("job", MatchOp::RegexMatch, "a\"b.*").expect("regex"),
            Matcher::new("x", MatchOp::NotEqual, "back\\slash").expect("matcher"),
        ];
        let text = selector(&ms);
        let parsed = crate::queries::parse_selector(&text).expect("parses");
        assert_eq!(parsed.len(), 3, "{text}");
        assert_eq!(parsed[1].value, "a\"b.*");
        assert_eq!(parsed[2].value, "back\\slash");
    }
}
