//! A data directory written by format 2 (symbol table, Gorilla and
//! version-1 sealed chunks, no shared timestamp columns) opens with this
//! build: it is migrated to format 3 on open (the chunks table gains its
//! `ts` column), every sample reads back bit for bit, the wal is replayed,
//! and new data compacts into chunks sharing timestamp columns beside the
//! old ones, across restarts.

use rusqlite::{Connection, params};
use vigil_tsdb::chunk::ChunkEncoder;
use vigil_tsdb::codec::{Symbols, put_uvarint, put_varint};
use vigil_tsdb::sealed::seal_v1;
use vigil_tsdb::{Db, Options, SeriesSamples};
use vigil_wire::{Labels, MatchOp, Matcher, STALE_NAN_BITS, Sample};

const T0: i64 = 1_700_000_000_000;

/// Format 2's schema, as `store::open_writer` created it.
const V2_SCHEMA: &str = "
    CREATE TABLE kv (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE series (id INTEGER PRIMARY KEY, labels BLOB NOT NULL);
    CREATE TABLE symbols (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL,
        min_t INTEGER NOT NULL,
        max_t INTEGER NOT NULL,
        n INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE UNIQUE INDEX chunks_by_series ON chunks (series_id, max_t, min_t);
    CREATE TABLE wal (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE metadata (
        metric TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        help TEXT NOT NULL,
        unit TEXT NOT NULL
    );
    INSERT INTO kv (key, value) VALUES ('format_version', 2);
";

const SERIES: usize = 3;

fn series() -> Vec<Labels> {
    (0..SERIES)
        .map(|i| Labels::from_pairs([("__name__", format!("old_{i}")), ("job", "node".into())]))
        .collect()
}

/// Scrape timestamps with a few milliseconds of jitter, the same for
/// every series (one target), so compaction shares them.
fn ts(i: i64) -> i64 {
    T0 + i * 1000 + (i * 7919) % 13
}

fn value(series: usize, i: i64) -> f64 {
    match (series, i % 9) {
        (_, 4) => f64::from_bits(STALE_NAN_BITS),
        (0, _) => i as f64 * 0.25,
        (1, _) => (i as f64).sin() * 1e3,
        _ => f64::from_bits(0x7ff8_0000_dead_beef),
    }
}

fn write_v2(dir: &std::path::Path) {
    let conn = Connection::open(dir.join("vigil-tsdb.sqlite")).expect("create v2 file");
    conn.execute_batch(V2_SCHEMA).expect("v2 schema");
    let mut symbols = Symbols::default();
    let mut added = Vec::new();
    for (id, labels) in series().iter().enumerate() {
        conn.execute(
            "INSERT INTO series (id, labels) VALUES (?1, ?2)",
            params![id as i64, symbols.encode(labels, &mut added)],
        )
        .expect("series row");
        // A version-1 sealed chunk (samples 0..20), then a Gorilla one (20..30).
        let sealed: Vec<Sample> = (0..20).map(|i| Sample::new(ts(i), value(id, i))).collect();
        let mut enc = ChunkEncoder::new();
        for i in 20..30 {
            enc.append(ts(i), value(id, i));
        }
        for (min_t, max_t, n, data) in [
            (ts(0), ts(19), 20, seal_v1(&sealed)),
            (ts(20), ts(29), 10, enc.bytes().to_vec()),
        ] {
            conn.execute(
                "INSERT INTO chunks (series_id, min_t, max_t, n, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id as i64, min_t, max_t, n, data],
            )
            .expect("chunk row");
        }
    }
    for (id, text) in &added {
        conn.execute(
            "INSERT INTO symbols (id, text) VALUES (?1, ?2)",
            params![id, text],
        )
        .expect("symbol row");
    }
    // Samples 30..35 only in the wal, as after a crash, in the wal record
    // layout the builds of format 2 wrote (version 1: raw values, no value
    // mode).
    let mut record = vec![1u8];
    for id in 0..SERIES {
        put_uvarint(&mut record, id as u64);
        put_uvarint(&mut record, 5);
        put_varint(&mut record, ts(30));
        for i in 31..35 {
            put_varint(&mut record, ts(i) - ts(i - 1));
        }
        for i in 30..35 {
            record.extend_from_slice(&value(id, i).to_bits().to_le_bytes());
        }
    }
    conn.execute("INSERT INTO wal (id, data) VALUES (1, ?1)", params![record])
        .expect("wal row");
    conn.execute(
        "INSERT INTO kv (key, value) VALUES ('next_series_id', ?1)",
        [SERIES as i64],
    )
    .expect("kv row");
}

fn check(db: &Db, upto: i64) {
    let m = [Matcher::new("job", MatchOp::Equal, "node").expect("matcher")];
    let got = db.select(&m, i64::MIN, i64::MAX).expect("select");
    assert_eq!(got.len(), SERIES);
    for s in &got {
        let id = series()
            .iter()
            .position(|l| *l == s.labels)
            .expect("labels read back exactly");
        let want: Vec<(i64, u64)> = (0..upto).map(|i| (ts(i), value(id, i).to_bits())).collect();
        let have: Vec<(i64, u64)> = s
            .samples
            .iter()
            .map(|s| (s.timestamp_ms, s.value.to_bits()))
            .collect();
        assert_eq!(have, want, "{}", s.labels);
    }
}

fn scalar(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[test]
fn format_2_directory_opens_migrates_and_shares_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_v2(dir.path());
    let now = ts(200);
    {
        let db = Db::open(dir.path(), Options::default()).expect("open format 2");
        check(&db, 35);
        // More scrapes of the same target, stored and compacted by the flush.
        let batch = series()
            .into_iter()
            .enumerate()
            .map(|(id, labels)| SeriesSamples {
                labels,
                samples: (35..100)
                    .map(|i| Sample::new(ts(i), value(id, i)))
                    .collect(),
            })
            .collect();
        db.append(batch, now).expect("append");
        db.flush().expect("flush");
        check(&db, 100);
    }
    let conn = Connection::open(dir.path().join("vigil-tsdb.sqlite")).expect("open file");
    assert_eq!(
        scalar(&conn, "SELECT value FROM kv WHERE key = 'format_version'"),
        3
    );
    // Old chunks (sealed and Gorilla), the wal's samples and the new ones
    // merged into one chunk per series, all three referring to one shared
    // timestamp column.
    assert_eq!(
        scalar(&conn, "SELECT count(*) FROM chunks WHERE ts IS NULL"),
        0
    );
    assert_eq!(
        scalar(&conn, "SELECT count(*) FROM chunks WHERE ts IS NOT NULL"),
        SERIES as i64
    );
    assert_eq!(scalar(&conn, "SELECT count(*) FROM timestamps"), 1);
    assert_eq!(scalar(&conn, "SELECT refs FROM timestamps"), SERIES as i64);
    drop(conn);
    let db = Db::open(dir.path(), Options::default()).expect("reopen format 3");
    check(&db, 100);
    // Retention past everything drops the chunks and the column with them.
    db.enforce_retention(now + 16 * 24 * 3600 * 1000)
        .expect("retention");
    drop(db);
    let conn = Connection::open(dir.path().join("vigil-tsdb.sqlite")).expect("open file");
    assert_eq!(scalar(&conn, "SELECT count(*) FROM chunks"), 0);
    assert_eq!(scalar(&conn, "SELECT count(*) FROM timestamps"), 0);
}
