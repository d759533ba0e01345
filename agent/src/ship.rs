//! Shipping: reads the disk buffer oldest first, merges records into
//! remote_write 1.0 requests and pushes them, retrying with exponential
//! backoff and full jitter.
//!
//! A batch is acknowledged (removed from the buffer) only after the receiver
//! accepted it (2xx) or refused it for good (a 4xx other than 429, counted
//! in `vigil_agent_samples_rejected_total`). 5xx, 429 and network errors are
//! retried forever — the data is safe on disk meanwhile — so samples arrive
//! in collection order, each once, across outages and restarts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;
use vigil_wire::remote_write::encode_write_request;

use crate::config::RemoteWriteConfig;
use crate::family::now_ms;
use crate::pipeline::Pipeline;

/// Records merged into one request at most.
const MAX_RECORDS_PER_SEND: usize = 512;

// The status classification, backoff and record merging are the shared
// queue's (the collector's remote_write forwarding uses the same).
pub use vigil_queue::ship::{Outcome, backoff, classify, merge_records};

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
        let mut client = reqwest::Client::builder()
            .timeout(cfg.timeout.0)
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &cfg.tls_config {
            // rustls configured by us: `ca_file` is the only trust anchor.
            let tls = vigil_tls::client_config(&tls.to_client_tls())
                .map_err(|e| format!("remote_write.tls_config: {e}"))?;
            client = client.tls_backend_preconfigured(tls);
        }
        let client = client.build().map_err(|e| e.to_string())?;
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
