//! In-memory state shared by the writer and the readers: every live series
//! with its head (an open, already compressed chunk), chunks cut from the
//! head but not yet stored, and the series index.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vigil_wire::{Labels, Sample};

use crate::chunk::{self, ChunkEncoder, ChunkError};
use crate::index::{Index, SeriesId};

/// A chunk cut from a head and waiting to be written by the next commit.
#[derive(Debug, Clone)]
pub struct CutChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub n: u32,
    pub data: Arc<[u8]>,
}

#[derive(Debug)]
pub struct Series {
    pub labels: Labels,
    pub head: ChunkEncoder,
    /// Wal record holding the head's first sample (valid when non-empty).
    pub head_wal: u64,
    pub pending: Vec<CutChunk>,
    /// Newest sample ever accepted `(t, value bits)`, kept across chunk cuts
    /// so ordering and duplicate checks need no I/O.
    pub last: Option<(i64, u64)>,
    /// Time bounds of this series' stored chunks, `None` when it has none.
    pub stored: Option<(i64, i64)>,
    /// The newest chunk this process stored, kept as a read cache: queries
    /// over the last hour or two (rule evaluation, dashboards' default
    /// ranges) then never touch SQLite, as Prometheus serves them from its
    /// head block. Not counted as in-memory samples (it is on disk too).
    /// Kept only for a series read since its previous chunk was stored
    /// (`read_since_store`): series nobody queries, most of a large
    /// ingest, do not hold a second chunk in memory each.
    pub recent: Option<CutChunk>,
    /// Set by every read of the series, taken (cleared) by each store.
    pub read_since_store: AtomicBool,
    /// The agent that created the series in this process (not persisted:
    /// series loaded at start-up have none), for the per-agent budget.
    pub owner: Option<Arc<str>>,
    /// Stored chunks compaction has not looked at yet.
    pub loose_chunks: u32,
    /// Compaction reads this series' chunks ending at or after this time
    /// (the start of its last, possibly partial, merged group).
    pub compact_from: i64,
}

impl Series {
    pub fn new(labels: Labels) -> Self {
        Self {
            labels,
            head: ChunkEncoder::new(),
            head_wal: 0,
            pending: Vec::new(),
            last: None,
            stored: None,
            recent: None,
            read_since_store: AtomicBool::new(false),
            owner: None,
            loose_chunks: 0,
            compact_from: i64::MIN,
        }
    }

    /// Appends an already validated sample to the head, first cutting the
    /// head into `pending` when it is full by count or time span.
    pub fn push(&mut self, s: Sample, wal_id: u64, max_samples: usize, max_duration_ms: i64) {
        if !self.head.is_empty()
            && (self.head.len() >= max_samples
                || self.head.is_full()
                || s.timestamp_ms.saturating_sub(self.head.first_t()) >= max_duration_ms)
        {
            self.cut();
        }
        if self.head.is_empty() {
            self.head_wal = wal_id;
        }
        self.head.append(s.timestamp_ms, s.value);
        self.last = Some((s.timestamp_ms, s.value.to_bits()));
    }

    /// Moves a non-empty head to `pending`.
    pub fn cut(&mut self) {
        if self.head.is_empty() {
            return;
        }
        let next =
            ChunkEncoder::with_capacity(self.head.bytes().len() + self.head.bytes().len() / 8);
        let head = std::mem::replace(&mut self.head, next);
        let (min_t, max_t, n) = (head.first_t(), head.last_t(), head.len() as u32);
        // Stored as it is: re-encoding (sealing) is compaction's job, off
        // the ingest path.
        self.pending.push(CutChunk {
            min_t,
            max_t,
            n,
            data: Arc::from(head.into_bytes()),
        });
    }

    /// Samples in memory (pending chunks and head).
    pub fn mem_samples(&self) -> u64 {
        self.pending.iter().map(|c| u64::from(c.n)).sum::<u64>() + self.head.len() as u64
    }

    /// A copy of what a reader needs, taken under the state lock.
    pub fn snapshot(&self, id: SeriesId) -> SeriesSnapshot {
        self.read_since_store.store(true, Ordering::Relaxed);
        let recent = self.recent.iter();
        let mut mem: Vec<Arc<[u8]>> = recent
            .clone()
            .chain(self.pending.iter())
            .map(|c| c.data.clone())
            .collect();
        if !self.head.is_empty() {
            mem.push(Arc::from(self.head.bytes()));
        }
        let mem_min_t = recent
            .chain(self.pending.iter())
            .next()
            .map(|c| c.min_t)
            .or_else(|| (!self.head.is_empty()).then(|| self.head.first_t()));
        SeriesSnapshot {
            id,
            labels: self.labels.clone(),
            mem,
            mem_min_t,
            stored: self.stored,
            has_recent: self.recent.is_some(),
        }
    }

    /// Whether the series may hold samples in `[start, end]` (cheap bounds check).
    pub fn may_overlap(&self, start: i64, end: i64) -> bool {
        let stored = self.stored.is_some_and(|(lo, hi)| lo <= end && hi >= start);
        let mem_lo = self
            .pending
            .first()
            .map(|c| c.min_t)
            .or_else(|| (!self.head.is_empty()).then(|| self.head.first_t()));
        let mem = match (mem_lo, self.last) {
            (Some(lo), Some((hi, _))) => lo <= end && hi >= start,
            _ => false,
        };
        stored || mem
    }
}

/// A reader's copy of one series.
pub struct SeriesSnapshot {
    pub id: SeriesId,
    pub labels: Labels,
    /// The cached newest stored chunk, pending chunks, then the head,
    /// oldest first.
    pub mem: Vec<Arc<[u8]>>,
    /// First in-memory timestamp; stored samples at or after it are also in
    /// `mem` (a concurrent flush may have stored them meanwhile).
    pub mem_min_t: Option<i64>,
    pub stored: Option<(i64, i64)>,
    /// Whether `mem` starts with the newest stored chunk.
    pub has_recent: bool,
}

impl SeriesSnapshot {
    /// Whether stored chunks must be read for `[start, end]`.
    pub fn needs_disk(&self, start: i64, end: i64) -> bool {
        let end = match self.mem_min_t {
            Some(m) => end.min(m.saturating_sub(1)),
            None => end,
        };
        self.stored
            .is_some_and(|(lo, hi)| lo <= end && hi >= start && start <= end)
    }

    /// The end of the range to read from disk (exclusive of memory).
    pub fn disk_end(&self, end: i64) -> i64 {
        match self.mem_min_t {
            Some(m) => end.min(m.saturating_sub(1)),
            None => end,
        }
    }

    /// Samples held by the in-memory chunks (all of them, in range or not).
    pub fn mem_len(&self) -> usize {
        self.mem
            .iter()
            .map(|c| chunk::chunk_len(c).unwrap_or(0))
            .sum()
    }

    pub fn mem_samples(
        &self,
        start: i64,
        end: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), ChunkError> {
        for c in &self.mem {
            chunk::decode_range(c, start, end, out)?;
        }
        Ok(())
    }

    pub fn mem_any(&self, start: i64, end: i64) -> Result<bool, ChunkError> {
        for c in &self.mem {
            if chunk::any_in_range(c, start, end)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// All series, addressed by id (ids are dense; dropped ones leave `None`).
#[derive(Debug, Default)]
pub struct State {
    /// Boxed so the slot of a series dropped by retention costs 8 bytes,
    /// not a whole `Series`, when ids churn.
    pub series: Vec<Option<Box<Series>>>,
    pub index: Index,
    pub live: usize,
    /// Series that have `pending` chunks, for the next commit to store.
    pub cut_ids: Vec<SeriesId>,
    /// Live series per owner; an owner leaves the map with its last series.
    pub owners: HashMap<Arc<str>, usize>,
}

impl State {
    /// Series whose oldest stored chunk starts before `cutoff`: the only
    /// ones retention with that cutoff can touch.
    pub fn stored_before(&self, cutoff: i64) -> Vec<SeriesId> {
        self.series
            .iter()
            .enumerate()
            .filter_map(|(id, s)| {
                let s = s.as_ref()?;
                s.stored
                    .filter(|(lo, _)| *lo < cutoff)
                    .map(|_| id as SeriesId)
            })
            .collect()
    }

    pub fn get(&self, id: SeriesId) -> Option<&Series> {
        self.series.get(id as usize).and_then(Option::as_deref)
    }

    pub fn get_mut(&mut self, id: SeriesId) -> Option<&mut Series> {
        self.series
            .get_mut(id as usize)
            .and_then(Option::as_deref_mut)
    }

    pub fn lookup(&self, labels: &Labels) -> Option<SeriesId> {
        self.index.get(labels, |id| self.get(id).map(|s| &s.labels))
    }

    /// The series whose labels are exactly `pairs` (see
    /// [`Index::get_pairs`]), with its shared labels.
    pub fn lookup_pairs<'p, I>(&self, pairs: I) -> Option<(SeriesId, &Labels)>
    where
        I: ExactSizeIterator<Item = (&'p str, &'p str)> + Clone,
    {
        let id = self
            .index
            .get_pairs(pairs, |id| self.get(id).map(|s| &s.labels))?;
        Some((id, &self.get(id)?.labels))
    }

    pub fn insert(&mut self, id: SeriesId, labels: Labels) {
        self.insert_owned(id, labels, None);
    }

    /// Inserts a series created on behalf of `owner`.
    pub fn insert_owned(&mut self, id: SeriesId, labels: Labels, owner: Option<Arc<str>>) {
        let idx = id as usize;
        if self.series.len() <= idx {
            self.series.resize_with(idx + 1, || None);
        }
        self.index.insert(id, &labels);
        match self.series[idx].take() {
            None => self.live += 1,
            Some(old) => self.disown(old.owner.as_ref()),
        }
        if let Some(o) = &owner {
            *self.owners.entry(o.clone()).or_default() += 1;
        }
        let mut series = Series::new(labels);
        series.owner = owner;
        self.series[idx] = Some(Box::new(series));
    }

    fn disown(&mut self, owner: Option<&Arc<str>>) {
        let Some(o) = owner else { return };
        if let Some(n) = self.owners.get_mut(o) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.owners.remove(o);
            }
        }
    }

    pub fn remove(&mut self, id: SeriesId) {
        if let Some(s) = self.series.get_mut(id as usize).and_then(Option::take) {
            self.index.remove(id, &s.labels);
            self.live -= 1;
            self.disown(s.owner.as_ref());
        }
    }

    pub fn all_ids(&self) -> Vec<SeriesId> {
        self.series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| i as SeriesId)
            .collect()
    }
}
