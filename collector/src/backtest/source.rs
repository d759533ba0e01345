//! The data directory as a backtest reads it ([`SnapshotSource`]: a
//! read-only snapshot, so `vigil serve` may keep running on it) and writes
//! it ([`backfill`]: recording rules' output, only while no serve holds
//! the directory).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use parking_lot::Mutex;
use vigil_promql::{Queryable, SeriesData, StorageError};
use vigil_tsdb::Snapshot;
use vigil_wire::{Labels, Matcher, Sample};

/// A [`Snapshot`] with the samples of each series it has read kept in
/// memory: every rule of a backtest reads the same days of the same
/// series, and decoding them once instead of once per rule is what keeps
/// a hundred rules over a week at seconds.
pub struct SnapshotSource {
    snap: Snapshot,
    /// Per series id: the range read so far and its samples.
    cache: Mutex<HashMap<u32, Cached>>,
}

/// `(start, end, samples)` of one series' cached read.
type Cached = (i64, i64, Arc<Vec<Sample>>);

/// The store inside a `vigil serve` data directory (`DIR/tsdb`), or `dir`
/// itself when it is a store's own directory.
pub fn tsdb_dir(dir: &Path) -> std::path::PathBuf {
    let nested = dir.join("tsdb");
    if nested.join(vigil_tsdb::DB_FILE).is_file() || !dir.join(vigil_tsdb::DB_FILE).is_file() {
        nested
    } else {
        dir.to_path_buf()
    }
}

impl SnapshotSource {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = &tsdb_dir(dir);
        let snap = Snapshot::open(dir).with_context(|| format!("reading {}", dir.display()))?;
        Ok(Self {
            snap,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn samples(&self, id: u32, start: i64, end: i64) -> Result<Arc<Vec<Sample>>, StorageError> {
        let mut cache = self.cache.lock();
        let (lo, hi) = match cache.get(&id) {
            Some((lo, hi, s)) if *lo <= start && end <= *hi => return Ok(s.clone()),
            Some((lo, hi, _)) => ((*lo).min(start), (*hi).max(end)),
            None => (start, end),
        };
        let s = Arc::new(
            self.snap
                .read(id, lo, hi)
                .map_err(|e| StorageError(e.to_string()))?,
        );
        cache.insert(id, (lo, hi, s.clone()));
        Ok(s)
    }
}

impl Queryable for SnapshotSource {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        let mut out = Vec::new();
        self.select_each(matchers, start_ms, end_ms, &mut |s| {
            out.push(s);
            true
        })?;
        Ok(out)
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(SeriesData) -> bool,
    ) -> Result<(), StorageError> {
        for (id, labels) in self.snap.matching(matchers) {
            let all = self.samples(id, start_ms, end_ms)?;
            let lo = all.partition_point(|s| s.timestamp_ms < start_ms);
            let hi = all.partition_point(|s| s.timestamp_ms <= end_ms);
            if lo >= hi {
                continue;
            }
            if !f(SeriesData {
                labels: labels.clone(),
                samples: all[lo..hi].to_vec(),
            }) {
                break;
            }
        }
        Ok(())
    }
}

/// Writes recorded series into the store in `dir`, as `promtool tsdb
/// create-blocks-from rules` backfills Prometheus. Refused while another
/// process (a running `vigil serve`) holds the directory: two writers
/// would each trust their own in-memory state. Samples the store refuses
/// (older than a series' newest sample, e.g. where serve already recorded
/// the same rule) are counted in the summary, never dropped silently.
pub fn backfill(dir: &Path, recorded: &[(Labels, Vec<Sample>)]) -> anyhow::Result<String> {
    let opts = vigil_tsdb::Options {
        // Write the whole period; serve applies its own retention later.
        retention: std::time::Duration::from_secs(10 * 365 * 86_400),
        ..vigil_tsdb::Options::default()
    };
    let user_dir = dir.display().to_string();
    let dir = &tsdb_dir(dir);
    let db = match vigil_tsdb::Db::open(dir, opts) {
        Ok(db) => db,
        Err(vigil_tsdb::Error::Locked(_)) => anyhow::bail!(
            "backfill refused: {user_dir} is in use by a running `vigil serve`. Writing beside it \
             is unsafe (two writers, each trusting its own in-memory index). Stop serve, run \
             `vigil backtest --data-dir {user_dir} --backfill ...` again, then start serve; or run \
             without --backfill, which only reads (safe while serve runs)"
        ),
        Err(e) => return Err(e).with_context(|| format!("opening {} for backfill", dir.display())),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let (mut accepted, mut series) = (0u64, 0u64);
    let mut rejected: std::collections::BTreeMap<String, u64> = Default::default();
    for (labels, samples) in recorded {
        series += 1;
        for part in samples.chunks(50_000) {
            let out = db.append(
                vec![vigil_tsdb::SeriesSamples {
                    labels: labels.clone(),
                    samples: part.to_vec(),
                }],
                now,
            )?;
            accepted += out.accepted;
            for (reason, n) in out.rejected {
                *rejected.entry(format!("{reason:?}")).or_default() += n;
            }
        }
    }
    db.flush().context("flushing the backfilled samples")?;
    let mut summary = format!("{accepted} samples of {series} series written");
    if !rejected.is_empty() {
        let parts: Vec<String> = rejected.iter().map(|(r, n)| format!("{n} {r}")).collect();
        summary.push_str(&format!(
            "; refused: {} (the store keeps one sample per series and time, in order: \
             series that already have newer samples keep them)",
            parts.join(", ")
        ));
    }
    Ok(summary)
}
