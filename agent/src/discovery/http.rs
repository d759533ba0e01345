//! `http_sd_configs`: Prometheus's HTTP service discovery. Every
//! `refresh_interval` the agent sends `GET url` (`Accept:
//! application/json`, `X-Prometheus-Refresh-Interval-Seconds`); the answer
//! must be `200 OK` with `Content-Type: application/json` (optionally
//! `; charset=utf-8`) and a JSON array of target groups. Each group gets
//! `__meta_url`. Anything else (another status, content type, a body that
//! does not parse, a network error) counts in
//! `prometheus_sd_http_failures_total`, is logged, and leaves the last good
//! targets in place.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use regex::Regex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{HttpSdConfig, SdStats, TargetGroup, Update, parse_groups};

/// The label naming the endpoint a group came from.
pub const META_URL: &str = "__meta_url";

/// Largest answer accepted.
const MAX_BODY: usize = 16 << 20;

/// Prometheus's accepted content types.
static CONTENT_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?i:application/json(;\s*charset=("utf-8"|utf-8))?)$"#)
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// A client for discovery requests.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// One request: the endpoint's groups, each labelled with `__meta_url`.
pub async fn fetch(
    client: &reqwest::Client,
    cfg: &HttpSdConfig,
) -> Result<Vec<TargetGroup>, String> {
    let resp = client
        .get(&cfg.url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            cfg.refresh_interval.0.as_secs().to_string(),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    if !CONTENT_TYPE.is_match(&ct) {
        return Err(format!("unsupported content type {ct:?}"));
    }
    if resp.content_length().is_some_and(|l| l as usize > MAX_BODY) {
        return Err("response too large".into());
    }
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if body.len() > MAX_BODY {
        return Err("response too large".into());
    }
    let text = std::str::from_utf8(&body).map_err(|_| "response is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Err("empty response".into());
    }
    let mut groups = parse_groups(text, false)?;
    for g in &mut groups {
        g.labels.insert(META_URL.into(), cfg.url.clone());
    }
    Ok(groups)
}

/// Runs one `http_sd_configs` entry until `shutdown`, sending its groups to
/// the pool as provider `index` whenever they change.
pub async fn run(
    cfg: HttpSdConfig,
    index: usize,
    tx: mpsc::Sender<Update>,
    stats: Arc<SdStats>,
    client: reqwest::Client,
    shutdown: CancellationToken,
) {
    let mut last: Option<Vec<TargetGroup>> = None;
    let mut failing = false;
    loop {
        let result = tokio::select! {
            r = fetch(&client, &cfg) => r,
            _ = shutdown.cancelled() => return,
        };
        match result {
            Ok(groups) => {
                if failing {
                    tracing::info!(url = %cfg.url, "http_sd_configs: endpoint answers again");
                    failing = false;
                }
                if last.as_ref() != Some(&groups) {
                    last = Some(groups.clone());
                    if tx.send((index, groups)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                stats.http_failures.fetch_add(1, Ordering::Relaxed);
                failing = true;
                tracing::warn!(url = %cfg.url, error = %e, "http_sd_configs: discovery failed; the last good targets stay");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.refresh_interval.0) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_as_prometheus_accepts_them() {
        for (ct, ok) in [
            ("application/json", true),
            ("application/JSON; charset=utf-8", true),
            ("application/json;charset=\"utf-8\"", true),
            ("application/json; charset=latin1", false),
            ("text/plain", false),
            ("", false),
        ] {
            assert_eq!(CONTENT_TYPE.is_match(ct), ok, "{ct}");
        }
    }
}
