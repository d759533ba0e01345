//! Shipping: the agent's remote_write sender is the shared queue's
//! [`vigil_queue::Shipper`] (the collector's remote_write forwarding uses
//! the same), one per destination, each draining that destination's own
//! disk buffer; this module only maps a destination's configuration onto it
//! and its outcomes onto the destination's counters.
//!
//! A batch is acknowledged (removed from the buffer) only after the receiver
//! accepted it (2xx) or refused it for good (a 4xx other than 429, counted
//! in `vigil_agent_samples_rejected_total`). 5xx, 429 and network errors are
//! retried forever with capped exponential backoff — the data is safe on
//! disk meanwhile, and counted in `vigil_agent_remote_write_failures_total`.
//! A batch is recorded as in flight before it is sent, so a retry (also
//! after a restart) re-sends exactly that batch, never a larger one mixing
//! in newer samples that a receiver would refuse whole as out of order.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vigil_queue::ship::RemoteWriteClient;
use vigil_queue::{ClientError, HttpClient, HttpOptions, ShipObserver, ShipOptions, Shipper};
use vigil_wire::identity;

use crate::config::RemoteWriteConfig;
use crate::family::now_ms;
use crate::pipeline::Destination;

/// Records merged into one request at most.
const MAX_RECORDS_PER_SEND: usize = 512;

/// Why the sender could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("remote_write {name:?}: {source}")]
    Client { name: String, source: ClientError },
}

/// Feeds the shipper's outcomes into the destination's `vigil_agent_*`
/// counters.
struct AgentObserver {
    destination: Arc<Destination>,
}

impl ShipObserver for AgentObserver {
    fn sent(&self, samples: u64, _bytes: u64, _highest_ts_ms: Option<i64>, _took: Duration) {
        let s = &self.destination.stats;
        s.samples_sent.fetch_add(samples, Ordering::Relaxed);
        s.requests_sent.fetch_add(1, Ordering::Relaxed);
        s.last_send_ms
            .store(u64::try_from(now_ms()).unwrap_or(0), Ordering::Relaxed);
    }

    fn failed(&self, samples: u64, _reason: &str) {
        // The shipper logs the reason.
        self.destination
            .stats
            .samples_rejected
            .fetch_add(samples, Ordering::Relaxed);
    }

    fn retried(&self, _samples: u64, _reason: &str) {
        // Counted per request, as the metric's help says.
        self.destination
            .stats
            .send_failures
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The HTTP client settings of the agent's `remote_write` block, with the
/// agent's `job`/`instance` in the headers of [`vigil_wire::identity`], by
/// which the collector watches it (`up`, `AgentDown`).
pub fn http_options(cfg: &RemoteWriteConfig, identity: &(String, String)) -> HttpOptions {
    let mut headers = cfg.headers.clone();
    headers.insert(
        identity::JOB_HEADER.into(),
        identity::encode_header_value(&identity.0),
    );
    headers.insert(
        identity::INSTANCE_HEADER.into(),
        identity::encode_header_value(&identity.1),
    );
    HttpOptions {
        headers,
        bearer_token_file: cfg.bearer_token_file.clone(),
        basic_auth: None,
        // rustls configured by vigil-tls: `ca_file` is the only trust anchor.
        tls: cfg
            .tls_config
            .as_ref()
            .map(|t| t.to_client_tls())
            .unwrap_or_default(),
        timeout: cfg.timeout.0,
        user_agent: concat!("vigil-agent/", env!("CARGO_PKG_VERSION")).into(),
    }
}

/// The remote_write sender draining one destination's buffer; run it with
/// [`Shipper::run`]. Fails on unreadable credential or certificate files.
pub fn shipper(
    cfg: &RemoteWriteConfig,
    identity: &(String, String),
    destination: Arc<Destination>,
) -> Result<Shipper, ShipError> {
    let http =
        HttpClient::new(&http_options(cfg, identity)).map_err(|source| ShipError::Client {
            name: destination.name.clone(),
            source,
        })?;
    Ok(Shipper {
        queue: destination.buffer.clone(),
        client: RemoteWriteClient::new(http, cfg.url.clone()),
        opts: ShipOptions {
            max_samples_per_send: cfg.max_samples_per_send,
            batch_send_deadline: cfg.batch_send_deadline.0,
            min_backoff: cfg.min_backoff.0,
            max_backoff: cfg.max_backoff.0,
            max_records_per_send: MAX_RECORDS_PER_SEND,
            // One request at a time: an agent's few samples per collection
            // never build a backlog worth parallel requests.
            min_shards: 1,
            max_shards: 1,
        },
        notify: destination.notify.clone(),
        name: destination.name.clone(),
        observer: Arc::new(AgentObserver { destination }),
        // External labels are added when data enters the buffer.
        transform: None,
    })
}
