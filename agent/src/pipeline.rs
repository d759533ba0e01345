//! Where collected data goes: the latest snapshot of every collector (for
//! `/metrics`) and, when shipping is on, the on-disk buffer of every
//! remote_write destination (each drained by its own sender, so one
//! destination being down neither blocks nor loses another's samples).
//! Also the agent's own counters (`vigil_agent_*`), each updated in the one
//! place that also logs the event; the shipping ones carry the
//! destination's `remote_name` and `url`, as Prometheus labels its
//! `prometheus_remote_storage_*`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use vigil_wire::remote_write::{MetricType, encode_write_request};

use crate::Collector;
use crate::buffer::DiskBuffer;
use crate::family::{Family, add_labels, add_write_labels, render_text, to_write_request};
use crate::llm::LlmState;

/// Name of the self-metrics collector (rendered live on `/metrics`).
pub const SELF_SOURCE: &str = "agent";

/// The agent's own counters.
#[derive(Debug, Default)]
pub struct SelfStats {
    pub samples_collected: AtomicU64,
    collection_seconds: Mutex<BTreeMap<String, (f64, u64)>>,
}

impl SelfStats {
    pub fn record_collection(&self, collector: &str, took: Duration) {
        let mut m = self.collection_seconds.lock();
        let e = m.entry(collector.to_string()).or_insert((0.0, 0));
        e.0 = took.as_secs_f64();
        e.1 += 1;
    }

    /// Drops a collector that stopped (a scrape target gone).
    pub fn forget(&self, collector: &str) {
        self.collection_seconds.lock().remove(collector);
    }
}

/// The counters of one destination.
#[derive(Debug, Default)]
pub struct ShipStats {
    pub samples_sent: AtomicU64,
    pub requests_sent: AtomicU64,
    pub send_failures: AtomicU64,
    pub samples_rejected: AtomicU64,
    pub buffer_write_failures: AtomicU64,
    pub last_send_ms: AtomicU64,
}

/// One remote_write destination: its buffer, the signal that wakes its
/// sender, and its counters.
pub struct Destination {
    pub name: String,
    pub url: String,
    pub buffer: Arc<Mutex<DiskBuffer>>,
    /// Wakes the sender when new data is buffered.
    pub notify: Arc<Notify>,
    pub stats: ShipStats,
}

impl Destination {
    pub fn new(name: String, url: String, buffer: DiskBuffer) -> Self {
        Self {
            name,
            url,
            buffer: Arc::new(Mutex::new(buffer)),
            notify: Arc::new(Notify::new()),
            stats: ShipStats::default(),
        }
    }
}

/// The hub collectors publish into.
pub struct Pipeline {
    latest: Mutex<BTreeMap<String, Arc<Vec<Family>>>>,
    /// Every destination's buffer, each drained by its own sender
    /// ([`crate::ship`]); empty when shipping is off.
    destinations: Vec<Arc<Destination>>,
    external_labels: BTreeMap<String, String>,
    /// `job` and `instance` of the agent's own series, added to shipped
    /// series that do not carry their own (scraped targets do).
    identity: Vec<(String, String)>,
    pub stats: SelfStats,
    llm: Arc<LlmState>,
    /// The scrape pools' targets (`/api/v1/targets`) and discovery counters.
    pub targets: Arc<crate::scrape::Targets>,
}

impl Pipeline {
    /// `identity` is the agent's (`job`, `instance`), see
    /// [`crate::config::Config::identity`].
    pub fn new(
        destinations: Vec<Destination>,
        external_labels: BTreeMap<String, String>,
        identity: (String, String),
        llm: Arc<LlmState>,
    ) -> Self {
        Self {
            latest: Mutex::new(BTreeMap::new()),
            destinations: destinations.into_iter().map(Arc::new).collect(),
            external_labels,
            identity: vec![("job".into(), identity.0), ("instance".into(), identity.1)],
            stats: SelfStats::default(),
            llm,
            targets: Arc::default(),
        }
    }

    /// Records a collector's snapshot, collected at `timestamp_ms`: kept for
    /// `/metrics` and appended to the send buffer.
    pub fn publish(&self, source: &str, timestamp_ms: i64, mut families: Vec<Family>) {
        add_labels(&mut families, &self.external_labels);
        if !self.destinations.is_empty() {
            let (mut req, n) = to_write_request(&families, timestamp_ms);
            // Only on what is shipped: /metrics is scraped, and the scraper
            // adds its own job and instance.
            add_write_labels(&mut req, &self.identity);
            if n > 0 {
                let body = encode_write_request(&req);
                let samples = u32::try_from(n).unwrap_or(u32::MAX);
                self.stats
                    .samples_collected
                    .fetch_add(n as u64, Ordering::Relaxed);
                for d in &self.destinations {
                    let appended = d.buffer.lock().append(&body, samples);
                    match appended {
                        Ok(_) => d.notify.notify_one(),
                        Err(e) => {
                            d.stats
                                .buffer_write_failures
                                .fetch_add(n as u64, Ordering::Relaxed);
                            tracing::error!(error = %e, source, remote_name = %d.name, samples = n, "cannot write to the send buffer; samples lost for this destination");
                        }
                    }
                }
            }
        } else {
            let n: usize = families.iter().map(Family::len).sum();
            self.stats
                .samples_collected
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        self.latest
            .lock()
            .insert(source.to_string(), Arc::new(families));
    }

    /// Withdraws a collector that stopped (a scrape target gone): its last
    /// snapshot leaves `/metrics` and its collection counters go.
    pub fn forget(&self, source: &str) {
        self.latest.lock().remove(source);
        self.stats.forget(source);
    }

    /// The `/metrics` page: every collector's latest snapshot, with the
    /// self-metrics and LLM aggregates rendered live.
    pub fn render(&self) -> String {
        let latest = self.latest.lock().clone();
        let mut live = self.self_families();
        live.extend(self.llm.snapshot());
        add_labels(&mut live, &self.external_labels);
        let stored = latest
            .iter()
            .filter(|(k, _)| k.as_str() != SELF_SOURCE && k.as_str() != crate::llm::SOURCE)
            .flat_map(|(_, v)| v.iter());
        render_text(stored.chain(live.iter()))
    }

    /// The destinations, for their senders; empty when shipping is off.
    pub fn destinations(&self) -> &[Arc<Destination>] {
        &self.destinations
    }

    /// Flushes the buffers' active segments to stable storage.
    pub fn sync_buffer(&self) {
        for d in &self.destinations {
            if let Err(e) = d.buffer.lock().sync() {
                tracing::warn!(error = %e, remote_name = %d.name, "syncing the send buffer failed");
            }
        }
    }

    /// The `vigil_agent_*` families.
    pub fn self_families(&self) -> Vec<Family> {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut out = vec![Family::single(
            "vigil_agent_samples_collected_total",
            "Samples collected and handed to the send buffers.",
            MetricType::Counter,
            get(&s.samples_collected),
        )];
        type Get = fn(&Destination) -> f64;
        let per_destination: [(&str, &str, MetricType, Get); 10] = [
            (
                "vigil_agent_samples_sent_total",
                "Samples accepted by the remote_write receiver.",
                MetricType::Counter,
                |d| d.stats.samples_sent.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_agent_remote_write_requests_total",
                "remote_write requests accepted by the receiver.",
                MetricType::Counter,
                |d| d.stats.requests_sent.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_agent_remote_write_failures_total",
                "remote_write requests that failed and were retried (5xx, 429, network errors).",
                MetricType::Counter,
                |d| d.stats.send_failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_agent_samples_rejected_total",
                "Samples dropped because the receiver refused them with a 4xx status other than 429.",
                MetricType::Counter,
                |d| d.stats.samples_rejected.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_agent_buffer_write_failures_total",
                "Samples lost because the send buffer could not be written.",
                MetricType::Counter,
                |d| d.stats.buffer_write_failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_agent_last_send_timestamp_seconds",
                "Time of the last accepted remote_write request.",
                MetricType::Gauge,
                |d| d.stats.last_send_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "vigil_agent_buffer_bytes",
                "Bytes of unsent data in the on-disk buffer.",
                MetricType::Gauge,
                |d| d.buffer.lock().pending_bytes() as f64,
            ),
            (
                "vigil_agent_buffer_disk_bytes",
                "Bytes of buffer segment files on disk.",
                MetricType::Gauge,
                |d| d.buffer.lock().disk_bytes() as f64,
            ),
            (
                "vigil_agent_buffer_samples",
                "Unsent samples in the on-disk buffer.",
                MetricType::Gauge,
                |d| d.buffer.lock().pending_samples() as f64,
            ),
            (
                "vigil_agent_buffer_dropped_samples_total",
                "Samples dropped, oldest first, because the on-disk buffer was full.",
                MetricType::Counter,
                |d| d.buffer.lock().dropped_samples() as f64,
            ),
        ];
        if !self.destinations.is_empty() {
            for (name, help, kind, get) in per_destination {
                let mut f = match kind {
                    MetricType::Counter => Family::counter(name, help),
                    _ => Family::gauge(name, help),
                };
                for d in &self.destinations {
                    f.push(
                        &[("remote_name", d.name.as_str()), ("url", d.url.as_str())],
                        get(d),
                    );
                }
                out.push(f);
            }
        }
        let reload = &crate::RELOAD_STATUS;
        out.push(Family::single(
            "vigil_agent_config_last_reload_successful",
            "Whether the last configuration load (start or SIGHUP) succeeded.",
            MetricType::Gauge,
            if reload.successful.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        ));
        out.push(Family::single(
            "vigil_agent_config_last_reload_success_timestamp_seconds",
            "Time of the last successful configuration load.",
            MetricType::Gauge,
            get(&reload.last_success_ms) / 1000.0,
        ));
        let mut dur = Family::gauge(
            "vigil_agent_collection_duration_seconds",
            "Duration of the last collection, per collector.",
        );
        let mut runs = Family::counter(
            "vigil_agent_collections_total",
            "Collections run, per collector.",
        );
        for (name, (secs, n)) in s.collection_seconds.lock().iter() {
            dur.push(&[("collector", name.as_str())], *secs);
            runs.push(&[("collector", name.as_str())], *n as f64);
        }
        out.push(dur);
        out.push(runs);
        out.extend(self.targets.families());
        out.extend(self.llm.self_families());
        out
    }
}

/// Publishes the self-metrics on the global interval so they are shipped.
pub struct SelfCollector {
    pipeline: Arc<Pipeline>,
}

impl SelfCollector {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self { pipeline }
    }
}

impl Collector for SelfCollector {
    fn name(&self) -> String {
        SELF_SOURCE.into()
    }

    async fn collect(&mut self) -> Vec<Family> {
        self.pipeline.self_families()
    }
}
