//! The SQLite side: schema, connections and the statements shared by the
//! writer and the readers. Table layouts are described in `FORMAT.md`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use vigil_wire::{Labels, Sample};

use crate::codec;
use crate::index::SeriesId;
use crate::{Error, SyncMode, chunk, sealed};

/// Bumped when the layout changes incompatibly. Version 2 stores label
/// sets as symbol references and may hold sealed chunks; version 3 adds
/// shared timestamp columns (`timestamps`, `chunks.ts`). Older files are
/// migrated on open: version 1's series rewritten, version 2's chunks
/// table given its `ts` column; chunks are read as they are.
pub const FORMAT_VERSION: i64 = 3;

/// SQLite page size for new databases; existing ones keep theirs.
/// Every table and index takes at least one page, and a row is kept whole
/// on its page, so the tail a next row does not fit in is lost. Small
/// pages favour small stores, large pages large rows; 16 KiB is the best
/// compromise measured on `bench-ingest`'s three workloads (FORMAT.md).
/// Compaction keeps chunks under half a page.
const PAGE_SIZE: i64 = 16_384;

pub fn open_writer(path: &Path, sync: SyncMode) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Set before auto_vacuum: SQLite fixes the page size as soon as the
    // auto_vacuum setting is applied to a new file.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    // auto_vacuum only takes effect before the first table is created; it
    // lets size-based retention hand freed pages back to the file system.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::InvalidOptions(format!(
            "SQLite refused WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    fixed_plans(&conn)?;
    // 16 MiB page cache for the writer: chunk and index pages stay hot.
    conn.pragma_update(None, "cache_size", -4_096)?;
    // After a checkpoint, SQLite's WAL file is cut back to 16 MiB instead of
    // keeping its high-water size.
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, labels BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS symbols (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS chunks (
             id INTEGER PRIMARY KEY,
             series_id INTEGER NOT NULL,
             min_t INTEGER NOT NULL,
             max_t INTEGER NOT NULL,
             n INTEGER NOT NULL,
             data BLOB NOT NULL,
             ts INTEGER
         );
         CREATE UNIQUE INDEX IF NOT EXISTS chunks_by_series ON chunks (series_id, max_t, min_t);
         DROP INDEX IF EXISTS chunks_by_max_t;
         CREATE TABLE IF NOT EXISTS timestamps (
             id INTEGER PRIMARY KEY,
             refs INTEGER NOT NULL,
             data BLOB NOT NULL
         );
         CREATE TABLE IF NOT EXISTS wal (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS metadata (
             metric TEXT PRIMARY KEY,
             type TEXT NOT NULL,
             help TEXT NOT NULL,
             unit TEXT NOT NULL
         ) WITHOUT ROWID;",
    )?;
    match kv_get(&conn, "format_version")? {
        None => kv_set(&conn, "format_version", FORMAT_VERSION)?,
        Some(FORMAT_VERSION) => {}
        Some(1) => {
            migrate_v1(&conn)?;
            migrate_v2(&conn)?;
        }
        Some(2) => migrate_v2(&conn)?,
        Some(v) => {
            return Err(Error::Corrupt {
                what: "database".into(),
                reason: format!("format version {v}, this build reads {FORMAT_VERSION}"),
            });
        }
    }
    Ok(conn)
}

pub fn open_reader(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    fixed_plans(&conn)?;
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee. Without it a cached
/// statement whose range terms take bound parameters (every chunk listing)
/// is marked expired when its parameters are rebound, and recompiled on its
/// next step: once per series per query, 3.5% of a 24-hour query's time.
/// Every statement here is planned from an index whatever the values.
fn fixed_plans(conn: &Connection) -> Result<(), Error> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

pub fn kv_get(conn: &Connection, key: &str) -> Result<Option<i64>, Error> {
    Ok(conn
        .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub fn kv_set(conn: &Connection, key: &str, value: i64) -> Result<(), Error> {
    conn.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// Format 1 spelled every label string out in `series.labels`; format 2
/// refers to the `symbols` table. Rewrites every series row, in one
/// transaction with the version bump, so a crash leaves either format.
fn migrate_v1(conn: &Connection) -> Result<(), Error> {
    let started = std::time::Instant::now();
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let res = (|| -> Result<usize, Error> {
        let mut rows = Vec::new();
        {
            let mut stmt = conn.prepare("SELECT id, labels FROM series ORDER BY id")?;
            let mut q = stmt.query([])?;
            while let Some(row) = q.next()? {
                let id: i64 = row.get(0)?;
                let labels = codec::decode_labels(blob(row, 1)?)
                    .map_err(|e| corrupt(format!("series {id}"), e))?;
                rows.push((id, labels));
            }
        }
        let mut symbols = codec::Symbols::default();
        let mut added = Vec::new();
        {
            let mut upd = conn.prepare("UPDATE series SET labels = ?2 WHERE id = ?1")?;
            for (id, labels) in &rows {
                upd.execute(params![id, symbols.encode(labels, &mut added)])?;
            }
            let mut ins = conn.prepare("INSERT INTO symbols (id, text) VALUES (?1, ?2)")?;
            for (id, text) in &added {
                ins.execute(params![id, text])?;
            }
        }
        kv_set(conn, "format_version", 2)?;
        Ok(rows.len())
    })();
    match res {
        Ok(series) => {
            conn.execute_batch("COMMIT")?;
            tracing::info!(
                series,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tsdb migrated from format 1 to 2 (label symbol table)"
            );
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Format 3 lets a chunk refer to a shared timestamp column: format 2's
/// chunks table gains the (empty) `ts` column, in one transaction with the
/// version bump. Its chunks all carry their own timestamps and read as
/// they are.
fn migrate_v2(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let res = (|| -> Result<(), Error> {
        let has_ts = {
            let mut stmt =
                conn.prepare("SELECT 1 FROM pragma_table_info('chunks') WHERE name = 'ts'")?;
            stmt.exists([])?
        };
        if !has_ts {
            conn.execute_batch("ALTER TABLE chunks ADD COLUMN ts INTEGER")?;
        }
        kv_set(conn, "format_version", FORMAT_VERSION)
    })();
    match res {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            tracing::info!("tsdb migrated from format 2 to 3 (shared timestamp columns)");
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Every series with its labels, and the symbol table for new ones.
pub fn load_series(conn: &Connection) -> Result<(Vec<(SeriesId, Labels)>, codec::Symbols), Error> {
    let mut table = std::collections::HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT id, text FROM symbols")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let id = u32::try_from(id).map_err(|e| corrupt(format!("symbol {id}"), e))?;
            table.insert(id, row.get::<_, String>(1)?);
        }
    }
    let mut stmt = conn.prepare("SELECT id, labels FROM series ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let labels = codec::decode_labels_sym(blob(row, 1)?, &table)
            .map_err(|e| corrupt(format!("series {id}"), e))?;
        let id = SeriesId::try_from(id).map_err(|e| corrupt(format!("series {id}"), e))?;
        out.push((id, labels));
    }
    Ok((out, codec::Symbols::from_rows(table)))
}

/// Per series: stored time bounds and the newest stored sample.
pub struct StoredBounds {
    pub id: SeriesId,
    pub min_t: i64,
    pub max_t: i64,
    pub last_value: u64,
    /// Stored chunks of the series.
    pub chunks: u32,
}

/// Totals over the chunks table, kept in `kv` by every transaction that
/// adds or deletes chunks so opening a large store needs no table scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkTotals {
    pub count: u64,
    pub bytes: u64,
    pub samples: u64,
}

impl ChunkTotals {
    const KEYS: [&str; 3] = ["chunk_count", "chunk_bytes", "chunk_samples"];

    pub fn save(&self, conn: &Connection) -> Result<(), Error> {
        for (k, v) in Self::KEYS
            .iter()
            .zip([self.count, self.bytes, self.samples])
        {
            kv_set(conn, k, i64::try_from(v).unwrap_or(i64::MAX))?;
        }
        Ok(())
    }

    /// Reads the saved totals, or counts them once if none were saved.
    pub fn load(conn: &Connection) -> Result<Self, Error> {
        let mut saved = [0u64; 3];
        for (slot, k) in saved.iter_mut().zip(Self::KEYS) {
            match kv_get(conn, k)? {
                Some(v) => *slot = v.max(0) as u64,
                None => return Self::count(conn),
            }
        }
        Ok(Self {
            count: saved[0],
            bytes: saved[1],
            samples: saved[2],
        })
    }

    fn count(conn: &Connection) -> Result<Self, Error> {
        Ok(conn.query_row(
            "SELECT count(*), coalesce(sum(length(data)), 0) \
                 + (SELECT coalesce(sum(length(data)), 0) FROM timestamps), coalesce(sum(n), 0) FROM chunks",
            [],
            |r| {
                Ok(Self {
                    count: r.get::<_, i64>(0)? as u64,
                    bytes: r.get::<_, i64>(1)? as u64,
                    samples: r.get::<_, i64>(2)? as u64,
                })
            },
        )?)
    }
}

pub fn load_bounds(conn: &Connection) -> Result<Vec<StoredBounds>, Error> {
    // Served from the (series_id, max_t, min_t) index alone.
    let mut stmt = conn.prepare(
        "SELECT series_id, min(min_t), max(max_t), count(*) FROM chunks GROUP BY series_id",
    )?;
    let mut out = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let id = SeriesId::try_from(id).map_err(|e| corrupt(format!("series {id}"), e))?;
        out.push(StoredBounds {
            id,
            min_t: row.get(1)?,
            max_t: row.get(2)?,
            last_value: 0,
            chunks: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(u32::MAX),
        });
    }
    drop(rows);
    // The newest stored value, for duplicate detection after a restart.
    let mut last = conn.prepare_cached(
        "SELECT c.data, t.data FROM chunks c LEFT JOIN timestamps t ON t.id = c.ts \
         WHERE c.series_id = ?1 ORDER BY c.max_t DESC LIMIT 1",
    )?;
    for b in &mut out {
        let (data, ts): (Vec<u8>, Option<Vec<u8>>) =
            last.query_row([b.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let what = || format!("chunk of series {}", b.id);
        let ts = ts
            .map(|t| sealed::decode_timestamps(&t))
            .transpose()
            .map_err(|e| corrupt(what(), e))?;
        let samples = chunk::decode_ts(&data, ts.as_deref()).map_err(|e| corrupt(what(), e))?;
        let newest = samples
            .last()
            .ok_or_else(|| corrupt(format!("chunk of series {}", b.id), "empty chunk"))?;
        b.last_value = newest.value.to_bits();
    }
    Ok(out)
}

/// `(min_t, max_t)` of one series' stored chunks.
pub fn series_bounds(conn: &Connection, id: SeriesId) -> Result<Option<(i64, i64)>, Error> {
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT min(min_t), max(max_t) FROM chunks WHERE series_id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(lo.zip(hi))
}

/// Appends to `out` the stored samples of `id` with `start <= t <= end`.
pub fn read_samples(
    conn: &Connection,
    id: SeriesId,
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
) -> Result<(), Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.data, t.data FROM chunks c LEFT JOIN timestamps t ON t.id = c.ts \
         WHERE c.series_id = ?1 AND c.max_t >= ?2 AND c.min_t <= ?3 ORDER BY c.max_t",
    )?;
    let mut rows = stmt.query(params![id, start, end])?;
    while let Some(row) = rows.next()? {
        let what = || format!("chunk of series {id}");
        let data = blob(row, 0)?;
        let ts = ts_column(row, 1).map_err(|e| corrupt(what(), e))?;
        chunk::decode_range_ts(data, ts.as_deref(), start, end, out)
            .map_err(|e| corrupt(what(), e))?;
    }
    Ok(())
}

/// Whether `id` has a stored sample with `start <= t <= end`.
pub fn any_sample(conn: &Connection, id: SeriesId, start: i64, end: i64) -> Result<bool, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.min_t, c.max_t, c.data, t.data FROM chunks c LEFT JOIN timestamps t ON t.id = c.ts \
         WHERE c.series_id = ?1 AND c.max_t >= ?2 AND c.min_t <= ?3 ORDER BY c.max_t",
    )?;
    let mut rows = stmt.query(params![id, start, end])?;
    while let Some(row) = rows.next()? {
        let (lo, hi): (i64, i64) = (row.get(0)?, row.get(1)?);
        // A chunk's first and last samples sit at its bounds.
        if (start..=end).contains(&lo) || (start..=end).contains(&hi) {
            return Ok(true);
        }
        let what = || format!("chunk of series {id}");
        let data = blob(row, 2)?;
        let ts = ts_column(row, 3).map_err(|e| corrupt(what(), e))?;
        if chunk::any_in_range_ts(data, ts.as_deref(), start, end)
            .map_err(|e| corrupt(what(), e))?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Returns every free page to the file system and answers how many pages
/// the file shrank by. Each step of SQLite's `incremental_vacuum` statement
/// moves one page, so it is stepped to the end (`execute_batch` steps once).
pub fn vacuum_free_pages(conn: &Connection) -> Result<u64, Error> {
    let before: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    drop(rows);
    let after: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    Ok((before - after).max(0) as u64)
}

/// Bytes of the database file in use (free pages excluded), which is what
/// size-based retention bounds.
pub fn used_bytes(conn: &Connection) -> Result<u64, Error> {
    let page_count: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((page_count - free).max(0) * page_size) as u64)
}

pub fn corrupt(what: String, reason: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

/// The decoded timestamp column in a row's column `idx` (`None` when NULL:
/// the chunk has its own timestamps).
pub fn ts_column(row: &Row<'_>, idx: usize) -> Result<Option<Vec<i64>>, Error> {
    match row.get_ref(idx)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        v => {
            let b = v
                .as_blob()
                .map_err(|e| corrupt(format!("column {idx}"), e))?;
            Ok(Some(
                sealed::decode_timestamps(b).map_err(|e| corrupt("timestamp column".into(), e))?,
            ))
        }
    }
}

/// Stores a new timestamp column with one reference; returns its id.
pub fn ts_insert(conn: &Connection, data: &[u8]) -> Result<i64, Error> {
    conn.prepare_cached("INSERT INTO timestamps (refs, data) VALUES (1, ?1)")?
        .execute([data])?;
    Ok(conn.last_insert_rowid())
}

/// The bytes of timestamp column `id`, if it exists.
pub fn ts_data(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .prepare_cached("SELECT data FROM timestamps WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Adds `delta` references to column `id`, deleting it when none remain;
/// returns the bytes freed (0 when it stays).
pub fn ts_refs(conn: &Connection, id: i64, delta: i64) -> Result<u64, Error> {
    conn.prepare_cached("UPDATE timestamps SET refs = refs + ?2 WHERE id = ?1")?
        .execute(params![id, delta])?;
    if delta >= 0 {
        return Ok(0);
    }
    let freed: Option<i64> = conn
        .prepare_cached(
            "DELETE FROM timestamps WHERE id = ?1 AND refs <= 0 RETURNING length(data)",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(freed.unwrap_or(0).max(0) as u64)
}

/// A BLOB column borrowed from a row; any other type means a damaged row.
pub fn blob<'a>(row: &'a Row<'_>, idx: usize) -> Result<&'a [u8], Error> {
    row.get_ref(idx)?
        .as_blob()
        .map_err(|e| corrupt(format!("column {idx}"), e))
}
