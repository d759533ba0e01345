//! [`Snapshot`]: a read-only, consistent view of a data directory, for
//! tools that read a store another process may be writing (`vigil
//! backtest --data-dir` beside a running `vigil serve`).
//!
//! It takes no lock (the writer keeps its `LOCK`) and never writes. One
//! SQLite read transaction, opened at [`Snapshot::open`] and held for the
//! snapshot's life, makes every read see the database as of that moment:
//! WAL-mode SQLite lets readers and the one writer work side by side. The
//! writer's in-memory heads are not visible to another process, but each
//! head sample is also in a `wal` record until the chunk holding it is
//! stored (in the same transaction that deletes the record), so the
//! snapshot rebuilds the heads from those records exactly as recovery at
//! open does (FORMAT.md, rule 4).
//!
//! While a snapshot is held the writer's checkpoints cannot move past it,
//! so SQLite's own WAL file grows until the snapshot is dropped; hold one
//! for the length of a command, not for the life of a daemon.

use std::collections::HashMap;
use std::path::Path;

use parking_lot::Mutex;
use rusqlite::Connection;
use vigil_wire::{Labels, Matcher, Sample, matches_all};

use crate::db::DB_FILE;
use crate::index::SeriesId;
use crate::{Error, SeriesData, codec, store};

/// A consistent read-only view of a data directory.
pub struct Snapshot {
    conn: Mutex<Connection>,
    series: Vec<(SeriesId, Labels)>,
    /// Samples newer than each series' stored chunks, from `wal` records.
    heads: HashMap<SeriesId, Vec<Sample>>,
}

impl Snapshot {
    /// Opens the store in `dir` read-only, as of now. Fails when there is
    /// no store there (it never creates one).
    pub fn open(dir: &Path) -> Result<Snapshot, Error> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Err(Error::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no Vigil data directory here (the database file is missing)",
                ),
            });
        }
        let conn = store::open_reader(&path)?;
        // Everything below, and every later select, reads one snapshot.
        conn.execute_batch("BEGIN")?;
        match store::kv_get(&conn, "format_version")? {
            Some(store::FORMAT_VERSION) => {}
            v => {
                return Err(Error::Corrupt {
                    what: "database".into(),
                    reason: format!(
                        "format version {v:?}, this build reads {}",
                        store::FORMAT_VERSION
                    ),
                });
            }
        }
        let (series, _symbols) = store::load_series(&conn)?;
        let mut newest: HashMap<SeriesId, i64> = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT series_id, max(max_t) FROM chunks GROUP BY series_id")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let Ok(id) = SeriesId::try_from(id) else {
                    continue;
                };
                newest.insert(id, row.get(1)?);
            }
        }
        let mut heads: HashMap<SeriesId, Vec<Sample>> = HashMap::new();
        {
            let mut stmt = conn.prepare("SELECT id, data FROM wal ORDER BY id")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let wal_id: i64 = row.get(0)?;
                let data = store::blob(row, 1)?;
                codec::decode_wal(data, |sid, samples| {
                    let Ok(sid) = SeriesId::try_from(sid) else {
                        return;
                    };
                    let last = newest.entry(sid).or_insert(i64::MIN);
                    let head = heads.entry(sid).or_default();
                    for s in samples {
                        // As recovery: only samples newer than what is
                        // stored or already replayed.
                        if s.timestamp_ms > *last {
                            *last = s.timestamp_ms;
                            head.push(*s);
                        }
                    }
                })
                .map_err(|e| store::corrupt(format!("wal record {wal_id}"), e))?;
            }
        }
        Ok(Snapshot {
            conn: Mutex::new(conn),
            series,
            heads,
        })
    }

    /// Number of series in the snapshot.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Every series matching all `matchers` with samples in
    /// `[start_ms, end_ms]`, in label order.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, Error> {
        let mut out = Vec::new();
        for (id, labels) in self.matching(matchers) {
            let samples = self.read(id, start_ms, end_ms)?;
            if !samples.is_empty() {
                out.push(SeriesData {
                    labels: labels.clone(),
                    samples,
                });
            }
        }
        Ok(out)
    }

    /// Ids and labels of the series matching all `matchers`, in label
    /// order, whether or not they have samples in a given range.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<(u32, &Labels)> {
        let mut out: Vec<(u32, &Labels)> = self
            .series
            .iter()
            .filter(|(_, l)| matches_all(matchers, l))
            .map(|(id, l)| (*id, l))
            .collect();
        out.sort_by(|a, b| a.1.cmp(b.1));
        out
    }

    /// The samples of series `id` in `[start_ms, end_ms]`, in time order.
    pub fn read(&self, id: u32, start_ms: i64, end_ms: i64) -> Result<Vec<Sample>, Error> {
        let mut samples = Vec::new();
        store::read_samples(&self.conn.lock(), id, start_ms, end_ms, &mut samples)?;
        if let Some(head) = self.heads.get(&id) {
            let lo = head.partition_point(|s| s.timestamp_ms < start_ms);
            let hi = head.partition_point(|s| s.timestamp_ms <= end_ms);
            samples.extend_from_slice(&head[lo..hi]);
        }
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Db, Options, SeriesSamples};

    #[test]
    fn sees_stored_chunks_and_the_writers_unflushed_heads_while_it_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            chunk_max_samples: 10,
            retention: std::time::Duration::from_secs(10 * 365 * 86_400),
            ..Options::default()
        };
        let db = Db::open(dir.path(), opts).expect("open");
        let labels = Labels::from_pairs([("__name__", "m"), ("i", "1")]);
        let now = 1_700_000_000_000i64;
        let samples: Vec<Sample> = (0..25)
            .map(|i| Sample::new(now + i * 1000, i as f64))
            .collect();
        db.append(
            vec![SeriesSamples {
                labels: labels.clone(),
                samples: samples.clone(),
            }],
            now + 25_000,
        )
        .expect("append");
        // The writer holds the directory; a snapshot reads beside it.
        let snap = Snapshot::open(dir.path()).expect("snapshot");
        let got = snap
            .select(&[Matcher::equal("i", "1")], now, now + 100_000)
            .expect("select");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, samples);
        // Later writes are not in this snapshot.
        db.append(
            vec![SeriesSamples {
                labels: labels.clone(),
                samples: vec![Sample::new(now + 30_000, 1.0)],
            }],
            now + 30_000,
        )
        .expect("append");
        let again = snap
            .select(&[Matcher::equal("i", "1")], now, now + 100_000)
            .expect("select");
        assert_eq!(again[0].samples.len(), 25);
        drop(snap);
        let fresh = Snapshot::open(dir.path()).expect("snapshot");
        let got = fresh
            .select(&[Matcher::equal("i", "1")], now + 20_000, now + 100_000)
            .expect("select");
        assert_eq!(got[0].samples.len(), 6);
        assert!(Snapshot::open(&dir.path().join("missing")).is_err());
    }
}
