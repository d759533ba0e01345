//! Shipping: reads the disk buffer oldest first, merges records into
//! remote_write 1.0 requests and pushes them, retrying with exponential
//! backoff and full jitter.
//!
//! A batch is acknowledged (removed from the buffer) only after the receiver
//! accepted it (2xx) or refused it for good (a 4xx other than 429, counted
//! in `vigil_agent_samples_rejected_total`). 5xx, 429 and network errors are
//! retried forever — the data is safe on disk meanwhile — so samples arrive
//! in collection order, each once, across outages and restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;
use vigil_wire::remote_write::{WriteRequest, decode_write_request, encode_write_request};

use crate::buffer::Record;
use crate::config::RemoteWriteConfig;
use crate::family::now_ms;
use crate::pipeline::Pipeline;

/// Largest decompressed record the shipper will read back from its own
/// buffer (a guard against a corrupt length, not a policy).
const MAX_RECORD_BYTES: usize = 256 << 20;
/// Records merged into one request at most.
const MAX_RECORDS_PER_SEND: usize = 512;

/// What one send attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Worth retrying (5xx, 429, network).
    Retry(String),
    /// Refused for good (4xx other than 429).
    Rejected(String),
}

/// Classifies an HTTP status as remote_write senders do.
pub fn classify(status: u16) -> Option<bool> {
    match status {
        200..=299 => None,
        429 | 500..=599 => Some(true),
        _ => Some(false),
    }
}

/// Exponential backoff with full jitter: a random delay in
/// `[min/2, min(max, min·2^attempt)]`.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let cap = exp.min(max);
    let low = (min / 2).min(cap);
    if cap <= low {
        return cap;
    }
    let span = (cap - low).as_micros() as u64;
    low + Duration::from_micros(rand::rng().random_range(0..=span))
}

/// Merges buffered records (each a compressed `WriteRequest`) into one
/// request. Samples of a series stay in record order, so in time order.
pub fn merge_records(records: &[Record]) -> WriteRequest {
    let mut out = WriteRequest::default();
    let mut index: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    let mut seen_meta = std::collections::HashSet::new();
    for r in records {
        let req = match decode_write_request(&r.payload, MAX_RECORD_BYTES) {
            Ok(req) => req,
            Err(e) => {
                // CRC-checked on read, so this means a bug or a foreign
                // file; skip the record rather than block the queue.
                tracing::error!(seq = r.seq, error = %e, "undecodable buffer record skipped");
                continue;
            }
        };
        for ts in req.timeseries {
            let key: Vec<(String, String)> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            match index.get(&key) {
                Some(&i) => out.timeseries[i].samples.extend(ts.samples),
                None => {
                    index.insert(key, out.timeseries.len());
                    out.timeseries.push(ts);
                }
            }
        }
        for m in req.metadata {
            if seen_meta.insert(m.metric_family_name.clone()) {
                out.metadata.push(m);
            }
        }
    }
    out
}

/// The remote_write sender.
pub struct Shipper {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    cfg: RemoteWriteConfig,
    pipeline: Arc<Pipeline>,
}

impl Shipper {
    pub fn new(cfg: &RemoteWriteConfig, pipeline: Arc<Pipeline>) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static("0.1.0"),
        );
        for (k, v) in &cfg.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?;
            let value = HeaderValue::from_str(v).map_err(|e| format!("header {k:?}: {e}"))?;
            headers.insert(name, value);
        }
        if let Some(f) = &cfg.bearer_token_file {
            let token = std::fs::read_to_string(f)
                .map_err(|e| format!("bearer_token_file {}: {e}", f.display()))?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| "bearer token is not a valid header value".to_string())?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout.0)
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            url: cfg.url.clone(),
            headers,
            cfg: cfg.clone(),
            pipeline,
        })
    }

    async fn send_once(&self, body: Vec<u8>) -> Outcome {
        let resp = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await;
        match resp {
            Err(e) => Outcome::Retry(format!("request failed: {e}")),
            Ok(r) => {
                let status = r.status().as_u16();
                match classify(status) {
                    None => Outcome::Sent,
                    Some(retry) => {
                        let text = r.text().await.unwrap_or_default();
                        let msg = format!(
                            "HTTP {status}: {}",
                            text.chars().take(200).collect::<String>()
                        );
                        if retry {
                            Outcome::Retry(msg)
                        } else {
                            Outcome::Rejected(msg)
                        }
                    }
                }
            }
        }
    }

    /// Sends buffered data until `shutdown`. A send in flight when shutdown
    /// comes is finished (bounded by the request timeout) so its batch is
    /// acknowledged exactly once.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut attempt: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let batch = match self
                .pipeline
                .peek(MAX_RECORDS_PER_SEND, self.cfg.max_samples_per_send)
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "reading the send buffer failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let Some(last) = batch.last() else {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.pipeline.notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            let last_seq = last.seq;
            let samples: u64 = batch.iter().map(|r| u64::from(r.samples)).sum();
            let body = encode_write_request(&merge_records(&batch));
            match self.send_once(body).await {
                Outcome::Sent => {
                    if attempt > 0 {
                        tracing::info!(
                            after_attempts = attempt + 1,
                            "remote_write receiver reachable again"
                        );
                    }
                    attempt = 0;
                    let s = &self.pipeline.stats;
                    s.samples_sent.fetch_add(samples, Ordering::Relaxed);
                    s.requests_sent.fetch_add(1, Ordering::Relaxed);
                    s.last_send_ms
                        .store(u64::try_from(now_ms()).unwrap_or(0), Ordering::Relaxed);
                    self.ack(last_seq);
                }
                Outcome::Rejected(reason) => {
                    attempt = 0;
                    self.pipeline
                        .stats
                        .samples_rejected
                        .fetch_add(samples, Ordering::Relaxed);
                    tracing::error!(%reason, samples, "remote_write receiver refused the batch; dropped");
                    self.ack(last_seq);
                }
                Outcome::Retry(reason) => {
                    self.pipeline
                        .stats
                        .send_failures
                        .fetch_add(1, Ordering::Relaxed);
                    let delay = backoff(attempt, self.cfg.min_backoff.0, self.cfg.max_backoff.0);
                    // Log the first failure and then every 10th, so a long
                    // outage does not flood the journal.
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(%reason, attempt = attempt + 1, retry_in = ?delay, "remote_write failed; data kept in the buffer");
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn ack(&self, seq: u64) {
        if let Err(e) = self.pipeline.ack(seq) {
            tracing::error!(error = %e, "acknowledging sent data in the buffer failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_wire::remote_write::{Label, Sample, TimeSeries};

    #[test]
    fn statuses_are_classified_like_prometheus() {
        assert_eq!(classify(204), None);
        assert_eq!(classify(429), Some(true));
        assert_eq!(classify(503), Some(true));
        assert_eq!(classify(400), Some(false));
        assert_eq!(classify(404), Some(false));
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..40 {
            let d = backoff(attempt, min, max);
            assert!(d >= min / 2 && d <= max, "attempt {attempt}: {d:?}");
        }
        let late: Vec<_> = (0..50).map(|_| backoff(10, min, max)).collect();
        assert!(late.iter().any(|d| *d > Duration::from_secs(1)));
    }

    #[test]
    fn merge_keeps_series_samples_in_order() {
        let rec = |seq: u64, ts: i64| {
            let req = WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    }],
                    samples: vec![Sample {
                        value: ts as f64,
                        timestamp: ts,
                    }],
                    exemplars: vec![],
                }],
                metadata: vec![],
            };
            Record {
                seq,
                samples: 1,
                payload: encode_write_request(&req),
            }
        };
        let merged = merge_records(&[rec(1, 10), rec(2, 20), rec(3, 30)]);
        assert_eq!(merged.timeseries.len(), 1);
        let ts: Vec<i64> = merged.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(ts, vec![10, 20, 30]);
    }
}
