//! Shipping: reads a [`DiskBuffer`] oldest first, merges records into
//! remote_write 1.0 requests of at most `max_samples_per_send` samples and
//! pushes them, retrying with capped exponential backoff and full jitter.
//!
//! A batch is acknowledged (removed from the buffer) only after the receiver
//! accepted every part of it (2xx) or refused a part for good (a 4xx other
//! than 429: dropped and counted, as Prometheus does). 5xx, 429 and network
//! errors are retried forever — the data is safe on disk meanwhile — so
//! samples arrive in the order they were buffered, across outages and
//! restarts. Before each send the batch is recorded as in flight in the
//! buffer, so after a crash exactly the same parts are re-sent (at least
//! once, never a reshuffled batch a receiver would refuse as out of order).
//!
//! # Shards
//!
//! Between `min_shards` and `max_shards` requests are in flight at once, as
//! in Prometheus's queue manager; Vigil's rule is simpler and documented:
//! each batch is sent with one shard per `max_samples_per_send` samples
//! waiting in the queue, clamped to `[min_shards, max_shards]` — a backlog
//! (after an outage, or a receiver slower than the input) scales up, a
//! queue that keeps up sends one request at a time. A batch's series are
//! partitioned by a hash of their labels ([`shard_request`]), so a series
//! always travels in one shard, its parts in order; the next batch starts
//! when every shard of this one is done, so each series stays in time order
//! at the receiver. Each shard's progress is recorded in the in-flight
//! record, so a crash resumes every shard at its own next part.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vigil_wire::remote_write::{WriteRequest, decode_write_request, encode_write_request};

use crate::buffer::{DiskBuffer, Inflight, Record};
use crate::client::HttpClient;

/// Largest decompressed record a sender reads back from its own buffer (a
/// guard against a corrupt length, not a policy).
pub const MAX_RECORD_BYTES: usize = 1 << 30;

/// What one send attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Worth retrying (5xx, 429, network).
    Retry(String),
    /// Refused for good (4xx other than 429).
    Rejected(String),
}

/// Classifies an HTTP status as Prometheus's remote_write client does:
/// `None` for success, `Some(true)` to retry, `Some(false)` to give up.
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

/// Samples in a request.
pub fn sample_count(req: &WriteRequest) -> usize {
    req.timeseries.iter().map(|t| t.samples.len()).sum()
}

/// Splits a request into parts of at most `max_samples` samples. A long
/// series is cut into consecutive runs, earlier samples in earlier parts, so
/// sending the parts in order keeps every series in time order. Metadata
/// travels with the first part. Deterministic: the same request always
/// splits the same way (the in-flight record relies on it).
pub fn split_request(req: WriteRequest, max_samples: usize) -> Vec<WriteRequest> {
    let max = max_samples.max(1);
    let mut parts = Vec::new();
    let mut cur = WriteRequest {
        timeseries: Vec::new(),
        metadata: req.metadata,
    };
    let mut n = 0usize;
    for mut ts in req.timeseries {
        if ts.samples.is_empty() {
            continue;
        }
        while !ts.samples.is_empty() {
            if n == max {
                parts.push(std::mem::take(&mut cur));
                n = 0;
            }
            let take = (max - n).min(ts.samples.len());
            let rest = ts.samples.split_off(take);
            n += take;
            cur.timeseries.push(vigil_wire::remote_write::TimeSeries {
                labels: ts.labels.clone(),
                samples: std::mem::replace(&mut ts.samples, rest),
                exemplars: Vec::new(),
            });
        }
    }
    if n > 0 || !cur.metadata.is_empty() {
        parts.push(cur);
    }
    parts
}

/// FNV-1a over a series' label pairs: stable across builds, platforms and
/// restarts (a resumed batch must partition exactly as before).
pub fn series_hash(labels: &[vigil_wire::remote_write::Label]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for l in labels {
        for b in l
            .name
            .bytes()
            .chain([0xff])
            .chain(l.value.bytes())
            .chain([0xfe])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Partitions a request into `shards` requests by [`series_hash`]: every
/// series in exactly one, its samples in their order. Metadata travels with
/// the first shard. Deterministic.
pub fn shard_request(req: WriteRequest, shards: usize) -> Vec<WriteRequest> {
    let n = shards.max(1);
    let mut out: Vec<WriteRequest> = (0..n).map(|_| WriteRequest::default()).collect();
    out[0].metadata = req.metadata;
    for ts in req.timeseries {
        let i = (series_hash(&ts.labels) % n as u64) as usize;
        out[i].timeseries.push(ts);
    }
    out
}

/// The shard count for a backlog of `pending` samples: one shard per
/// `max_samples_per_send`, clamped to `[min_shards, max_shards]`.
pub fn desired_shards(pending: u64, opts: &ShipOptions) -> usize {
    let per = opts.max_samples_per_send.max(1) as u64;
    let want = usize::try_from(pending.div_ceil(per)).unwrap_or(usize::MAX);
    let max = opts.max_shards.max(1);
    want.clamp(opts.min_shards.clamp(1, max), max)
}

/// Posts remote_write 1.0 bodies to one URL.
#[derive(Debug, Clone)]
pub struct RemoteWriteClient {
    http: HttpClient,
    url: String,
}

impl RemoteWriteClient {
    pub fn new(http: HttpClient, url: String) -> Self {
        Self { http, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One attempt: the protocol headers of remote_write 1.0 and a
    /// snappy-compressed protobuf body.
    pub async fn send(&self, body: Vec<u8>) -> Outcome {
        let req = match self.http.request(reqwest::Method::POST, &self.url) {
            Ok(r) => r,
            // An unreadable credential file may be fixed by the operator:
            // retry rather than drop.
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let resp = req
            .header(CONTENT_ENCODING, HeaderValue::from_static("snappy"))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )
            .header(
                "X-Prometheus-Remote-Write-Version",
                HeaderValue::from_static("0.1.0"),
            )
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
                            text.trim().chars().take(200).collect::<String>()
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
}

/// Batching and retry settings (Prometheus's `queue_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipOptions {
    pub max_samples_per_send: usize,
    /// A batch smaller than `max_samples_per_send` waits at most this long
    /// for more samples before it is sent.
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Records read (and merged) per batch and shard at most.
    pub max_records_per_send: usize,
    /// Fewest parallel requests (`queue_config.min_shards`), at least 1.
    pub min_shards: usize,
    /// Most parallel requests (`queue_config.max_shards`), at least 1.
    pub max_shards: usize,
}

impl Default for ShipOptions {
    fn default() -> Self {
        Self {
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            max_records_per_send: 512,
            min_shards: 1,
            max_shards: 1,
        }
    }
}

/// What the shipper reports, for the owner's metrics.
pub trait ShipObserver: Send + Sync {
    /// A part was accepted: its samples, compressed bytes, newest sample
    /// timestamp and how long the request took.
    fn sent(&self, samples: u64, bytes: u64, highest_ts_ms: Option<i64>, took: Duration);
    /// A part was refused for good and dropped.
    fn failed(&self, samples: u64, reason: &str);
    /// A part will be retried.
    fn retried(&self, samples: u64, reason: &str);
    /// A batch is being sent with `shards` parallel shards.
    fn shards(&self, _shards: usize) {}
}

/// Rewrites a merged batch before it is split and sent (external labels,
/// `write_relabel_configs`); it counts what it removes itself.
pub type Transform = Arc<dyn Fn(&mut WriteRequest) + Send + Sync>;

/// Drains one buffer to one receiver.
pub struct Shipper {
    pub queue: Arc<Mutex<DiskBuffer>>,
    pub client: RemoteWriteClient,
    pub opts: ShipOptions,
    pub observer: Arc<dyn ShipObserver>,
    pub transform: Option<Transform>,
    /// Notified when something was appended to the queue.
    pub notify: Arc<Notify>,
    /// Name used in logs.
    pub name: String,
}

/// What to send next.
struct Batch {
    first: u64,
    last: u64,
    samples: u64,
    records: Vec<Record>,
    /// Parts each shard already delivered (a resumed batch); its length is
    /// the shard count.
    done: Vec<u32>,
    resumed: bool,
}

impl Shipper {
    fn next_batch(&self) -> Result<Option<Batch>, crate::BufferError> {
        let q = self.queue.lock();
        let (records, done, resumed) = match q.inflight() {
            Some(Inflight {
                last,
                parts_done,
                shard_parts_done,
                ..
            }) => {
                let done = if shard_parts_done.is_empty() {
                    vec![parts_done]
                } else {
                    shard_parts_done
                };
                (q.peek_through(last)?, done, true)
            }
            None => {
                let shards = desired_shards(q.pending_samples(), &self.opts);
                (
                    q.peek(
                        self.opts.max_records_per_send.saturating_mul(shards),
                        self.opts.max_samples_per_send.saturating_mul(shards),
                    )?,
                    vec![0; shards],
                    false,
                )
            }
        };
        drop(q);
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(None);
        };
        Ok(Some(Batch {
            first: first.seq,
            last: last.seq,
            samples: records.iter().map(|r| u64::from(r.samples)).sum(),
            done,
            resumed,
            records,
        }))
    }

    /// Sends until `shutdown`. A send in flight when shutdown comes is
    /// finished (bounded by the client timeout); a batch interrupted between
    /// parts resumes at the next part after a restart.
    pub async fn run(self, shutdown: CancellationToken) {
        // When the oldest unsent data was first seen while the batch was
        // not full: it waits at most `batch_send_deadline` for more.
        let mut partial_since: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let batch = match self.next_batch() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(queue = %self.name, error = %e, "reading the remote_write queue failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let Some(batch) = batch else {
                partial_since = None;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            if !batch.resumed && (batch.samples as usize) < self.opts.max_samples_per_send {
                let since = *partial_since.get_or_insert_with(Instant::now);
                let waited = since.elapsed();
                if waited < self.opts.batch_send_deadline {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep(self.opts.batch_send_deadline - waited) => {}
                    }
                    // Re-read: the batch is full now, or its deadline passed.
                    continue;
                }
            }
            if !self.send_batch(batch, &shutdown).await {
                return;
            }
            partial_since = None;
        }
    }

    /// Sends every remaining part of a batch, its shards in parallel, and
    /// acknowledges it. Returns false when shutdown interrupted it (the
    /// batch stays queued, each shard's progress recorded).
    async fn send_batch(&self, batch: Batch, shutdown: &CancellationToken) -> bool {
        let mut req = merge_records(&batch.records);
        drop(batch.records);
        if let Some(t) = &self.transform {
            t(&mut req);
        }
        let shards = batch.done.len().max(1);
        self.observer.shards(shards);
        let parts: Vec<Vec<WriteRequest>> = shard_request(req, shards)
            .into_iter()
            .map(|r| split_request(r, self.opts.max_samples_per_send))
            .collect();
        let progress = Arc::new(Mutex::new(Progress {
            first: batch.first,
            last: batch.last,
            done: batch.done.clone(),
        }));
        let remaining = parts
            .iter()
            .zip(&batch.done)
            .any(|(p, d)| (*d as usize) < p.len());
        if remaining {
            progress.lock().record(&self.queue, &self.name);
        }
        let mut all_done = true;
        if shards == 1 {
            let ctx = self.shard_ctx(0, progress.clone(), shutdown.clone());
            let done = batch.done[0] as usize;
            all_done = ctx
                .run(parts.into_iter().next().unwrap_or_default(), done)
                .await;
        } else {
            let mut set = tokio::task::JoinSet::new();
            for (i, shard_parts) in parts.into_iter().enumerate() {
                let done = batch.done.get(i).copied().unwrap_or(0) as usize;
                if done >= shard_parts.len() {
                    continue;
                }
                let ctx = self.shard_ctx(i, progress.clone(), shutdown.clone());
                set.spawn(ctx.run(shard_parts, done));
            }
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(true) => {}
                    Ok(false) => all_done = false,
                    Err(e) => {
                        tracing::error!(queue = %self.name, error = %e, "remote_write shard task failed");
                        all_done = false;
                    }
                }
            }
        }
        if !all_done {
            // Shutdown (or a failed task): the batch stays queued and
            // resumes from the recorded progress.
            return false;
        }
        if let Err(e) = self.queue.lock().ack(batch.last) {
            tracing::error!(queue = %self.name, error = %e, "acknowledging sent data in the queue failed");
        }
        true
    }

    fn shard_ctx(
        &self,
        shard: usize,
        progress: Arc<Mutex<Progress>>,
        shutdown: CancellationToken,
    ) -> ShardCtx {
        ShardCtx {
            shard,
            client: self.client.clone(),
            observer: self.observer.clone(),
            queue: self.queue.clone(),
            progress,
            shutdown,
            name: self.name.clone(),
            min_backoff: self.opts.min_backoff,
            max_backoff: self.opts.max_backoff,
        }
    }
}

/// Per-shard progress of the batch being sent, mirrored to the buffer's
/// in-flight record after every accepted part.
struct Progress {
    first: u64,
    last: u64,
    done: Vec<u32>,
}

impl Progress {
    fn record(&self, queue: &Mutex<DiskBuffer>, name: &str) {
        let rec = Inflight {
            first: self.first,
            last: self.last,
            parts_done: self.done.iter().sum(),
            // One shard keeps the original 20-byte record.
            shard_parts_done: if self.done.len() > 1 {
                self.done.clone()
            } else {
                Vec::new()
            },
        };
        if let Err(e) = queue.lock().set_inflight(rec) {
            // Without the mark a crash may re-send a larger batch; the
            // data itself is still safe.
            tracing::warn!(queue = %name, error = %e, "recording the batch in flight failed");
        }
    }
}

/// What one shard needs to send its parts of a batch.
struct ShardCtx {
    shard: usize,
    client: RemoteWriteClient,
    observer: Arc<dyn ShipObserver>,
    queue: Arc<Mutex<DiskBuffer>>,
    progress: Arc<Mutex<Progress>>,
    shutdown: CancellationToken,
    name: String,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl ShardCtx {
    /// Sends `parts[done..]` in order, retrying each until it is accepted
    /// or refused for good. False when shutdown interrupted it.
    async fn run(self, parts: Vec<WriteRequest>, mut done: usize) -> bool {
        let mut attempt: u32 = 0;
        while done < parts.len() {
            let part = &parts[done];
            let samples = sample_count(part) as u64;
            let highest = part
                .timeseries
                .iter()
                .filter_map(|t| t.samples.last().map(|s| s.timestamp))
                .max();
            let body = encode_write_request(part);
            let bytes = body.len() as u64;
            let started = Instant::now();
            match self.client.send(body).await {
                Outcome::Sent => {
                    if attempt > 0 {
                        tracing::info!(queue = %self.name, shard = self.shard, after_attempts = attempt + 1, "remote_write receiver reachable again");
                    }
                    attempt = 0;
                    self.observer
                        .sent(samples, bytes, highest, started.elapsed());
                }
                Outcome::Rejected(reason) => {
                    attempt = 0;
                    tracing::error!(queue = %self.name, shard = self.shard, %reason, samples, "remote_write receiver refused the batch; dropped");
                    self.observer.failed(samples, &reason);
                }
                Outcome::Retry(reason) => {
                    self.observer.retried(samples, &reason);
                    let delay = backoff(attempt, self.min_backoff, self.max_backoff);
                    // Log the first failure and then every 10th, so a long
                    // outage does not flood the journal.
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(queue = %self.name, shard = self.shard, %reason, attempt = attempt + 1, retry_in = ?delay, "remote_write failed; data kept in the queue");
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
            done += 1;
            let mut p = self.progress.lock();
            if let Some(d) = p.done.get_mut(self.shard) {
                *d = u32::try_from(done).unwrap_or(u32::MAX);
            }
            p.record(&self.queue, &self.name);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_wire::remote_write::{Label, Sample, TimeSeries};

    fn series(name: &str, ts: &[i64]) -> TimeSeries {
        TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            samples: ts
                .iter()
                .map(|&t| Sample {
                    value: t as f64,
                    timestamp: t,
                })
                .collect(),
            exemplars: vec![],
        }
    }

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
        let rec = |seq: u64, ts: i64| Record {
            seq,
            samples: 1,
            payload: encode_write_request(&WriteRequest {
                timeseries: vec![series("up", &[ts])],
                metadata: vec![],
            }),
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

    #[test]
    fn split_keeps_every_sample_once_and_in_order() {
        let req = WriteRequest {
            timeseries: vec![
                series("a", &[1, 2, 3, 4, 5]),
                series("b", &[]),
                series("c", &[7, 8]),
            ],
            metadata: vec![],
        };
        let parts = split_request(req.clone(), 2);
        assert!(parts.iter().all(|p| sample_count(p) <= 2));
        assert_eq!(parts.len(), 4);
        let mut seen: Vec<(String, i64)> = Vec::new();
        for p in &parts {
            for t in &p.timeseries {
                for s in &t.samples {
                    seen.push((t.labels[0].value.clone(), s.timestamp));
                }
            }
        }
        let want: Vec<(String, i64)> = [("a", 1), ("a", 2), ("a", 3), ("a", 4), ("a", 5)]
            .iter()
            .chain([("c", 7), ("c", 8)].iter())
            .map(|(n, t)| (n.to_string(), *t))
            .collect();
        assert_eq!(seen, want);
        assert_eq!(split_request(req.clone(), 2), parts, "deterministic");
        assert_eq!(split_request(req, 1000).len(), 1);
        assert!(split_request(WriteRequest::default(), 10).is_empty());
    }

    #[test]
    fn shards_keep_each_series_whole_and_deterministic() {
        let req = WriteRequest {
            timeseries: (0..40)
                .map(|i| series(&format!("s{i}"), &[1, 2, 3]))
                .collect(),
            metadata: vec![],
        };
        let shards = shard_request(req.clone(), 4);
        assert_eq!(shards.len(), 4);
        assert!(shards.iter().all(|s| !s.timeseries.is_empty()), "spread");
        let mut names: Vec<String> = shards
            .iter()
            .flat_map(|s| s.timeseries.iter().map(|t| t.labels[0].value.clone()))
            .collect();
        names.sort();
        let mut want: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        want.sort();
        assert_eq!(names, want, "every series exactly once");
        assert_eq!(shard_request(req.clone(), 4), shards, "deterministic");
        assert_eq!(shard_request(req, 1).len(), 1);
    }

    #[test]
    fn shard_count_follows_the_backlog_within_bounds() {
        let opts = ShipOptions {
            max_samples_per_send: 100,
            min_shards: 2,
            max_shards: 8,
            ..ShipOptions::default()
        };
        assert_eq!(desired_shards(0, &opts), 2);
        assert_eq!(desired_shards(350, &opts), 4);
        assert_eq!(desired_shards(1_000_000, &opts), 8);
        let one = ShipOptions::default();
        assert_eq!(desired_shards(1_000_000, &one), 1);
        let odd = ShipOptions {
            min_shards: 10,
            max_shards: 3,
            ..ShipOptions::default()
        };
        assert_eq!(desired_shards(0, &odd), 3, "min above max is capped");
    }
}
