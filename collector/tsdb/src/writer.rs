//! The writer thread: owns the only read-write SQLite connection and applies
//! every mutation. Concurrent `append` calls queue on a channel; the thread
//! drains whatever is queued into one group and commits it as a single
//! transaction holding one compact wal record, then makes the samples
//! visible in the heads and answers every caller. Chunks cut from heads ride
//! along in the next transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, params};
use tracing::{debug, error, info};
use vigil_wire::{Labels, METRIC_NAME_LABEL, Sample};

use crate::chunk;
use crate::codec::{self, WalWriter};
use crate::db::SeriesHint;
use crate::head::{CutChunk, State};
use crate::index::SeriesId;
use crate::limits::GroupCreations;
use crate::{
    AppendOutcome, Budget, Error, MetricMeta, Options, RejectReason, SeriesSamples, store,
};

/// A group stops growing past this many samples, bounding commit latency
/// and the size of one wal record.
const MAX_GROUP_SAMPLES: usize = 1 << 20;

/// Compaction merges a series' consecutive stored chunks into chunks of
/// at most this many samples...
pub const COMPACT_MAX_SAMPLES: usize = 2048;
/// ...spanning at most this long (retention deletes whole chunks, so this
/// is also how long past the retention period data may linger).
const COMPACT_MAX_SPAN_MS: i64 = 12 * 3600 * 1000;

/// How much writer time one compaction pass may take: the retention
/// command's pass (every minute in the collector) and the shutdown flush's.
const COMPACT_BUDGET: Duration = Duration::from_secs(2);
const COMPACT_FLUSH_BUDGET: Duration = Duration::from_secs(30);

/// How often the wal is trimmed to the oldest record a head still needs.
const WAL_TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Upper bounds (seconds) of the commit-latency histogram.
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub type Reply<T> = Sender<Result<T, Error>>;

/// An append's answer carries its batch back, so the label strings are
/// freed on the caller's thread rather than on the single writer thread
/// (freeing them was a fifth of the writer's time). Called once, on the
/// writer thread: it must only hand the answer on (a channel send).
pub type AppendReply = Box<dyn FnOnce(Result<AppendOutcome, Error>, Vec<SeriesSamples>) + Send>;

pub enum Cmd {
    Append {
        batch: Vec<SeriesSamples>,
        /// The stored series of `batch[i]`, where the caller found it.
        hints: Vec<Option<SeriesHint>>,
        now_ms: i64,
        /// Series budgets; `None` creates series without limit.
        budget: Option<Budget>,
        reply: AppendReply,
    },
    SetMeta {
        metric: String,
        meta: MetricMeta,
        reply: Reply<()>,
    },
    Flush {
        reply: Reply<()>,
    },
    Retention {
        now_ms: i64,
        reply: Reply<u64>,
    },
}

/// Counters behind [`crate::Stats`].
#[derive(Debug, Default)]
pub struct Counters {
    pub head_samples: u64,
    pub chunk_count: u64,
    pub chunk_bytes: u64,
    pub chunk_samples: u64,
    pub samples_appended_total: u64,
    pub rejected_total: BTreeMap<RejectReason, u64>,
    pub commits_total: u64,
    pub commit_seconds_sum: f64,
    /// Non-cumulative counts per bucket of [`COMMIT_BUCKETS`].
    pub commit_buckets: [u64; COMMIT_BUCKETS.len()],
}

impl Counters {
    fn observe_commit(&mut self, secs: f64) {
        self.commits_total += 1;
        self.commit_seconds_sum += secs;
        if let Some(i) = COMMIT_BUCKETS.iter().position(|&b| secs <= b) {
            self.commit_buckets[i] += 1;
        }
    }

    /// Chunk totals once `chunks` are stored.
    fn totals_with(&self, chunks: &[(SeriesId, CutChunk)]) -> store::ChunkTotals {
        store::ChunkTotals {
            count: self.chunk_count + chunks.len() as u64,
            bytes: self.chunk_bytes + chunks.iter().map(|(_, c)| c.data.len() as u64).sum::<u64>(),
            samples: self.chunk_samples + chunks.iter().map(|(_, c)| u64::from(c.n)).sum::<u64>(),
        }
    }

    fn add_chunks(&mut self, chunks: &[(SeriesId, CutChunk)]) {
        for (_, c) in chunks {
            self.chunk_count += 1;
            self.chunk_bytes += c.data.len() as u64;
            self.chunk_samples += u64::from(c.n);
            self.head_samples = self.head_samples.saturating_sub(u64::from(c.n));
        }
    }
}

/// State shared between the writer thread and [`crate::Db`].
pub struct Shared {
    pub state: RwLock<State>,
    pub counters: Mutex<Counters>,
    pub opts: Options,
}

pub struct Writer {
    /// Declared before `conn`, so it stops before the connection closes.
    pub _checkpointer: crate::checkpoint::Checkpointer,
    pub conn: Connection,
    pub shared: Arc<Shared>,
    pub next_series_id: SeriesId,
    pub next_wal_id: u64,
    pub last_trim: Instant,
    /// Newest timestamp accepted so far: the store's notion of "now" in data
    /// time, used to cut heads of series that stopped receiving samples.
    pub max_t_seen: i64,
    /// Label strings already in the `symbols` table.
    pub symbols: codec::Symbols,
    /// Timestamp columns new sealed chunks may share.
    pub columns: crate::columns::Columns,
    /// Compaction's bound on a merged chunk's bytes: half the database's
    /// page size.
    pub compact_max_bytes: usize,
}

struct AppendReq {
    batch: Vec<SeriesSamples>,
    hints: Vec<Option<SeriesHint>>,
    now_ms: i64,
    budget: Option<Budget>,
    reply: AppendReply,
}

impl Writer {
    /// Runs until every sender is dropped.
    pub fn run(mut self, rx: Receiver<Cmd>) {
        let mut next: Option<Cmd> = None;
        loop {
            let cmd = match next.take() {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            match cmd {
                Cmd::Append {
                    batch,
                    hints,
                    now_ms,
                    budget,
                    reply,
                } => {
                    let mut samples = batch.iter().map(|s| s.samples.len()).sum::<usize>();
                    let mut group = vec![AppendReq {
                        batch,
                        hints,
                        now_ms,
                        budget,
                        reply,
                    }];
                    while samples < MAX_GROUP_SAMPLES {
                        match rx.try_recv() {
                            Ok(Cmd::Append {
                                batch,
                                hints,
                                now_ms,
                                budget,
                                reply,
                            }) => {
                                samples += batch.iter().map(|s| s.samples.len()).sum::<usize>();
                                group.push(AppendReq {
                                    batch,
                                    hints,
                                    now_ms,
                                    budget,
                                    reply,
                                });
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                }
                Cmd::SetMeta {
                    metric,
                    meta,
                    reply,
                } => {
                    let _ = reply.send(self.set_meta(&metric, &meta));
                }
                Cmd::Flush { reply } => {
                    let _ = reply.send(self.flush());
                }
                Cmd::Retention { now_ms, reply } => {
                    let _ = reply.send(self.retention(now_ms));
                }
            }
        }
        debug!("tsdb writer stopped");
    }

    fn commit_group(&mut self, group: Vec<AppendReq>) {
        let opts = self.shared.opts.clone();
        let retention_ms = opts.retention_ms();
        let mut outcomes = vec![AppendOutcome::default(); group.len()];
        // Newest sample per series as this group sees it (not yet in heads).
        let mut overlay: HashMap<SeriesId, (i64, u64), crate::index::IdHash> =
            HashMap::with_capacity_and_hasher(
                group.iter().map(|r| r.batch.len()).sum(),
                Default::default(),
            );
        let mut new_ids: HashMap<Labels, SeriesId> = HashMap::new();
        let mut new_series: Vec<(SeriesId, Labels)> = Vec::new();
        let mut new_owners: Vec<Option<Arc<str>>> = Vec::new();
        let mut created = GroupCreations::default();
        // Accepted samples, flat, with one `(series, range)` per batch entry:
        // two allocations per group instead of one per series.
        // Sized for every sample offered: growing by doubling would copy a
        // large group's samples several times on this, the serial thread.
        let mut flat: Vec<Sample> = Vec::with_capacity(
            group
                .iter()
                .flat_map(|r| &r.batch)
                .map(|s| s.samples.len())
                .sum(),
        );
        let mut accepted: Vec<(SeriesId, std::ops::Range<usize>)> =
            Vec::with_capacity(group.iter().map(|r| r.batch.len()).sum());
        let first_new_id = self.next_series_id;
        let trim_due = self.last_trim.elapsed() >= WAL_TRIM_INTERVAL;
        if trim_due {
            self.cut_idle_heads();
        }
        let (to_store, trim_below) = {
            let st = self.shared.state.read();
            for (req, out) in group.iter().zip(outcomes.iter_mut()) {
                let min_t = req.now_ms.saturating_sub(retention_ms);
                let max_t = req.now_ms.saturating_add(opts.max_future_ms);
                for (i, ss) in req.batch.iter().enumerate() {
                    // A hint is trusted only while its series holds these
                    // very labels (shared by address): ids are never reused,
                    // so a series dropped since then simply misses.
                    let hinted = req
                        .hints
                        .get(i)
                        .copied()
                        .flatten()
                        .and_then(|SeriesHint(id)| {
                            st.get(id)
                                .is_some_and(|s| s.labels.ptr_eq(&ss.labels))
                                .then_some(id)
                        });
                    let existing = hinted
                        .or_else(|| st.lookup(&ss.labels))
                        .or_else(|| new_ids.get(&ss.labels).copied());
                    let mut last = existing
                        .and_then(|id| overlay.get(&id).copied().or_else(|| st.get(id)?.last));
                    let from = flat.len();
                    let accepted_before = out.accepted;
                    for &s in &ss.samples {
                        let (t, bits) = (s.timestamp_ms, s.value.to_bits());
                        let reason = if t > max_t {
                            Some(RejectReason::TooFarInFuture)
                        } else if t < min_t {
                            Some(RejectReason::TooOld)
                        } else {
                            match last {
                                Some((lt, _)) if t < lt => Some(RejectReason::OutOfOrder),
                                // An exact re-send is acknowledged, not stored again.
                                Some((lt, lv)) if t == lt && lv == bits => {
                                    out.accepted += 1;
                                    continue;
                                }
                                Some((lt, _)) if t == lt => Some(RejectReason::DuplicateTimestamp),
                                _ => None,
                            }
                        };
                        match reason {
                            Some(r) => *out.rejected.entry(r).or_default() += 1,
                            None => {
                                flat.push(s);
                                last = Some((t, bits));
                                out.accepted += 1;
                            }
                        }
                    }
                    let Some(last) = last.filter(|_| flat.len() > from) else {
                        continue;
                    };
                    let id = match existing {
                        Some(id) => id,
                        None => {
                            let metric = ss.labels.get(METRIC_NAME_LABEL).unwrap_or("");
                            let owner = req.budget.as_ref().and_then(|b| b.owner.as_ref());
                            if let Some(limit) = req
                                .budget
                                .as_ref()
                                .and_then(|b| created.check(&st, b, metric))
                            {
                                // Over budget: none of this series' samples
                                // are stored, whatever else they were.
                                flat.truncate(from);
                                let refused = out.accepted - accepted_before;
                                out.accepted = accepted_before;
                                *out.rejected
                                    .entry(RejectReason::SeriesLimit(limit))
                                    .or_default() += refused;
                                *out.series_limited
                                    .entry((limit, metric.to_string()))
                                    .or_default() += 1;
                                continue;
                            }
                            created.record(metric, owner);
                            let id = self.next_series_id;
                            self.next_series_id += 1;
                            new_ids.insert(ss.labels.clone(), id);
                            new_series.push((id, ss.labels.clone()));
                            new_owners.push(owner.cloned());
                            out.new_series += 1;
                            id
                        }
                    };
                    overlay.insert(id, last);
                    accepted.push((id, from..flat.len()));
                }
            }
            let to_store = pending_chunks(&st);
            let trim_below = trim_due.then(|| {
                // After this commit only heads (and this group's record) remain in memory.
                let heads = st
                    .series
                    .iter()
                    .flatten()
                    .filter(|s| !s.head.is_empty())
                    .map(|s| s.head_wal)
                    .min();
                heads.unwrap_or(u64::MAX).min(self.next_wal_id)
            });
            (to_store, trim_below)
        };

        let wal_id = self.next_wal_id;
        let record = (!accepted.is_empty()).then(|| {
            let mut w = WalWriter::with_capacity(accepted.len(), flat.len());
            for (id, range) in &accepted {
                w.add(u64::from(*id), &flat[range.clone()]);
            }
            w.finish()
        });
        let nothing_to_write = record.is_none() && new_series.is_empty() && to_store.is_empty();
        if !nothing_to_write {
            let started = Instant::now();
            let totals = self.shared.counters.lock().totals_with(&to_store);
            // Forwarding queues see the group first: if they cannot take
            // it, nothing is committed and every caller may retry.
            let observed = match &opts.commit_observer {
                Some(obs) => crate::observer::notify(
                    obs.as_ref(),
                    &self.shared.state.read(),
                    &new_series,
                    &accepted,
                    &flat,
                ),
                None => Ok(()),
            };
            let mut added = Vec::new();
            let encoded: Vec<(SeriesId, Vec<u8>)> = new_series
                .iter()
                .map(|(id, labels)| (*id, self.symbols.encode(labels, &mut added)))
                .collect();
            let res = observed.and_then(|()| {
                write_group(
                    &mut self.conn,
                    (&added, &encoded),
                    self.next_series_id,
                    record.as_deref().map(|r| (wal_id, r)),
                    &to_store,
                    trim_below,
                    totals,
                )
            });
            if let Err(e) = res {
                error!(error = %e, "tsdb group commit failed");
                self.next_series_id = first_new_id;
                self.symbols.forget(&added);
                for req in group {
                    (req.reply)(Err(Error::Commit(e.to_string())), req.batch);
                }
                return;
            }
            let secs = started.elapsed().as_secs_f64();
            self.shared.counters.lock().observe_commit(secs);
            if trim_below.is_some() {
                self.last_trim = Instant::now();
            }
            if record.is_some() {
                self.next_wal_id += 1;
            }
        }

        let stored_samples = flat.len() as u64;
        for (_, range) in &accepted {
            if let Some(last) = flat[range.clone()].last() {
                self.max_t_seen = self.max_t_seen.max(last.timestamp_ms);
            }
        }
        {
            let mut st = self.shared.state.write();
            for ((id, labels), owner) in new_series.into_iter().zip(new_owners) {
                st.insert_owned(id, labels, owner);
            }
            mark_stored(&mut st, &to_store);
            let (max_samples, max_ms) = (opts.chunk_max_samples, opts.chunk_max_duration_ms);
            for (id, range) in accepted {
                let Some(s) = st.get_mut(id) else { continue };
                let before = s.pending.len();
                for &smp in &flat[range] {
                    s.push(smp, wal_id, max_samples, max_ms);
                }
                if s.pending.len() > before {
                    st.cut_ids.push(id);
                }
            }
        }
        {
            let mut c = self.shared.counters.lock();
            c.add_chunks(&to_store);
            c.head_samples += stored_samples;
            for o in &outcomes {
                c.samples_appended_total += o.accepted;
                for (r, n) in &o.rejected {
                    *c.rejected_total.entry(*r).or_default() += n;
                }
            }
        }
        for (req, out) in group.into_iter().zip(outcomes) {
            (req.reply)(Ok(out), req.batch);
        }
    }

    /// Cuts heads that opened more than a chunk duration before the newest
    /// data. Without this, a series that stops receiving samples would keep
    /// its head, and the wal record holding it, forever.
    fn cut_idle_heads(&mut self) {
        let horizon = self
            .max_t_seen
            .saturating_sub(self.shared.opts.chunk_max_duration_ms);
        let mut st = self.shared.state.write();
        let idle: Vec<SeriesId> = st
            .series
            .iter()
            .enumerate()
            .filter_map(|(id, s)| {
                let s = s.as_ref()?;
                (!s.head.is_empty() && s.head.first_t() < horizon).then_some(id as SeriesId)
            })
            .collect();
        for id in idle {
            if let Some(s) = st.get_mut(id) {
                s.cut();
                st.cut_ids.push(id);
            }
        }
    }

    fn set_meta(&mut self, metric: &str, meta: &MetricMeta) -> Result<(), Error> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO metadata (metric, type, help, unit) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![metric, meta.metric_type.as_prometheus_str(), meta.help, meta.unit])?;
        Ok(())
    }

    /// Cuts every head, stores all chunks and empties the wal.
    fn flush(&mut self) -> Result<(), Error> {
        let to_store = {
            let st = self.shared.state.read();
            let mut out = Vec::new();
            for (id, s) in st.series.iter().enumerate() {
                let Some(s) = s else { continue };
                out.extend(s.pending.iter().map(|c| (id as SeriesId, c.clone())));
                if !s.head.is_empty() {
                    let data = s.head.bytes().to_vec();
                    out.push((
                        id as SeriesId,
                        CutChunk {
                            min_t: s.head.first_t(),
                            max_t: s.head.last_t(),
                            n: s.head.len() as u32,
                            data: Arc::from(data),
                        },
                    ));
                }
            }
            out
        };
        let started = Instant::now();
        let totals = self.shared.counters.lock().totals_with(&to_store);
        write_group(
            &mut self.conn,
            (&[], &[]),
            self.next_series_id,
            None,
            &to_store,
            Some(u64::MAX),
            totals,
        )?;
        self.shared
            .counters
            .lock()
            .observe_commit(started.elapsed().as_secs_f64());
        {
            let mut st = self.shared.state.write();
            for s in st.series.iter_mut().flatten() {
                s.cut();
            }
            mark_stored(&mut st, &to_store);
        }
        self.shared.counters.lock().add_chunks(&to_store);
        // Nothing is appended after a flush: every stored chunk may merge.
        if let Err(e) = self.compact(i64::MAX, COMPACT_FLUSH_BUDGET) {
            error!(error = %e, "tsdb compaction at flush failed");
        }
        // The emptied write-ahead table leaves free pages that running
        // ingestion would reuse; after a flush (shutdown, or an explicit
        // compaction) nothing will, so hand them back to the file system.
        match store::vacuum_free_pages(&self.conn) {
            Ok(pages) => debug!(pages, "free pages returned after flush"),
            Err(e) => debug!(error = %e, "vacuum after flush skipped"),
        }
        // Move committed pages into the main file and cut SQLite's WAL file
        // to zero bytes, so the data directory holds only live pages. TRUNCATE
        // waits for readers, which is why it is done here and not on every
        // commit. It reports busy (in its result row, not as an error) when
        // the background checkpoint holds the checkpoint lock: retried for a
        // second (a reader still busy after the connection's busy timeout is
        // not waited for again).
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                }) {
                Ok(0) => break,
                Ok(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Ok(_) => {
                    debug!("checkpoint after flush stayed busy");
                    break;
                }
                Err(e) => {
                    debug!(error = %e, "checkpoint after flush skipped");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Deletes chunks older than the retention period, then (one pass) the
    /// oldest chunks in proportion to the bytes over the size limit, then
    /// series left empty.
    fn retention(&mut self, now_ms: i64) -> Result<u64, Error> {
        let opts = self.shared.opts.clone();
        // Chunks a chunk duration older than the newest data are final
        // (heads only append newer samples): merge them.
        let horizon = self.max_t_seen.saturating_sub(opts.chunk_max_duration_ms);
        self.compact(horizon, COMPACT_BUDGET)?;
        let mut cutoff = now_ms.saturating_sub(opts.retention_ms());
        let started = Instant::now();
        let mut dropped = self.delete_chunks_before(cutoff)?;
        if let Some(max_bytes) = opts.max_bytes {
            let used = store::used_bytes(&self.conn)?;
            let count = self.shared.counters.lock().chunk_count;
            if used > max_bytes && count > 0 {
                // Chunks are the bulk of the file: drop the oldest of them.
                // Pages left half-empty are refilled by later inserts, so
                // one pass per call is enough; the next call trims again if
                // needed.
                // The cutoff is the k-th oldest chunk end, sorted from the
                // `chunks_by_series` index alone (row id order is not time
                // order: compaction appends merged chunks series by series).
                // As many average-sized chunks as there are bytes over the
                // limit: sized by the chunks alone, not by the whole file,
                // whose fixed part (schema, index, series) deleting chunks
                // cannot shrink.
                let chunk_bytes = self.shared.counters.lock().chunk_bytes.max(1);
                let mean_chunk = chunk_bytes as f64 / count as f64;
                let k = (((used - max_bytes) as f64 / mean_chunk).ceil() as u64).clamp(1, count);
                let t: i64 = self.conn.query_row(
                    "SELECT max_t FROM chunks ORDER BY max_t LIMIT 1 OFFSET ?1",
                    [(k - 1) as i64],
                    |r| r.get(0),
                )?;
                cutoff = cutoff.max(t.saturating_add(1));
                dropped += self.delete_chunks_before(cutoff)?;
                store::vacuum_free_pages(&self.conn)?;
            }
        }
        // Series whose oldest stored chunk was before the cutoff need new bounds.
        let affected = self.shared.state.read().stored_before(cutoff);
        let mut bounds = Vec::with_capacity(affected.len());
        for id in affected {
            bounds.push((id, store::series_bounds(&self.conn, id)?));
        }
        let empty: Vec<SeriesId> = {
            let st = self.shared.state.read();
            bounds
                .iter()
                .filter(|(id, b)| b.is_none() && st.get(*id).is_some_and(|s| s.mem_samples() == 0))
                .map(|(id, _)| *id)
                .collect()
        };
        if !empty.is_empty() {
            let tx = self.conn.transaction()?;
            {
                let mut del = tx.prepare_cached("DELETE FROM series WHERE id = ?1")?;
                for id in &empty {
                    del.execute([id])?;
                }
            }
            tx.commit()?;
        }
        self.shared
            .counters
            .lock()
            .observe_commit(started.elapsed().as_secs_f64());
        {
            let mut st = self.shared.state.write();
            for (id, b) in bounds {
                if let Some(s) = st.get_mut(id) {
                    s.stored = b;
                    // The cached chunk must not outlive its stored copy.
                    if s.recent.as_ref().is_some_and(|r| r.max_t < cutoff) {
                        s.recent = None;
                    }
                }
            }
            for id in &empty {
                st.remove(*id);
            }
        }
        if dropped > 0 || !empty.is_empty() {
            info!(
                samples = dropped,
                series = empty.len(),
                cutoff,
                "tsdb retention dropped old data"
            );
        }
        Ok(dropped)
    }

    /// Deletes chunks whose newest sample is before `cutoff`; returns samples dropped.
    fn delete_chunks_before(&mut self, cutoff: i64) -> Result<u64, Error> {
        // Only series whose oldest stored chunk may end before the cutoff
        // are visited, each with a range seek on `chunks_by_series`; this
        // spares a second index on `max_t` (a fifth of the index bytes).
        let candidates = self.shared.state.read().stored_before(cutoff);
        if candidates.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let (mut count, mut bytes, mut samples) = (0i64, 0i64, 0i64);
        {
            let mut measure = tx.prepare_cached(
                "SELECT count(*), coalesce(sum(length(data)), 0), coalesce(sum(n), 0) \
                 FROM chunks WHERE series_id = ?1 AND max_t < ?2",
            )?;
            let mut delete = tx.prepare_cached(
                "DELETE FROM chunks WHERE series_id = ?1 AND max_t < ?2 RETURNING ts",
            )?;
            // References dropped per shared timestamp column.
            let mut released: HashMap<i64, i64> = HashMap::new();
            for id in candidates {
                let (c, b, n): (i64, i64, i64) = measure
                    .query_row(params![id as i64, cutoff], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                if c > 0 {
                    let mut rows = delete.query(params![id as i64, cutoff])?;
                    while let Some(r) = rows.next()? {
                        if let Some(ts) = r.get::<_, Option<i64>>(0)? {
                            *released.entry(ts).or_default() += 1;
                        }
                    }
                    count += c;
                    bytes += b;
                    samples += n;
                }
            }
            for (ts, n) in released {
                bytes += store::ts_refs(&tx, ts, -n)? as i64;
            }
        }
        if count == 0 {
            return Ok(0);
        }
        let totals = {
            let c = self.shared.counters.lock();
            store::ChunkTotals {
                count: c.chunk_count.saturating_sub(count as u64),
                bytes: c.chunk_bytes.saturating_sub(bytes as u64),
                samples: c.chunk_samples.saturating_sub(samples as u64),
            }
        };
        totals.save(&tx)?;
        tx.commit()?;
        let mut c = self.shared.counters.lock();
        c.chunk_count = totals.count;
        c.chunk_bytes = totals.bytes;
        c.chunk_samples = totals.samples;
        Ok(samples as u64)
    }
}

impl Writer {
    /// Merges, per series with loose chunks, consecutive stored chunks
    /// ending before `horizon` into sealed chunks of up to
    /// `Options::compact_max_samples` samples and [`COMPACT_MAX_SPAN_MS`]: each
    /// stored chunk costs a table row and an index entry (about 50 bytes),
    /// which a 240-sample chunk pays a fifth of a byte per sample for, and
    /// one long run encodes tighter than several short ones. One
    /// transaction per series; stops after `budget`.
    fn compact(&mut self, horizon: i64, budget: Duration) -> Result<(), Error> {
        let started = Instant::now();

        let candidates: Vec<(SeriesId, i64)> = {
            let st = self.shared.state.read();
            st.series
                .iter()
                .enumerate()
                .filter_map(|(id, s)| {
                    let s = s.as_ref()?;
                    (s.loose_chunks >= 1).then_some((id as SeriesId, s.compact_from))
                })
                .collect()
        };
        let (mut merged_series, mut removed) = (0u64, 0u64);
        for (id, from) in candidates {
            if started.elapsed() > budget {
                break;
            }
            let (groups, next_from) = self.compact_series(id, from, horizon)?;
            removed += groups;
            merged_series += u64::from(groups > 0);
            let mut st = self.shared.state.write();
            if let Some(s) = st.get_mut(id) {
                s.loose_chunks = 0;
                s.compact_from = next_from;
            }
        }
        if removed > 0 {
            debug!(
                series = merged_series,
                chunks_removed = removed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tsdb compaction"
            );
        }
        Ok(())
    }

    /// Compacts one series; returns how many chunk rows went away and
    /// where the next pass should start reading.
    fn compact_series(
        &mut self,
        id: SeriesId,
        from: i64,
        horizon: i64,
    ) -> Result<(u64, i64), Error> {
        struct Row {
            rowid: i64,
            min_t: i64,
            max_t: i64,
            n: u32,
            data: Vec<u8>,
            ts: Option<Vec<i64>>,
        }
        let rows: Vec<Row> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT c.id, c.min_t, c.max_t, c.n, c.data, t.data \
                 FROM chunks c LEFT JOIN timestamps t ON t.id = c.ts \
                 WHERE c.series_id = ?1 AND c.max_t >= ?2 AND c.max_t < ?3 ORDER BY c.max_t",
            )?;
            let mut q = stmt.query(params![id, from, horizon])?;
            let mut out = Vec::new();
            while let Some(r) = q.next()? {
                out.push(Row {
                    rowid: r.get(0)?,
                    min_t: r.get(1)?,
                    max_t: r.get(2)?,
                    n: r.get(3)?,
                    data: store::blob(r, 4)?.to_vec(),
                    ts: store::ts_column(r, 5)?,
                });
            }
            out
        };
        // Groups are also bounded in bytes (half a page, by the rows'
        // stored sizes, which sealing only shrinks): SQLite keeps a row
        // whole on one page, so past half a page each would leave most of
        // the rest of its page empty.
        let mut decoded: Vec<Vec<Sample>> = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut samples = Vec::with_capacity(r.n as usize);
            chunk::decode_range_ts(&r.data, r.ts.as_deref(), i64::MIN, i64::MAX, &mut samples)
                .map_err(|e| store::corrupt(format!("chunk of series {id}"), e))?;
            decoded.push(samples);
        }
        // Greedy groups of consecutive chunks within every limit (or lone
        // chunks, to seal, when merging is off).
        let merging = self.shared.opts.compact_max_samples > self.shared.opts.chunk_max_samples;
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        let (mut n, mut bytes) = (0u32, 0usize);
        for (i, r) in rows.iter().enumerate() {
            let fits = i > start
                && merging
                && n as usize + r.n as usize <= self.shared.opts.compact_max_samples
                && bytes + r.data.len() <= self.compact_max_bytes
                && r.max_t.saturating_sub(rows[start].min_t) <= COMPACT_MAX_SPAN_MS;
            if i > start && !fits {
                groups.push(start..i);
                start = i;
                n = 0;
                bytes = 0;
            }
            n += r.n;
            bytes += r.data.len();
        }
        if start < rows.len() {
            groups.push(start..rows.len());
        }
        let next_from = groups.last().map_or(from, |g| rows[g.start].max_t);
        // Groups of several chunks merge; a lone chunk still in the head's
        // Gorilla encoding is sealed when that is smaller. Timestamps that
        // cost more than a column reference go to a shared column.
        struct Merge {
            group: std::ops::Range<usize>,
            samples: Vec<Sample>,
            data: Vec<u8>,
            column: Option<Vec<u8>>,
        }
        let mut merges: Vec<Merge> = Vec::new();
        for g in &groups {
            if g.len() == 1 && crate::sealed::is_sealed(&rows[g.start].data) {
                continue;
            }
            let samples: Vec<Sample> = decoded[g.clone()].concat();
            let ts: Vec<i64> = samples.iter().map(|s| s.timestamp_ms).collect();
            let col = crate::sealed::encode_timestamps(&ts);
            let (data, column) = if col.len() >= crate::columns::SHARE_MIN_BYTES {
                (crate::sealed::seal_values(&samples), Some(col))
            } else {
                (crate::sealed::seal(&samples), None)
            };
            if g.len() == 1 && data.len() >= rows[g.start].data.len() {
                continue;
            }
            merges.push(Merge {
                group: g.clone(),
                samples,
                data,
                column,
            });
        }
        if merges.is_empty() {
            return Ok((0, next_from));
        }
        let (mut count, mut bytes) = (0u64, 0i64);
        let mut new_chunks = Vec::with_capacity(merges.len());
        let tx = self.conn.transaction()?;
        {
            let mut del = tx.prepare_cached("DELETE FROM chunks WHERE id = ?1 RETURNING ts")?;
            // The merged chunk gets a new row id, after every other: rows
            // appended at the end pack pages full, where rows put back in
            // the middle (at the group's first row id) split pages and
            // left a fifth of them empty. Compaction runs in data time, so
            // row id order stays close to `max_t` order, which size-based
            // retention relies on.
            let mut ins = tx.prepare_cached(
                "INSERT INTO chunks (series_id, min_t, max_t, n, data, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for m in &merges {
                let g = m.group.clone();
                for r in &rows[g.clone()] {
                    let ts: Option<i64> = del.query_row([r.rowid], |row| row.get(0))?;
                    if let Some(ts) = ts {
                        bytes -= store::ts_refs(&tx, ts, -1)? as i64;
                    }
                    bytes -= r.data.len() as i64;
                }
                let ts_id = match &m.column {
                    Some(col) => {
                        let (ts_id, new) = self.columns.acquire(&tx, col)?;
                        if new {
                            bytes += col.len() as i64;
                        }
                        Some(ts_id)
                    }
                    None => None,
                };
                let (min_t, max_t) = (rows[g.start].min_t, rows[g.end - 1].max_t);
                let n = m.samples.len() as u32;
                ins.execute(params![id, min_t, max_t, n, &m.data[..], ts_id])?;
                bytes += m.data.len() as i64;
                count += g.len() as u64 - 1;
                new_chunks.push((min_t, max_t, n));
            }
        }
        let totals = {
            let c = self.shared.counters.lock();
            store::ChunkTotals {
                count: c.chunk_count.saturating_sub(count),
                bytes: c.chunk_bytes.saturating_add_signed(bytes),
                samples: c.chunk_samples,
            }
        };
        totals.save(&tx)?;
        tx.commit()?;
        {
            let mut c = self.shared.counters.lock();
            c.chunk_count = totals.count;
            c.chunk_bytes = totals.bytes;
        }
        // The read cache holds the newest stored chunk; if it was merged,
        // cache the merged chunk that contains it instead, with its own
        // timestamps (the cache is read without the column).
        let mut st = self.shared.state.write();
        if let Some(s) = st.get_mut(id)
            && let Some(r) = &s.recent
            && let Some((m, &(min_t, max_t, n))) = merges
                .iter()
                .zip(&new_chunks)
                .find(|(_, c)| c.0 <= r.min_t && r.max_t <= c.1)
        {
            let data = match &m.column {
                Some(_) => crate::sealed::seal(&m.samples),
                None => m.data.clone(),
            };
            s.recent = Some(CutChunk {
                min_t,
                max_t,
                n,
                data: Arc::from(data),
            });
        }
        Ok((count, next_from))
    }
}

/// Chunks cut from heads and not yet stored, oldest first per series.
fn pending_chunks(st: &State) -> Vec<(SeriesId, CutChunk)> {
    let mut out = Vec::new();
    let mut ids = st.cut_ids.clone();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        if let Some(s) = st.get(id) {
            out.extend(s.pending.iter().map(|c| (id, c.clone())));
        }
    }
    out
}

/// After a commit stored `chunks`: drop them from memory, widen bounds.
fn mark_stored(st: &mut State, chunks: &[(SeriesId, CutChunk)]) {
    for (id, c) in chunks {
        if let Some(s) = st.get_mut(*id) {
            if s.pending.first().is_some_and(|p| p.max_t == c.max_t) {
                s.pending.remove(0);
            }
            if !s.read_since_store.load(Ordering::Relaxed) {
                s.recent = None;
            } else if s.recent.as_ref().is_none_or(|r| r.max_t < c.max_t) {
                s.recent = Some(c.clone());
            }
            s.loose_chunks = s.loose_chunks.saturating_add(1);
            s.stored = Some(match s.stored {
                Some((lo, hi)) => (lo.min(c.min_t), hi.max(c.max_t)),
                None => (c.min_t, c.max_t),
            });
        }
    }
    // Cleared once per series, after all of its chunks: a series read
    // since its last store keeps its newest chunk however many were stored.
    for (id, _) in chunks {
        if let Some(s) = st.get(*id) {
            s.read_since_store.store(false, Ordering::Relaxed);
        }
    }
    st.cut_ids.retain(|id| {
        st.series
            .get(*id as usize)
            .and_then(Option::as_deref)
            .is_some_and(|s| !s.pending.is_empty())
    });
}

/// Symbols first stored by a commit, and the series rows (encoded labels).
type NewRows<'a> = (&'a [(u32, String)], &'a [(SeriesId, Vec<u8>)]);

/// One transaction: new series, one wal record, cut chunks, wal trimming.
fn write_group(
    conn: &mut Connection,
    (new_symbols, new_series): NewRows<'_>,
    next_series_id: SeriesId,
    record: Option<(u64, &[u8])>,
    chunks: &[(SeriesId, CutChunk)],
    trim_below: Option<u64>,
    totals: store::ChunkTotals,
) -> Result<(), Error> {
    let tx = conn.transaction()?;
    if !new_symbols.is_empty() {
        let mut ins = tx.prepare_cached("INSERT INTO symbols (id, text) VALUES (?1, ?2)")?;
        for (id, text) in new_symbols {
            ins.execute(params![id, text])?;
        }
    }
    if !new_series.is_empty() {
        let mut ins = tx.prepare_cached("INSERT INTO series (id, labels) VALUES (?1, ?2)")?;
        for (id, labels) in new_series {
            ins.execute(params![id, labels])?;
        }
        store::kv_set(&tx, "next_series_id", i64::from(next_series_id))?;
    }
    if let Some((id, data)) = record {
        tx.prepare_cached("INSERT INTO wal (id, data) VALUES (?1, ?2)")?
            .execute(params![id as i64, data])?;
    }
    if !chunks.is_empty() {
        // REPLACE keeps a retried store of the same chunk idempotent.
        let mut ins =
            tx.prepare_cached("INSERT OR REPLACE INTO chunks (series_id, min_t, max_t, n, data) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for (id, c) in chunks {
            ins.execute(params![id, c.min_t, c.max_t, c.n, &c.data[..]])?;
        }
        drop(ins);
        totals.save(&tx)?;
    }
    if let Some(low) = trim_below {
        // u64::MAX (flush) means every record; ids are stored as i64.
        let low = i64::try_from(low).unwrap_or(i64::MAX);
        tx.prepare_cached("DELETE FROM wal WHERE id < ?1")?
            .execute([low])?;
    }
    tx.commit()?;
    Ok(())
}
