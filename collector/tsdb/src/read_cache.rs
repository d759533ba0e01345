//! The decoded-chunk cache of the read path: stored chunks read from SQLite
//! are decoded once and kept, bounded in bytes, so a query that reads the
//! same long range again (a dashboard refresh, a rule over a day, the
//! second of two panels on one metric) copies samples instead of decoding
//! them again.
//!
//! A cached chunk is keyed by its series and time bounds, not by its row:
//! the samples of a series never change once accepted (appends are in
//! order, duplicates refused, ids never reused), and stored chunks of one
//! series never overlap, so the chunk spanning exactly `[min_t, max_t]`
//! always holds the same samples, whatever its encoding. Compaction, which
//! merges chunks into new rows with new bounds, and retention, which deletes
//! them, therefore never make an entry wrong; entries of chunks that are
//! gone are simply never asked for again and age out.
//!
//! Only chunks read from SQLite are cached: the in-memory ones (head,
//! pending, the newest stored chunk kept as a read cache) are at most a
//! chunk per series and already compressed in memory.
//!
//! Entries hold timestamps as 32-bit offsets from the chunk's first one
//! (none at all when they are evenly spaced, as scrapes without jitter are)
//! and values as `f64`: 8 to 12 bytes per sample, against 16 for
//! [`Sample`]. When the total passes the bound, the least recently used
//! entries go until a tenth of the bound is free.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, params};
use vigil_wire::Sample;

use crate::index::SeriesId;
use crate::{Error, chunk, store};

/// Bytes an entry costs beyond its samples: the map slot, the `Arc`
/// header and the boxed slices' pointers.
const ENTRY_OVERHEAD: usize = 96;

/// A chunk's identity: its series and time bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    pub series: SeriesId,
    pub min_t: i64,
    pub max_t: i64,
}

#[derive(Debug)]
enum Times {
    /// `t_i = t_0 + i * step`.
    Regular { step: i64 },
    /// `t_i = t_0 + offsets[i]`.
    Offsets(Box<[u32]>),
    /// Spans too long for 32-bit offsets (never for chunks this store cuts).
    Full(Box<[i64]>),
}

/// One decoded chunk.
#[derive(Debug)]
pub struct Decoded {
    t0: i64,
    times: Times,
    values: Box<[f64]>,
}

impl Decoded {
    /// Packs samples (in time order).
    pub fn new(samples: &[Sample]) -> Self {
        let t0 = samples.first().map_or(0, |s| s.timestamp_ms);
        let values = samples.iter().map(|s| s.value).collect();
        let step = match samples {
            [a, b, ..] => b.timestamp_ms.wrapping_sub(a.timestamp_ms),
            _ => 0,
        };
        let regular = samples.iter().enumerate().all(|(i, s)| {
            (i as i64).checked_mul(step).and_then(|d| t0.checked_add(d)) == Some(s.timestamp_ms)
        });
        let times = if regular {
            Times::Regular { step }
        } else {
            let offsets: Option<Box<[u32]>> = samples
                .iter()
                .map(|s| u32::try_from(s.timestamp_ms.wrapping_sub(t0)).ok())
                .collect();
            match offsets {
                Some(o) => Times::Offsets(o),
                None => Times::Full(samples.iter().map(|s| s.timestamp_ms).collect()),
            }
        };
        Self { t0, times, values }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn time(&self, i: usize) -> i64 {
        match &self.times {
            Times::Regular { step } => self.t0 + i as i64 * step,
            Times::Offsets(o) => self.t0 + i64::from(o[i]),
            Times::Full(t) => t[i],
        }
    }

    /// Bytes held, for the cache's bound.
    pub fn bytes(&self) -> usize {
        let times = match &self.times {
            Times::Regular { .. } => 0,
            Times::Offsets(o) => o.len() * 4,
            Times::Full(t) => t.len() * 8,
        };
        ENTRY_OVERHEAD + times + self.values.len() * 8
    }

    /// Indices of the samples with `start <= t <= end` (timestamps
    /// increase, so they are one run, found by bisection).
    fn indices(&self, start: i64, end: i64) -> std::ops::Range<usize> {
        let n = self.len();
        let lo = partition_point(n, |i| self.time(i) < start);
        let hi = partition_point(n, |i| self.time(i) <= end);
        lo..hi.max(lo)
    }

    /// Appends to `out` the samples with `start <= t <= end`.
    pub fn extend_range(&self, start: i64, end: i64, out: &mut Vec<Sample>) {
        let r = self.indices(start, end);
        self.extend_indices(r, out);
    }

    fn extend_indices(&self, r: std::ops::Range<usize>, out: &mut Vec<Sample>) {
        let (lo, hi) = (r.start, r.end);
        if lo >= hi {
            return;
        }
        // Each arm extends from an iterator of known length (no capacity
        // check per sample), which compiles to a tight loop: pushing one
        // sample at a time was a tenth of a 24-hour `avg_over_time`.
        let values = &self.values[lo..hi];
        match &self.times {
            Times::Regular { step } => {
                let first = self.time(lo);
                out.extend(values.iter().enumerate().map(|(k, &v)| {
                    Sample::new(first.wrapping_add((k as i64).wrapping_mul(*step)), v)
                }));
            }
            Times::Offsets(o) => out.extend(
                o[lo..hi]
                    .iter()
                    .zip(values)
                    .map(|(&off, &v)| Sample::new(self.t0 + i64::from(off), v)),
            ),
            Times::Full(t) => out.extend(
                t[lo..hi]
                    .iter()
                    .zip(values)
                    .map(|(&t, &v)| Sample::new(t, v)),
            ),
        }
    }
}

/// The first `i` in `0..n` for which `pred(i)` is false (`pred` true on a
/// prefix).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Counters of the cache, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCacheStats {
    /// The bound, in bytes (0: the cache is off).
    pub max_bytes: u64,
    pub bytes: u64,
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

struct Entry {
    chunk: Arc<Decoded>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<ChunkKey, Entry>,
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
}

/// The cache; shared by every reader of one store.
pub struct ReadCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

impl ReadCache {
    /// A cache holding at most `max_bytes` (0 turns it off).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The cached chunk, counting a hit or a miss.
    pub fn get(&self, key: &ChunkKey) -> Option<Arc<Decoded>> {
        if !self.enabled() {
            return None;
        }
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.clock += 1;
        match inner.map.get_mut(key) {
            Some(e) => {
                e.last_used = inner.clock;
                inner.hits += 1;
                Some(e.chunk.clone())
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    /// Looks up several chunks at once (one lock): all of them, counted as
    /// hits, or `None` (counting nothing) when one is missing.
    pub fn get_all(&self, keys: &[ChunkKey]) -> Option<Vec<Arc<Decoded>>> {
        if !self.enabled() {
            return None;
        }
        let mut g = self.inner.lock();
        let inner = &mut *g;
        if !keys.iter().all(|k| inner.map.contains_key(k)) {
            return None;
        }
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            inner.clock += 1;
            if let Some(e) = inner.map.get_mut(k) {
                e.last_used = inner.clock;
                out.push(e.chunk.clone());
            }
        }
        inner.hits += keys.len() as u64;
        Some(out)
    }

    /// Adds a decoded chunk, evicting the least recently used entries when
    /// over the bound. A chunk larger than a tenth of the bound is not kept
    /// (one huge read must not empty the cache).
    pub fn insert(&self, key: ChunkKey, chunk: Arc<Decoded>) {
        let bytes = chunk.bytes();
        if !self.enabled() || bytes > self.max_bytes / 10 {
            return;
        }
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.clock += 1;
        let entry = Entry {
            chunk,
            bytes,
            last_used: inner.clock,
        };
        if let Some(old) = inner.map.insert(key, entry) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        if inner.bytes > self.max_bytes {
            let target = self.max_bytes - self.max_bytes / 10;
            let mut by_age: Vec<(u64, ChunkKey)> =
                inner.map.iter().map(|(k, e)| (e.last_used, *k)).collect();
            by_age.sort_unstable_by_key(|(t, _)| *t);
            for (_, k) in by_age {
                if inner.bytes <= target {
                    break;
                }
                if let Some(e) = inner.map.remove(&k) {
                    inner.bytes -= e.bytes;
                    inner.evictions += 1;
                }
            }
            // Give back the table's memory after a large eviction.
            if inner.map.capacity() > 4 * inner.map.len().max(64) {
                inner.map.shrink_to_fit();
            }
        }
    }

    pub fn stats(&self) -> ReadCacheStats {
        let g = self.inner.lock();
        ReadCacheStats {
            max_bytes: self.max_bytes as u64,
            bytes: g.bytes as u64,
            entries: g.map.len() as u64,
            hits: g.hits,
            misses: g.misses,
            evictions: g.evictions,
        }
    }
}

/// The chunks of a series overlapping a range, answered from the
/// `(series_id, max_t, min_t)` index without reading a row.
const LIST_CHUNKS: &str = "SELECT min_t, max_t FROM chunks WHERE series_id = ?1 AND max_t >= ?2 AND min_t <= ?3 ORDER BY max_t";

/// Appends to `out` the stored samples of `id` with `start <= t <= end`,
/// as [`crate::store::read_samples`] does, through `cache`. The chunks
/// overlapping the range are listed from the `chunks_by_series` index
/// alone (no row is read); when all are cached they are copied from the
/// cache. Otherwise one statement reads the rows, as the uncached path
/// does, decoding and caching each chunk not cached yet: the answer always
/// comes from one consistent listing, even while compaction rewrites rows.
/// `then` is how many samples the caller will append after these (its
/// in-memory chunks), reserved with them.
///
/// `newest` receives the last chunk read (the one ending latest) with its
/// key, whole, so the caller can keep a series' newest stored chunk in
/// memory; it stays `None` with the cache off.
pub fn read_samples(
    conn: &Connection,
    cache: &ReadCache,
    id: SeriesId,
    (start, end): (i64, i64),
    then: usize,
    out: &mut Vec<Sample>,
    newest: &mut Option<(ChunkKey, Arc<Decoded>)>,
) -> Result<(), Error> {
    if !cache.enabled() {
        return store::read_samples(conn, id, start, end, out);
    }
    let mut keys = Vec::new();
    {
        let mut stmt = conn.prepare_cached(LIST_CHUNKS)?;
        let mut rows = stmt.query(params![id, start, end])?;
        while let Some(row) = rows.next()? {
            keys.push(ChunkKey {
                series: id,
                min_t: row.get(0)?,
                max_t: row.get(1)?,
            });
        }
    }
    if let Some(chunks) = cache.get_all(&keys) {
        // One allocation for the whole answer (growing by doubling would
        // copy a long series' samples several times).
        let runs: Vec<_> = chunks.iter().map(|c| c.indices(start, end)).collect();
        out.reserve(runs.iter().map(ExactSizeIterator::len).sum::<usize>() + then);
        for (c, r) in chunks.iter().zip(runs) {
            c.extend_indices(r, out);
        }
        *newest = keys.last().copied().zip(chunks.last().cloned());
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT c.min_t, c.max_t, c.data, t.data FROM chunks c LEFT JOIN timestamps t ON t.id = c.ts \
         WHERE c.series_id = ?1 AND c.max_t >= ?2 AND c.min_t <= ?3 ORDER BY c.max_t",
    )?;
    let mut rows = stmt.query(params![id, start, end])?;
    let mut scratch = Vec::new();
    while let Some(row) = rows.next()? {
        let key = ChunkKey {
            series: id,
            min_t: row.get(0)?,
            max_t: row.get(1)?,
        };
        let chunk = match cache.get(&key) {
            Some(c) => c,
            None => {
                scratch.clear();
                let what = || format!("chunk of series {id}");
                // A sealed chunk may keep its timestamps in a shared column.
                let ts = store::ts_column(row, 3).map_err(|e| store::corrupt(what(), e))?;
                chunk::decode_range_ts(
                    store::blob(row, 2)?,
                    ts.as_deref(),
                    i64::MIN,
                    i64::MAX,
                    &mut scratch,
                )
                .map_err(|e| store::corrupt(what(), e))?;
                let c = Arc::new(Decoded::new(&scratch));
                cache.insert(key, c.clone());
                c
            }
        };
        chunk.extend_range(start, end, out);
        *newest = Some((key, chunk));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(series: SeriesId, min_t: i64) -> ChunkKey {
        ChunkKey {
            series,
            min_t,
            max_t: min_t + 100,
        }
    }

    fn samples(ts: &[i64]) -> Vec<Sample> {
        ts.iter().map(|&t| Sample::new(t, t as f64 * 0.5)).collect()
    }

    #[test]
    fn every_timestamp_layout_reads_back_exactly() {
        let regular: Vec<i64> = (0..50).map(|i| 1_000 + i * 15_000).collect();
        let jittered: Vec<i64> = (0..50).map(|i| 1_000 + i * 15_000 + (i % 3)).collect();
        let huge = vec![i64::MIN, 0, i64::MAX];
        let one = vec![42];
        for ts in [regular, jittered, huge, one] {
            let s = samples(&ts);
            let d = Decoded::new(&s);
            let mut all = Vec::new();
            d.extend_range(i64::MIN, i64::MAX, &mut all);
            assert_eq!(all, s);
            for (a, b) in [(0, 1), (1, ts.len() - 1), (2, 2), (0, ts.len() - 1)] {
                if a >= ts.len() || b >= ts.len() {
                    continue;
                }
                let mut got = Vec::new();
                d.extend_range(ts[a], ts[b], &mut got);
                assert_eq!(got, s[a..=b]);
            }
            let mut none = Vec::new();
            if ts[0] > i64::MIN {
                d.extend_range(i64::MIN, ts[0] - 1, &mut none);
            }
            assert!(none.is_empty());
        }
    }

    #[test]
    fn nan_payloads_and_stale_markers_keep_their_bits() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let odd_nan = f64::from_bits(0x7ff8_dead_beef_0001);
        let s = vec![
            Sample::new(0, stale),
            Sample::new(10, odd_nan),
            Sample::new(20, -0.0),
        ];
        let mut got = Vec::new();
        Decoded::new(&s).extend_range(0, 20, &mut got);
        let bits = |v: &[Sample]| v.iter().map(|s| s.value.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&s));
    }

    #[test]
    fn bounded_and_least_recently_used_go_first() {
        let chunk = Arc::new(Decoded::new(&samples(&(0..100).collect::<Vec<_>>())));
        let per = chunk.bytes();
        let cache = ReadCache::new(per * 20);
        for i in 0..20 {
            cache.insert(key(1, i * 1000), chunk.clone());
        }
        assert_eq!(cache.stats().entries, 20);
        // Touch the first one, then overflow: the oldest untouched go.
        assert!(cache.get(&key(1, 0)).is_some());
        cache.insert(key(1, 99_000), chunk.clone());
        let st = cache.stats();
        assert!(st.bytes <= (per * 18) as u64, "{st:?}");
        assert!(st.evictions >= 2);
        assert!(cache.get(&key(1, 0)).is_some());
        assert!(cache.get(&key(1, 1000)).is_none());
        assert!(cache.get(&key(1, 99_000)).is_some());
        let st = cache.stats();
        assert_eq!((st.hits, st.misses), (3, 1));
        assert_eq!(
            cache.get_all(&[key(1, 0), key(1, 99_000)]).map(|v| v.len()),
            Some(2)
        );
        assert!(cache.get_all(&[key(1, 0), key(2, 0)]).is_none());
    }

    #[test]
    fn chunks_are_listed_from_the_index_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = crate::store::open_writer(&dir.path().join("db"), crate::SyncMode::Normal)
            .expect("open");
        let mut plan = String::new();
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {LIST_CHUNKS}"))
            .expect("explain");
        let mut rows = stmt.query(params![1, 0, 10]).expect("query");
        while let Some(r) = rows.next().expect("row") {
            plan.push_str(&r.get::<_, String>(3).expect("detail"));
            plan.push('\n');
        }
        assert!(
            plan.contains("COVERING INDEX chunks_by_series"),
            "plan: {plan}"
        );
    }

    #[test]
    fn the_cached_chunk_listing_is_not_recompiled_per_execution() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let writer =
            crate::store::open_writer(&path, crate::SyncMode::Normal).expect("open writer");
        for i in 0..50i64 {
            writer
                .execute(
                    "INSERT INTO chunks (series_id, min_t, max_t, n, data) VALUES (?1, ?2, ?3, 1, x'00')",
                    params![i % 5, i * 10, i * 10 + 5],
                )
                .expect("insert");
        }
        let reader = crate::store::open_reader(&path).expect("open reader");
        for series in 0..5i64 {
            let mut stmt = reader.prepare_cached(LIST_CHUNKS).expect("prepare");
            let listed = stmt
                .query_map(params![series, 0, 1000], |_| Ok(()))
                .expect("query")
                .count();
            assert_eq!(listed, 10);
            // Without the query planner stability guarantee SQLite
            // recompiled this statement on every execution with new
            // bounds (its range terms made the plan depend on them).
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "re-prepared at series {series}"
            );
        }
    }

    #[test]
    fn off_and_oversized_entries_are_not_kept() {
        let chunk = Arc::new(Decoded::new(&samples(&(0..100).collect::<Vec<_>>())));
        let off = ReadCache::new(0);
        off.insert(key(1, 0), chunk.clone());
        assert!(off.get(&key(1, 0)).is_none());
        assert_eq!(off.stats(), ReadCacheStats::default());
        let small = ReadCache::new(chunk.bytes() * 5);
        small.insert(key(1, 0), chunk);
        assert_eq!(small.stats().entries, 0);
    }
}
