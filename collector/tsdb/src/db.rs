//! [`Db`]: opening and recovery, the public write calls (forwarded to the
//! writer thread) and the read paths (in-memory snapshot first, then
//! read-only SQLite connections for stored chunks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use rusqlite::Connection;
use tracing::info;
use vigil_wire::labels::is_valid_label_name;
use vigil_wire::remote_write::MetricType;
use vigil_wire::{Labels, METRIC_NAME_LABEL, Matcher};

use crate::codec;
use crate::head::{SeriesSnapshot, State};
use crate::index::SeriesId;
use crate::read_cache::{self, ReadCache};
use crate::store;
use crate::writer::{AppendReply, COMMIT_BUCKETS, Cmd, Counters, Shared, Writer};
use crate::{
    AppendOutcome, Budget, Cardinality, Error, MetricMeta, Options, SeriesData, SeriesSamples,
    Stats,
};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "vigil-tsdb.sqlite";

/// Lock file guarding the directory against a second open store.
pub const LOCK_FILE: &str = "LOCK";

/// Idle read-only connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;

/// The store. `Send + Sync`: share it as `Arc<Db>`. Every call blocks, so
/// async callers wrap them in `spawn_blocking`. Dropping it stops the writer
/// after the queued writes; call [`Db::flush`] first on graceful shutdown.
/// A stored series as the writer knows it, found by [`SeriesFinder::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesHint(pub(crate) SeriesId);

/// Stored series by raw labels; see [`Db::find_series`].
pub struct SeriesFinder<'a> {
    state: &'a crate::head::State,
}

impl SeriesFinder<'_> {
    /// The stored series whose labels are exactly `pairs`, in order, and
    /// its labels (shared, not copied). `None` for a series not stored yet
    /// and for pairs not in canonical form (unsorted, or an empty value).
    pub fn find<'p, I>(&self, pairs: I) -> Option<(SeriesHint, Labels)>
    where
        I: ExactSizeIterator<Item = (&'p str, &'p str)> + Clone,
    {
        let (id, labels) = self.state.lookup_pairs(pairs)?;
        Some((SeriesHint(id), labels.clone()))
    }
}

pub struct Db {
    /// Held (advisory lock) for the life of the store; the kernel releases
    /// it when the process dies, so a crash never leaves a stale lock.
    _lock: std::fs::File,
    shared: Arc<Shared>,
    tx: Option<Sender<Cmd>>,
    writer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    cache: ReadCache,
    path: PathBuf,
    checkpoints: Arc<crate::checkpoint::Counts>,
}

impl Db {
    /// Opens (creating if needed) the store in `dir`, loads the series index
    /// and replays the write-ahead record into the heads.
    pub fn open(dir: &Path, opts: Options) -> Result<Db, Error> {
        opts.validate()?;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Io {
                path: lock_path.display().to_string(),
                source,
            })?;
        // Two writers on one directory would each trust their own in-memory
        // heads and index; refuse the second.
        lock.try_lock()
            .map_err(|_| Error::Locked(dir.display().to_string()))?;
        let started = Instant::now();
        let path = dir.join(DB_FILE);
        let mut conn = store::open_writer(&path, opts.sync)?;
        let checkpointer = crate::checkpoint::Checkpointer::start(&path, opts.sync, &mut conn)?;

        let mut state = State::default();
        let mut next_series_id: SeriesId = 0;
        let (series, symbols) = store::load_series(&conn)?;
        for (id, labels) in series {
            state.insert(id, labels);
            next_series_id = next_series_id.max(id.saturating_add(1));
        }
        if let Some(v) = store::kv_get(&conn, "next_series_id")? {
            next_series_id = next_series_id.max(SeriesId::try_from(v).unwrap_or(SeriesId::MAX));
        }
        for b in store::load_bounds(&conn)? {
            if let Some(s) = state.get_mut(b.id) {
                s.stored = Some((b.min_t, b.max_t));
                s.last = Some((b.max_t, b.last_value));
                s.loose_chunks = b.chunks;
            }
        }

        // Replay: every wal record still present may hold samples that are
        // in no stored chunk; those newer than a series' stored data go back
        // into its head, exactly as the writer appended them.
        let (mut next_wal_id, mut records, mut head_samples) = (1u64, 0u64, 0u64);
        {
            let mut stmt = conn.prepare("SELECT id, data FROM wal ORDER BY id")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let wal_id = row.get::<_, i64>(0)? as u64;
                let data = store::blob(row, 1)?;
                let mut cut = Vec::new();
                codec::decode_wal(data, |sid, samples| {
                    let Ok(sid) = SeriesId::try_from(sid) else {
                        return;
                    };
                    // Records may name series that retention dropped since.
                    let Some(s) = state.get_mut(sid) else { return };
                    let before = s.pending.len();
                    for smp in samples {
                        if s.last.is_some_and(|(lt, _)| smp.timestamp_ms <= lt) {
                            continue;
                        }
                        s.push(
                            *smp,
                            wal_id,
                            opts.chunk_max_samples,
                            opts.chunk_max_duration_ms,
                        );
                        head_samples += 1;
                    }
                    if s.pending.len() > before {
                        cut.push(sid);
                    }
                })
                .map_err(|e| store::corrupt(format!("wal record {wal_id}"), e))?;
                state.cut_ids.extend(cut);
                next_wal_id = wal_id + 1;
                records += 1;
            }
        }

        let max_t_seen = state
            .series
            .iter()
            .flatten()
            .filter_map(|s| s.last.map(|(t, _)| t))
            .max()
            .unwrap_or(i64::MIN);
        let totals = store::ChunkTotals::load(&conn)?;
        let columns = crate::columns::Columns::load(&conn)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        info!(
            series = state.live,
            wal_records = records,
            head_samples,
            chunks = totals.count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tsdb opened"
        );
        let cache = ReadCache::new(opts.read_cache_bytes);
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            counters: Mutex::new(Counters {
                head_samples,
                chunk_count: totals.count,
                chunk_bytes: totals.bytes,
                chunk_samples: totals.samples,
                ..Counters::default()
            }),
            opts,
        });
        let checkpoints = checkpointer.counts();
        let writer = Writer {
            _checkpointer: checkpointer,
            conn,
            shared: shared.clone(),
            next_series_id,
            next_wal_id,
            last_trim: Instant::now(),
            max_t_seen,
            symbols,
            columns,
            compact_max_bytes: usize::try_from(page_size / 2).unwrap_or(2048).max(2048),
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("vigil-tsdb-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| Error::Io {
                path: "writer thread".into(),
                source,
            })?;
        Ok(Db {
            checkpoints,
            _lock: lock,
            shared,
            tx: Some(tx),
            writer: Some(handle),
            readers: Mutex::new(Vec::new()),
            cache,
            path,
        })
    }

    /// Appends samples; returns once the accepted ones are committed.
    /// Concurrent callers share one transaction (group commit).
    pub fn append(&self, batch: Vec<SeriesSamples>, now_ms: i64) -> Result<AppendOutcome, Error> {
        self.append_inner(batch, now_ms, None)
    }

    /// Like [`Db::append`], but a series that does not exist yet is only
    /// created within `budget`; samples of refused series are counted under
    /// [`crate::RejectReason::SeriesLimit`] and the rest of the batch is
    /// stored. Samples of existing series are never refused by a budget.
    pub fn append_with_budget(
        &self,
        batch: Vec<SeriesSamples>,
        now_ms: i64,
        budget: Budget,
    ) -> Result<AppendOutcome, Error> {
        let budget = budget_in_force(budget);
        self.append_inner(batch, now_ms, budget)
    }

    /// Like [`Db::append_with_budget`], with `hints[i]` naming the stored
    /// series of `batch[i]` as [`SeriesFinder::find`] answered (its labels
    /// shared with that series). The writer then skips the label lookup; a
    /// hint whose series is gone by commit time is ignored, so a stale hint
    /// costs a lookup, never a sample. `hints` may be shorter than `batch`.
    pub fn append_hinted(
        &self,
        batch: Vec<SeriesSamples>,
        hints: Vec<Option<SeriesHint>>,
        now_ms: i64,
        budget: Budget,
    ) -> Result<AppendOutcome, Error> {
        let budget = budget_in_force(budget);
        self.append_cmd(batch, hints, now_ms, budget)
    }

    /// Looks up stored series by a request's raw labels, under one read
    /// lock for all of them: ingest workers resolve the series they already
    /// know in parallel, without copying labels, and hand the writer (the
    /// one serial step of ingestion) hints instead of label sets to hash.
    pub fn find_series<R>(&self, f: impl FnOnce(&SeriesFinder<'_>) -> R) -> R {
        let st = self.shared.state.read();
        f(&SeriesFinder { state: &st })
    }

    fn append_inner(
        &self,
        batch: Vec<SeriesSamples>,
        now_ms: i64,
        budget: Option<Budget>,
    ) -> Result<AppendOutcome, Error> {
        self.append_cmd(batch, Vec::new(), now_ms, budget)
    }

    fn append_cmd(
        &self,
        batch: Vec<SeriesSamples>,
        hints: Vec<Option<SeriesHint>>,
        now_ms: i64,
        budget: Option<Budget>,
    ) -> Result<AppendOutcome, Error> {
        let (reply, rx) = mpsc::channel();
        self.submit(
            batch,
            hints,
            now_ms,
            budget,
            Box::new(move |outcome, batch| {
                let _ = reply.send((outcome, batch));
            }),
        );
        // The batch comes back to be dropped here, off the writer thread.
        let (outcome, _batch) = rx.recv().map_err(|_| Error::Closed)?;
        outcome
    }

    /// [`Db::append_hinted`] without waiting: `done` gets the outcome and
    /// the batch back once the group holding them is committed (or at once,
    /// for a batch refused whole). It runs on the writer thread, so it must
    /// only hand them on, e.g. to a channel an async task awaits: an async
    /// caller then needs no thread parked for the commit. `done` is dropped
    /// uncalled only if the writer thread is gone.
    pub fn append_hinted_then(
        &self,
        batch: Vec<SeriesSamples>,
        hints: Vec<Option<SeriesHint>>,
        now_ms: i64,
        budget: Budget,
        done: impl FnOnce(Result<AppendOutcome, Error>, Vec<SeriesSamples>) + Send + 'static,
    ) {
        let budget = budget_in_force(budget);
        self.submit(batch, hints, now_ms, budget, Box::new(done));
    }

    fn submit(
        &self,
        batch: Vec<SeriesSamples>,
        hints: Vec<Option<SeriesHint>>,
        now_ms: i64,
        budget: Option<Budget>,
        reply: AppendReply,
    ) {
        if let Some(bad) = batch.iter().find(|s| s.labels.is_empty()) {
            let e = Error::InvalidLabels(format!(
                "series with no labels ({} samples)",
                bad.samples.len()
            ));
            return reply(Err(e), batch);
        }
        if batch.iter().all(|s| s.samples.is_empty()) {
            return reply(Ok(AppendOutcome::default()), batch);
        }
        let Some(tx) = self.tx.as_ref() else {
            return reply(Err(Error::Closed), batch);
        };
        if let Err(mpsc::SendError(cmd)) = tx.send(Cmd::Append {
            batch,
            hints,
            now_ms,
            budget,
            reply,
        }) && let Cmd::Append { batch, reply, .. } = cmd
        {
            reply(Err(Error::Closed), batch);
        }
    }

    /// Stores metadata for a metric family; last write wins.
    pub fn set_metadata(&self, metric: &str, meta: MetricMeta) -> Result<(), Error> {
        let metric = metric.to_string();
        self.call(|reply| Cmd::SetMeta {
            metric,
            meta,
            reply,
        })
    }

    /// All stored metric metadata, by metric family name.
    pub fn metadata(&self) -> Result<BTreeMap<String, MetricMeta>, Error> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached("SELECT metric, type, help, unit FROM metadata")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    MetricMeta {
                        metric_type: MetricType::from_prometheus_str(&r.get::<_, String>(1)?),
                        help: r.get(2)?,
                        unit: r.get(3)?,
                    },
                ))
            })?;
            Ok(rows.collect::<Result<BTreeMap<_, _>, _>>()?)
        })
    }

    /// Samples with `start_ms <= t <= end_ms` of every series matching all
    /// `matchers`, series sorted by labels, samples in time order.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, Error> {
        let mut out = Vec::new();
        self.select_each(matchers, start_ms, end_ms, |s| {
            out.push(s);
            true
        })?;
        Ok(out)
    }

    /// What [`Db::select`] answers, handed to `f` one series at a time in
    /// label order, so a caller that reduces each series as it comes (a
    /// PromQL range function) holds one series' samples, not all of them.
    /// `f` answers whether to go on.
    pub fn select_each(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        mut f: impl FnMut(SeriesData) -> bool,
    ) -> Result<(), Error> {
        check_matchers(matchers)?;
        check_range(start_ms, end_ms)?;
        let mut snaps = {
            let st = self.shared.state.read();
            let ids = st.index.select(matchers, || st.all_ids());
            snapshots(&st, ids, start_ms, end_ms)
        };
        snaps.sort_by(|a, b| a.labels.cmp(&b.labels));
        // Newest stored chunks this read took from disk for series that
        // hold none in memory: kept there afterwards (see `Series::recent`),
        // so a series that goes on being read, by a rule or a dashboard,
        // reads its recent hours from memory from then on.
        let mut newest_read = Vec::new();
        let result = self.with_reader(|conn| {
            for snap in snaps {
                let mut samples = Vec::new();
                if snap.needs_disk(start_ms, end_ms) {
                    let mut newest = None;
                    // Reserves room for the in-memory chunks too, so a long
                    // read allocates once.
                    read_cache::read_samples(
                        conn,
                        &self.cache,
                        snap.id,
                        (start_ms, snap.disk_end(end_ms)),
                        snap.mem_len(),
                        &mut samples,
                        &mut newest,
                    )?;
                    if let Some((key, chunk)) = newest
                        && !snap.has_recent
                        && snap.stored.is_some_and(|(_, hi)| hi == key.max_t)
                    {
                        newest_read.push((snap.id, key, chunk));
                    }
                }
                snap.mem_samples(start_ms, end_ms, &mut samples)
                    .map_err(|e| store::corrupt(format!("head of series {}", snap.id), e))?;
                if !samples.is_empty()
                    && !f(SeriesData {
                        labels: snap.labels,
                        samples,
                    })
                {
                    break;
                }
            }
            Ok(())
        });
        self.keep_newest_read(newest_read);
        result
    }

    /// Installs chunks read from disk as their series' in-memory newest
    /// stored chunk, sealed (the dense form compaction writes), where that
    /// is still what they are: a store or retention since the read wins.
    fn keep_newest_read(
        &self,
        chunks: Vec<(SeriesId, read_cache::ChunkKey, Arc<read_cache::Decoded>)>,
    ) {
        if chunks.is_empty() {
            return;
        }
        let mut samples = Vec::new();
        let sealed: Vec<(SeriesId, crate::head::CutChunk)> = chunks
            .into_iter()
            .filter_map(|(id, key, chunk)| {
                samples.clear();
                chunk.extend_range(i64::MIN, i64::MAX, &mut samples);
                let n = u32::try_from(samples.len()).ok()?;
                (n > 0).then(|| {
                    let cut = crate::head::CutChunk {
                        min_t: key.min_t,
                        max_t: key.max_t,
                        n,
                        data: Arc::from(crate::sealed::seal(&samples)),
                    };
                    (id, cut)
                })
            })
            .collect();
        let mut st = self.shared.state.write();
        for (id, cut) in sealed {
            if let Some(s) = st.get_mut(id)
                && s.recent.is_none()
                && s.stored.is_some_and(|(_, hi)| hi == cut.max_t)
            {
                s.recent = Some(cut);
            }
        }
    }

    /// Label sets of series matching any of `matcher_sets` (all series when
    /// empty) with at least one sample in `[start_ms, end_ms]`, sorted.
    pub fn series(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Labels>, Error> {
        let ids = self.ids_for_sets(matcher_sets, None)?;
        check_range(start_ms, end_ms)?;
        let mut out = self.labels_in_range(ids, start_ms, end_ms)?;
        out.sort();
        Ok(out)
    }

    /// Label names used by the series [`Db::series`] would return, sorted.
    pub fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, Error> {
        let ids = self.ids_for_sets(matcher_sets, None)?;
        check_range(start_ms, end_ms)?;
        let mut names = BTreeSet::new();
        for labels in self.labels_in_range(ids, start_ms, end_ms)? {
            for l in labels.into_vec() {
                names.insert(l.name);
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Values of label `name` over the series [`Db::series`] would return, sorted.
    pub fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, Error> {
        if name != METRIC_NAME_LABEL && !is_valid_label_name(name) {
            return Err(Error::InvalidLabels(format!("invalid label name {name:?}")));
        }
        let ids = self.ids_for_sets(matcher_sets, Some(name))?;
        check_range(start_ms, end_ms)?;
        let mut values = BTreeSet::new();
        for labels in self.labels_in_range(ids, start_ms, end_ms)? {
            if let Some(v) = labels.get(name) {
                values.insert(v.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }

    /// A snapshot of the store's counters.
    pub fn stats(&self) -> Stats {
        let series = self.shared.state.read().live as u64;
        let c = self.shared.counters.lock();
        let mut cumulative = 0;
        let mut buckets: Vec<(f64, u64)> = COMMIT_BUCKETS
            .iter()
            .zip(c.commit_buckets)
            .map(|(&le, n)| {
                cumulative += n;
                (le, cumulative)
            })
            .collect();
        buckets.push((f64::INFINITY, c.commits_total));
        let file_len = |suffix: &str| {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        Stats {
            series,
            head_samples: c.head_samples,
            chunk_count: c.chunk_count,
            chunk_bytes: c.chunk_bytes,
            chunk_samples: c.chunk_samples,
            db_file_bytes: file_len("") + file_len("-wal"),
            samples_appended_total: c.samples_appended_total,
            rejected_total: c.rejected_total.clone(),
            commits_total: c.commits_total,
            commit_seconds_sum: c.commit_seconds_sum,
            commit_seconds_buckets: buckets,
            read_cache: self.cache.stats(),
            wal_checkpoints_background: self.checkpoints.background.load(Ordering::Relaxed),
            wal_checkpoints_inline: self.checkpoints.inline.load(Ordering::Relaxed),
        }
    }

    /// Cardinality statistics of the live series (Prometheus's
    /// `/api/v1/status/tsdb`), lists cut to the `top` largest entries.
    pub fn cardinality(&self, top: usize) -> Cardinality {
        crate::limits::cardinality(&self.shared.state.read(), top)
    }

    /// Deletes stored chunks older than `now_ms - retention`, then the
    /// oldest chunks while the database exceeds `max_bytes`, then series
    /// left without samples. Returns the number of samples dropped.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<u64, Error> {
        self.call(|reply| Cmd::Retention { now_ms, reply })
    }

    /// Cuts every head into a stored chunk and empties the write-ahead
    /// record. Call on graceful shutdown (and periodically).
    pub fn flush(&self) -> Result<(), Error> {
        self.call(|reply| Cmd::Flush { reply })
    }

    /// The database file (for diagnostics and backups).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn call<T>(&self, cmd: impl FnOnce(crate::writer::Reply<T>) -> Cmd) -> Result<T, Error> {
        let (reply, rx) = mpsc::channel();
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        tx.send(cmd(reply)).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let pooled = self.readers.lock().pop();
        let conn = match pooled {
            Some(c) => c,
            None => store::open_reader(&self.path)?,
        };
        let res = f(&conn);
        let mut pool = self.readers.lock();
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        res
    }

    /// Union of the ids matching each set (all ids, or all carrying
    /// `with_label`, when there are no sets).
    fn ids_for_sets(
        &self,
        sets: &[Vec<Matcher>],
        with_label: Option<&str>,
    ) -> Result<Vec<SeriesId>, Error> {
        for set in sets {
            check_matchers(set)?;
        }
        let st = self.shared.state.read();
        if sets.is_empty() {
            return Ok(match with_label {
                Some(name) => st.index.with_name(name),
                None => st.all_ids(),
            });
        }
        let mut ids = BTreeSet::new();
        for set in sets {
            ids.extend(st.index.select(set, || st.all_ids()));
        }
        Ok(ids.into_iter().collect())
    }

    fn labels_in_range(
        &self,
        ids: Vec<SeriesId>,
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, Error> {
        let snaps = {
            let st = self.shared.state.read();
            snapshots(&st, ids, start, end)
        };
        self.with_reader(|conn| {
            let mut out = Vec::new();
            for snap in snaps {
                let in_mem = snap
                    .mem_any(start, end)
                    .map_err(|e| store::corrupt(format!("head of series {}", snap.id), e))?;
                if in_mem
                    || (snap.needs_disk(start, end)
                        && store::any_sample(conn, snap.id, start, snap.disk_end(end))?)
                {
                    out.push(snap.labels);
                }
            }
            Ok(out)
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Closing the channel ends the writer once queued commands are done.
        self.tx.take();
        if let Some(h) = self.writer.take()
            && h.join().is_err()
        {
            tracing::error!("tsdb writer thread panicked");
        }
    }
}

fn snapshots(st: &State, ids: Vec<SeriesId>, start: i64, end: i64) -> Vec<SeriesSnapshot> {
    ids.into_iter()
        .filter_map(|id| {
            let s = st.get(id)?;
            s.may_overlap(start, end).then(|| s.snapshot(id))
        })
        .collect()
}

/// A budget the writer must check, or `None` when it limits nothing and
/// names no owner (the writer then skips the budget work per new series).
fn budget_in_force(budget: Budget) -> Option<Budget> {
    (!budget.limits.is_unlimited() || budget.owner.is_some()).then_some(budget)
}

/// Prometheus refuses selectors that would match every series.
fn check_matchers(matchers: &[Matcher]) -> Result<(), Error> {
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(Error::InvalidMatchers(
            "match[] must contain at least one non-empty matcher".into(),
        ));
    }
    Ok(())
}

fn check_range(start: i64, end: i64) -> Result<(), Error> {
    if start > end {
        return Err(Error::InvalidRange { start, end });
    }
    Ok(())
}
