//! remote_write forwarding: every sample the store accepts — ingested,
//! imported, recorded by rules (`ALERTS` too), scored by anomaly rules — is
//! queued on disk for each `remote_write` destination and shipped from
//! there, as Prometheus ships its WAL.
//!
//! The queue is fed by the store's [`CommitObserver`] on the store's writer
//! thread, before each group commit: samples enter the queues in commit
//! order (so every series stays in time order at the receiver), and if a
//! queue cannot take them the commit fails and the sender gets a 5xx to
//! retry — an acknowledged sample is always queued. Each destination has
//! its own [`DiskBuffer`] under `<data_dir>/remote_write/<name>/`, bounded
//! by `queue_config.max_bytes` (oldest data dropped and counted when
//! full), drained by a [`Shipper`] that survives receiver outages and
//! restarts (`kill -9` included) with at-least-once delivery, in up to
//! `queue_config.max_shards` parallel requests (series partitioned by hash,
//! the count following the backlog; see [`vigil_queue::ship`]).
//! External labels and `write_relabel_configs` are applied when sending,
//! so a configuration change applies to data already queued.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_queue::ship::{RemoteWriteClient, Transform, split_request};
use vigil_queue::{DiskBuffer, HttpClient, ShipObserver, ShipOptions, Shipper};
use vigil_tsdb::CommitObserver;
use vigil_wire::exposition::{escape_label_value, format_value};
use vigil_wire::remote_write::{self, WriteRequest, encode_write_request};
use vigil_wire::{Labels, Sample};

use crate::config::Config;
use crate::remote::{Relabel, RemoteWriteConfig, relabel};

/// Samples per queue record at most: a huge group commit is cut into
/// records this size so the sender never has to hold one giant record.
const RECORD_SAMPLES: usize = 20_000;

/// The counters of one destination, named after Prometheus's
/// `prometheus_remote_storage_*`.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    pub enqueued: AtomicU64,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub dropped_relabel: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub sends: AtomicU64,
    pub send_micros: AtomicU64,
    pub highest_enqueued_ms: AtomicI64,
    pub highest_sent_ms: AtomicI64,
    pub enqueue_failures: AtomicU64,
    /// Shards of the batch sent last.
    pub shards: AtomicU64,
}

impl ShipObserver for QueueMetrics {
    fn sent(&self, samples: u64, bytes: u64, highest_ts_ms: Option<i64>, took: Duration) {
        self.sent.fetch_add(samples, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.sends.fetch_add(1, Ordering::Relaxed);
        self.send_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if let Some(t) = highest_ts_ms {
            self.highest_sent_ms.fetch_max(t, Ordering::Relaxed);
        }
    }

    fn failed(&self, samples: u64, _reason: &str) {
        self.failed.fetch_add(samples, Ordering::Relaxed);
    }

    fn retried(&self, samples: u64, _reason: &str) {
        self.retried.fetch_add(samples, Ordering::Relaxed);
    }

    fn shards(&self, shards: usize) {
        self.shards.store(shards as u64, Ordering::Relaxed);
    }
}

/// One destination: its queue, its sender (until started) and metrics.
pub struct Queue {
    pub name: String,
    pub url: String,
    buffer: Arc<Mutex<DiskBuffer>>,
    notify: Arc<Notify>,
    pub metrics: Arc<QueueMetrics>,
    max_bytes: u64,
    min_shards: usize,
    max_shards: usize,
    shipper: Mutex<Option<Shipper>>,
}

/// All destinations; the store's commit observer.
pub struct Forwarder {
    pub queues: Vec<Queue>,
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.queues.iter().map(|q| (&q.name, &q.url)))
            .finish()
    }
}

/// Builds the send-time rewrite: external labels first (where the series
/// does not set them), then `write_relabel_configs`, as Prometheus orders
/// them.
fn transform(
    external: Labels,
    steps: Vec<Relabel>,
    metrics: Arc<QueueMetrics>,
) -> Option<Transform> {
    if external.is_empty() && steps.is_empty() {
        return None;
    }
    Some(Arc::new(move |req: &mut WriteRequest| {
        let mut dropped = 0u64;
        req.timeseries.retain_mut(|ts| {
            let mut labels =
                Labels::from_pairs(ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())));
            for l in external.iter() {
                if labels.get(&l.name).is_none() {
                    labels.set(&l.name, l.value.clone());
                }
            }
            match relabel(labels, &steps) {
                Some(l) => {
                    ts.labels = to_proto_labels(&l);
                    true
                }
                None => {
                    dropped += ts.samples.len() as u64;
                    false
                }
            }
        });
        if dropped > 0 {
            metrics
                .dropped_relabel
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }))
}

fn to_proto_labels(l: &Labels) -> Vec<remote_write::Label> {
    l.iter()
        .map(|l| remote_write::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// Why forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("remote_write {name:?}: queue: {source}")]
    Queue {
        name: String,
        source: vigil_queue::BufferError,
    },
    #[error("remote_write {name:?}: {source}")]
    Client {
        name: String,
        source: vigil_queue::ClientError,
    },
}

impl Forwarder {
    /// Opens every destination's queue (recovering what a previous run
    /// left) and builds its sender. `None` when nothing is configured.
    pub fn open(cfg: &Config) -> Result<Option<Arc<Self>>, ForwardError> {
        if cfg.remote_write.is_empty() {
            return Ok(None);
        }
        let external = Labels::from_pairs(cfg.external_labels.clone());
        let mut queues = Vec::new();
        for rw in &cfg.remote_write {
            queues.push(open_queue(cfg, rw, &external)?);
        }
        Ok(Some(Arc::new(Self { queues })))
    }

    /// Starts the senders; each runs until `shutdown`.
    pub fn start(&self, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        self.queues
            .iter()
            .filter_map(|q| q.shipper.lock().take())
            .map(|s| tokio::spawn(s.run(shutdown.child_token())))
            .collect()
    }

    /// Flushes the queues' active segments to stable storage (shutdown).
    pub fn sync(&self) {
        for q in &self.queues {
            if let Err(e) = q.buffer.lock().sync() {
                tracing::warn!(queue = %q.name, error = %e, "syncing the remote_write queue failed");
            }
        }
    }

    /// The `vigil_remote_storage_*` families.
    pub fn render_metrics(&self, out: &mut String) {
        type Get = fn(&Queue, &QueueMetrics, &DiskBuffer) -> f64;
        let families: [(&str, &str, &str, Get); 15] = [
            (
                "vigil_remote_storage_shards",
                "gauge",
                "Parallel requests (shards) of the batch sent last.",
                |_, m, _| m.shards.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_remote_storage_shards_max",
                "gauge",
                "queue_config.max_shards.",
                |q, _, _| q.max_shards as f64,
            ),
            (
                "vigil_remote_storage_shards_min",
                "gauge",
                "queue_config.min_shards.",
                |q, _, _| q.min_shards as f64,
            ),
            (
                "vigil_remote_storage_samples_total",
                "counter",
                "Samples queued for the destination (accepted by the store, in commit order).",
                |_, m, _| m.enqueued.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_remote_storage_samples_sent_total",
                "counter",
                "Samples the receiver accepted.",
                |_, m, _| m.sent.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_remote_storage_samples_failed_total",
                "counter",
                "Samples dropped because the receiver refused them with a non-retryable status (4xx other than 429).",
                |_, m, _| m.failed.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_remote_storage_samples_retried_total",
                "counter",
                "Samples in sends that failed with a retryable error (5xx, 429, network) and were retried.",
                |_, m, _| m.retried.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_remote_storage_samples_pending",
                "gauge",
                "Samples queued on disk and not yet sent.",
                |_, _, b| b.pending_samples() as f64,
            ),
            (
                "vigil_remote_storage_queue_bytes",
                "gauge",
                "Bytes of unsent data in the on-disk queue.",
                |_, _, b| b.pending_bytes() as f64,
            ),
            (
                "vigil_remote_storage_queue_max_bytes",
                "gauge",
                "Bound of the on-disk queue (queue_config.max_bytes).",
                |q, _, _| q.max_bytes as f64,
            ),
            (
                "vigil_remote_storage_sent_bytes_total",
                "counter",
                "Compressed bytes of accepted remote_write requests.",
                |_, m, _| m.sent_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_remote_storage_highest_timestamp_in_seconds",
                "gauge",
                "Newest sample timestamp queued for the destination.",
                |_, m, _| ts_seconds(m.highest_enqueued_ms.load(Ordering::Relaxed)),
            ),
            (
                "vigil_remote_storage_queue_highest_sent_timestamp_seconds",
                "gauge",
                "Newest sample timestamp the receiver accepted.",
                |_, m, _| ts_seconds(m.highest_sent_ms.load(Ordering::Relaxed)),
            ),
            (
                "vigil_remote_storage_enqueue_failures_total",
                "counter",
                "Commits refused because the queue could not be written (the sender got a 5xx and retries).",
                |_, m, _| m.enqueue_failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "vigil_remote_storage_sent_batch_duration_seconds",
                "summary",
                "Duration of accepted remote_write requests.",
                |_, m, _| m.send_micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
        ];
        let labels = |q: &Queue| {
            format!(
                "remote_name=\"{}\",url=\"{}\"",
                escape_label_value(&q.name),
                escape_label_value(&q.url)
            )
        };
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for q in &self.queues {
                let b = q.buffer.lock();
                let v = get(q, &q.metrics, &b);
                drop(b);
                if kind == "summary" {
                    let _ = writeln!(out, "{name}_sum{{{}}} {}", labels(q), format_value(v));
                    let _ = writeln!(
                        out,
                        "{name}_count{{{}}} {}",
                        labels(q),
                        q.metrics.sends.load(Ordering::Relaxed)
                    );
                } else {
                    let _ = writeln!(out, "{name}{{{}}} {}", labels(q), format_value(v));
                }
            }
        }
        let name = "vigil_remote_storage_samples_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Samples not sent, by reason: queue_full (the on-disk queue reached max_bytes and its oldest data was dropped), relabel (dropped by write_relabel_configs).\n# TYPE {name} counter"
        );
        for q in &self.queues {
            let full = q.buffer.lock().dropped_samples();
            let relabeled = q.metrics.dropped_relabel.load(Ordering::Relaxed);
            for (reason, v) in [("queue_full", full), ("relabel", relabeled)] {
                let _ = writeln!(out, "{name}{{{},reason=\"{reason}\"}} {v}", labels(q));
            }
        }
    }
}

fn ts_seconds(ms: i64) -> f64 {
    if ms == i64::MIN {
        0.0
    } else {
        ms as f64 / 1000.0
    }
}

fn open_queue(
    cfg: &Config,
    rw: &RemoteWriteConfig,
    external: &Labels,
) -> Result<Queue, ForwardError> {
    let name = rw.queue_name();
    let dir = cfg.data_dir.join("remote_write").join(&name);
    let q = &rw.queue_config;
    let buffer = DiskBuffer::open(&dir, q.max_bytes.0, q.segment_bytes.0).map_err(|source| {
        ForwardError::Queue {
            name: name.clone(),
            source,
        }
    })?;
    if buffer.pending_records() > 0 {
        tracing::info!(
            queue = %name,
            samples = buffer.pending_samples(),
            "resuming remote_write of data queued by a previous run"
        );
    }
    let http = HttpClient::new(&rw.http().options(rw.remote_timeout.0)).map_err(|source| {
        ForwardError::Client {
            name: name.clone(),
            source,
        }
    })?;
    let metrics = Arc::new(QueueMetrics {
        highest_enqueued_ms: AtomicI64::new(i64::MIN),
        highest_sent_ms: AtomicI64::new(i64::MIN),
        ..QueueMetrics::default()
    });
    // Validated with the configuration, so compiling cannot fail here.
    let steps: Vec<Relabel> = rw
        .write_relabel_configs
        .iter()
        .filter_map(|r| Relabel::compile(r).ok())
        .collect();
    let buffer = Arc::new(Mutex::new(buffer));
    let notify = Arc::new(Notify::new());
    let shipper = Shipper {
        queue: buffer.clone(),
        client: RemoteWriteClient::new(http, rw.url.clone()),
        opts: ShipOptions {
            max_samples_per_send: q.max_samples_per_send,
            batch_send_deadline: q.batch_send_deadline.0,
            min_backoff: q.min_backoff.0,
            max_backoff: q.max_backoff.0,
            min_shards: q.min_shards(),
            max_shards: q.max_shards(),
            ..ShipOptions::default()
        },
        observer: metrics.clone(),
        transform: transform(external.clone(), steps, metrics.clone()),
        notify: notify.clone(),
        name: name.clone(),
    };
    tracing::info!(queue = %name, url = %rw.url, dir = %dir.display(), "remote_write forwarding enabled");
    Ok(Queue {
        name,
        url: rw.url.clone(),
        buffer,
        notify,
        metrics,
        max_bytes: q.max_bytes.0,
        min_shards: q.min_shards(),
        max_shards: q.max_shards(),
        shipper: Mutex::new(Some(shipper)),
    })
}

impl CommitObserver for Forwarder {
    fn before_commit(&self, series: &[(&Labels, &[Sample])]) -> Result<(), String> {
        let mut req = WriteRequest::default();
        let mut highest = i64::MIN;
        let mut total = 0u64;
        for (labels, samples) in series {
            if samples.is_empty() {
                continue;
            }
            total += samples.len() as u64;
            if let Some(last) = samples.last() {
                highest = highest.max(last.timestamp_ms);
            }
            req.timeseries.push(remote_write::TimeSeries {
                labels: to_proto_labels(labels),
                samples: samples
                    .iter()
                    .map(|s| remote_write::Sample {
                        value: s.value,
                        timestamp: s.timestamp_ms,
                    })
                    .collect(),
                exemplars: Vec::new(),
            });
        }
        if total == 0 {
            return Ok(());
        }
        let bodies: Vec<(Vec<u8>, u32)> = split_request(req, RECORD_SAMPLES)
            .iter()
            .map(|p| {
                let n = vigil_queue::ship::sample_count(p);
                (
                    encode_write_request(p),
                    u32::try_from(n).unwrap_or(u32::MAX),
                )
            })
            .collect();
        for q in &self.queues {
            let mut b = q.buffer.lock();
            for (body, n) in &bodies {
                if let Err(e) = b.append(body, *n) {
                    drop(b);
                    q.metrics.enqueue_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(queue = %q.name, error = %e, "cannot write to the remote_write queue; refusing the commit");
                    return Err(format!("remote_write queue {}: {e}", q.name));
                }
            }
            drop(b);
            q.metrics.enqueued.fetch_add(total, Ordering::Relaxed);
            q.metrics
                .highest_enqueued_ms
                .fetch_max(highest, Ordering::Relaxed);
            q.notify.notify_one();
        }
        Ok(())
    }
}

/// The collector's remote endpoints as the server holds them: forwarding
/// queues, the remote rule-query client's metrics and the external
/// Alertmanagers.
#[derive(Default)]
pub struct Remote {
    pub forwarder: Option<Arc<Forwarder>>,
    pub query: Option<(String, Arc<crate::remote_query::RemoteQueryMetrics>)>,
    pub notifier: Option<Arc<crate::notifier::Notifier>>,
}

impl Remote {
    /// Starts the forwarding senders and the Alertmanager notifier.
    pub fn start(&self, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = self
            .forwarder
            .as_ref()
            .map(|f| f.start(shutdown))
            .unwrap_or_default();
        if let Some(n) = &self.notifier {
            tasks.push(tokio::spawn(n.clone().run(shutdown.child_token())));
        }
        tasks
    }

    /// Waits for the senders to stop and flushes the queues (shutdown).
    pub async fn stop(&self, senders: Vec<JoinHandle<()>>) {
        for s in senders {
            if let Err(e) = s.await {
                tracing::error!(error = %e, "remote_write sender task failed");
            }
        }
        if let Some(f) = self.forwarder.clone() {
            let _ = tokio::task::spawn_blocking(move || f.sync()).await;
        }
    }

    pub fn render_metrics(&self, out: &mut String) {
        if let Some(f) = &self.forwarder {
            f.render_metrics(out);
        }
        if let Some((url, m)) = &self.query {
            m.render(url, out);
        }
        if let Some(n) = &self.notifier {
            n.render_metrics(out);
        }
    }
}
