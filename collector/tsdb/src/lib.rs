//! Vigil's embedded time-series store.
//!
//! One SQLite database (WAL mode) under a data directory holds interned
//! series, Gorilla-compressed chunks and a write-ahead record; every series
//! also has an in-memory head (an open chunk) so recent data is served
//! without touching SQLite. Writes go through one writer thread that
//! group-commits concurrent [`Db::append`] calls into one transaction; reads
//! use their own read-only connections and never wait for a commit.
//! The on-disk layout is documented in `FORMAT.md` beside this crate.
//!
//! ```
//! use vigil_tsdb::{Db, Options, SeriesSamples};
//! use vigil_wire::{Labels, Matcher, Sample};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(dir.path(), Options::default()).unwrap();
//! let labels = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
//! let now = 1_700_000_000_000;
//! let out = db
//!     .append(vec![SeriesSamples { labels, samples: vec![Sample::new(now, 1.0)] }], now)
//!     .unwrap();
//! assert_eq!(out.accepted, 1);
//! let got = db.select(&[Matcher::equal("job", "node")], now - 1000, now).unwrap();
//! assert_eq!(got[0].samples, vec![Sample::new(now, 1.0)]);
//! ```

mod checkpoint;
pub mod chunk;
pub mod codec;
mod columns;
mod db;
mod head;
mod index;
mod limits;
mod observer;
mod read_cache;
pub mod sealed;
mod snapshot;
mod store;
mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use thiserror::Error;
use vigil_wire::remote_write::MetricType;
use vigil_wire::{Labels, Sample};

pub use db::{DB_FILE, Db, SeriesFinder, SeriesHint};
pub use limits::{Budget, Cardinality, SeriesLimit, SeriesLimits};
pub use observer::CommitObserver;
pub use read_cache::ReadCacheStats;
pub use snapshot::Snapshot;

/// How hard a commit pushes data to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// WAL mode with `synchronous=NORMAL`: a commit has reached the operating
    /// system when `append` returns, so it survives `kill -9` of the process;
    /// a power loss may lose the last commits (never corrupts).
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced, surviving power loss.
    Full,
}

impl SyncMode {
    /// The value of SQLite's `synchronous` pragma for this mode.
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        }
    }
}

/// Store settings. Every field has a sensible default.
#[derive(Debug, Clone)]
pub struct Options {
    /// Samples older than this (relative to the caller's `now`) are refused on
    /// append and deleted by [`Db::enforce_retention`]. Default 15 days.
    pub retention: Duration,
    /// Size-based retention: when the database file's pages in use exceed
    /// this, each [`Db::enforce_retention`] deletes the oldest chunks in
    /// proportion to the excess. `None` (default) means unlimited.
    pub max_bytes: Option<u64>,
    /// Durability of each commit. Default [`SyncMode::Normal`].
    pub sync: SyncMode,
    /// A head chunk is cut once it holds this many samples. Default 240
    /// (an hour at 15 s), twice Prometheus's 120: every stored chunk also
    /// pays for a table row and an index entry (~50 bytes), which 240
    /// samples amortise to a fifth of a byte each.
    pub chunk_max_samples: usize,
    /// ...or once it spans this many milliseconds. Default 2 h.
    pub chunk_max_duration_ms: i64,
    /// Compaction merges a series' consecutive stored chunks (those a
    /// chunk duration older than the newest data; at a flush, all) into
    /// chunks of up to this many samples spanning at most 12 h. Default
    /// 2048; at most `chunk_max_samples` turns merging off (stored chunks
    /// are still re-encoded one by one). Retention
    /// deletes whole chunks, so merged chunks make it coarser.
    pub compact_max_samples: usize,
    /// Samples newer than `now + max_future_ms` are refused. Default 10 min.
    pub max_future_ms: i64,
    /// Sees every accepted sample before its commit (remote_write
    /// forwarding); see [`CommitObserver`]. Default none.
    pub commit_observer: Option<std::sync::Arc<dyn CommitObserver>>,
    /// Bytes of decoded stored chunks kept for reads (least recently used
    /// go first), so a range read again is copied, not decoded again; 0
    /// turns the cache off. Chunks cost 8 (evenly spaced timestamps) to 12
    /// bytes per sample. Default 64 MiB, about 6 M samples.
    pub read_cache_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(15 * 24 * 3600),
            max_bytes: None,
            sync: SyncMode::Normal,
            chunk_max_samples: 240,
            chunk_max_duration_ms: 2 * 3600 * 1000,
            compact_max_samples: writer::COMPACT_MAX_SAMPLES,
            max_future_ms: 10 * 60 * 1000,
            commit_observer: None,
            read_cache_bytes: 64 << 20,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), Error> {
        if self.chunk_max_samples == 0 || self.chunk_max_samples > chunk::MAX_CHUNK_SAMPLES {
            return Err(Error::InvalidOptions(format!(
                "chunk_max_samples must be in 1..={}, got {}",
                chunk::MAX_CHUNK_SAMPLES,
                self.chunk_max_samples
            )));
        }
        if self.compact_max_samples > crate::sealed::MAX_SEALED_SAMPLES {
            return Err(Error::InvalidOptions(format!(
                "compact_max_samples must be at most {}, got {}",
                crate::sealed::MAX_SEALED_SAMPLES,
                self.compact_max_samples
            )));
        }
        if self.chunk_max_duration_ms <= 0 {
            return Err(Error::InvalidOptions(
                "chunk_max_duration_ms must be positive".into(),
            ));
        }
        if self.max_future_ms < 0 {
            return Err(Error::InvalidOptions(
                "max_future_ms must not be negative".into(),
            ));
        }
        Ok(())
    }

    fn retention_ms(&self) -> i64 {
        i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Samples to append for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Samples read back for one series.
pub type SeriesData = SeriesSamples;

/// Why a sample was refused. Ordered and displayed as snake_case, as used in
/// the `reason` label of the collector's rejected-samples counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Older than the newest sample of its series.
    OutOfOrder,
    /// Same timestamp as the newest sample, different value.
    DuplicateTimestamp,
    /// Older than `now - retention`.
    TooOld,
    /// Newer than `now + max_future_ms`.
    TooFarInFuture,
    /// Would have created a series past a budget (see [`SeriesLimits`]).
    SeriesLimit(SeriesLimit),
}

impl RejectReason {
    /// The reasons that apply to single samples; the series budgets only
    /// apply to appends made with a [`Budget`].
    pub const ALL: [RejectReason; 4] = [
        RejectReason::OutOfOrder,
        RejectReason::DuplicateTimestamp,
        RejectReason::TooOld,
        RejectReason::TooFarInFuture,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::DuplicateTimestamp => "duplicate_timestamp",
            RejectReason::TooOld => "too_old",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::SeriesLimit(SeriesLimit::PerMetric) => "series_limit_per_metric",
            RejectReason::SeriesLimit(SeriesLimit::PerAgent) => "series_limit_per_agent",
            RejectReason::SeriesLimit(SeriesLimit::Total) => "series_limit_total",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one `append` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Samples now durable, including exact re-sends of a series' newest
    /// sample (same timestamp, bitwise-same value), which are acknowledged
    /// but not stored twice.
    pub accepted: u64,
    /// Refused samples by reason; the rest of the batch is still stored.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Series created by this call.
    pub new_series: u64,
    /// New series refused by a budget, by budget and metric name (their
    /// samples are counted in `rejected` under [`RejectReason::SeriesLimit`]).
    pub series_limited: BTreeMap<(SeriesLimit, String), u64>,
}

/// Metric family metadata, as remote_write and `# HELP`/`# TYPE` carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricMeta {
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// A snapshot of the store's counters, for the collector's `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Live series.
    pub series: u64,
    /// Samples held in memory and not yet in a stored chunk.
    pub head_samples: u64,
    pub chunk_count: u64,
    pub chunk_bytes: u64,
    pub chunk_samples: u64,
    /// Database file plus SQLite's own WAL file, in bytes.
    pub db_file_bytes: u64,
    pub samples_appended_total: u64,
    pub rejected_total: BTreeMap<RejectReason, u64>,
    pub commits_total: u64,
    pub commit_seconds_sum: f64,
    /// Cumulative `(upper bound, count)` pairs for a histogram of commit
    /// latency; the `+Inf` bucket equals `commits_total`.
    pub commit_seconds_buckets: Vec<(f64, u64)>,
    /// The decoded-chunk read cache.
    pub read_cache: ReadCacheStats,
    /// Checkpoints of SQLite's WAL file run by the background thread, and
    /// run inline by the writer because the file passed its bound.
    pub wal_checkpoints_background: u64,
    pub wal_checkpoints_inline: u64,
}

/// Errors from the store. [`Error::is_client_error`] tells the HTTP layer
/// which ones are the caller's fault (`bad_data`) rather than the server's.
#[derive(Debug, Error)]
pub enum Error {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("{0}")]
    InvalidMatchers(String),
    #[error("invalid time range: start {start} is after end {end}")]
    InvalidRange { start: i64, end: i64 },
    #[error("invalid series: {0}")]
    InvalidLabels(String),
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("the store's writer has stopped")]
    Closed,
    #[error("{0} is already open in another store (one process per data directory)")]
    Locked(String),
}

impl Error {
    /// True for errors caused by the request (bad matchers, range, labels),
    /// which an API reports as `bad_data`; false for storage failures.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidMatchers(_) | Error::InvalidRange { .. } | Error::InvalidLabels(_)
        )
    }
}
