//! A data directory written by format 1 (label strings spelled out in
//! `series.labels`, Gorilla chunks only) opens with this build: it is
//! migrated to format 2 and then 3 on open, every sample reads back bit
//! for bit, the wal is replayed, and the store keeps working after further
//! restarts.

use rusqlite::{Connection, params};
use vigil_tsdb::chunk::ChunkEncoder;
use vigil_tsdb::codec::{WalWriter, encode_labels};
use vigil_tsdb::{Db, Options, SeriesSamples};
use vigil_wire::{Labels, MatchOp, Matcher, STALE_NAN_BITS, Sample};

const T0: i64 = 1_700_000_000_000;

/// Format 1's schema, as `store::open_writer` created it.
const V1_SCHEMA: &str = "
    CREATE TABLE kv (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE series (id INTEGER PRIMARY KEY, labels BLOB NOT NULL);
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
    INSERT INTO kv (key, value) VALUES ('format_version', 1);
";

fn series() -> Vec<Labels> {
    vec![
        Labels::from_pairs([("__name__", "old_counter"), ("job", "node")]),
        Labels::from_pairs([("__name__", "old_gauge"), ("job", "node"), ("ünï", "cødé")]),
    ]
}

fn value(series: usize, i: i64) -> f64 {
    match (series, i % 9) {
        (_, 4) => f64::from_bits(STALE_NAN_BITS),
        (0, _) => i as f64 * 0.25,
        _ => (i as f64).sin() * 1e3,
    }
}

fn write_v1(dir: &std::path::Path) {
    let conn = Connection::open(dir.join("vigil-tsdb.sqlite")).expect("create v1 file");
    conn.execute_batch(V1_SCHEMA).expect("v1 schema");
    for (id, labels) in series().iter().enumerate() {
        conn.execute(
            "INSERT INTO series (id, labels) VALUES (?1, ?2)",
            params![id as i64, encode_labels(labels)],
        )
        .expect("series row");
        // Two stored Gorilla chunks of 10 samples each.
        for c in 0..2i64 {
            let mut enc = ChunkEncoder::new();
            for i in c * 10..c * 10 + 10 {
                enc.append(T0 + i * 1000, value(id, i));
            }
            conn.execute(
                "INSERT INTO chunks (series_id, min_t, max_t, n, data) VALUES (?1, ?2, ?3, 10, ?4)",
                params![
                    id as i64,
                    T0 + c * 10_000,
                    T0 + c * 10_000 + 9000,
                    enc.bytes()
                ],
            )
            .expect("chunk row");
        }
    }
    // Samples 20..25 only in the wal, as after a crash.
    let mut w = WalWriter::new();
    for id in 0..2usize {
        let s: Vec<Sample> = (20..25)
            .map(|i| Sample::new(T0 + i * 1000, value(id, i)))
            .collect();
        w.add(id as u64, &s);
    }
    conn.execute(
        "INSERT INTO wal (id, data) VALUES (1, ?1)",
        params![w.finish()],
    )
    .expect("wal row");
    conn.execute(
        "INSERT INTO kv (key, value) VALUES ('next_series_id', 2)",
        [],
    )
    .expect("kv row");
}

fn check(db: &Db, upto: i64) {
    let m = [Matcher::new("job", MatchOp::Equal, "node").expect("matcher")];
    let got = db.select(&m, i64::MIN, i64::MAX).expect("select");
    assert_eq!(got.len(), 2);
    for s in &got {
        let id = series()
            .iter()
            .position(|l| *l == s.labels)
            .expect("labels read back exactly");
        let want: Vec<(i64, u64)> = (0..upto)
            .map(|i| (T0 + i * 1000, value(id, i).to_bits()))
            .collect();
        let have: Vec<(i64, u64)> = s
            .samples
            .iter()
            .map(|s| (s.timestamp_ms, s.value.to_bits()))
            .collect();
        assert_eq!(have, want, "{}", s.labels);
    }
}

#[test]
fn format_1_directory_opens_migrates_and_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_v1(dir.path());
    let now = T0 + 60_000;
    {
        let db = Db::open(dir.path(), Options::default()).expect("open format 1");
        check(&db, 25);
        // A new series shares symbols with the old ones.
        let labels = Labels::from_pairs([("__name__", "old_counter"), ("job", "node2")]);
        let out = db
            .append(
                vec![SeriesSamples {
                    labels,
                    samples: vec![Sample::new(now, 1.5)],
                }],
                now,
            )
            .expect("append");
        assert_eq!(out.accepted, 1);
        // More samples for the migrated series, stored sealed by the flush.
        let batch = series()
            .into_iter()
            .enumerate()
            .map(|(id, labels)| SeriesSamples {
                labels,
                samples: (25..40)
                    .map(|i| Sample::new(T0 + i * 1000, value(id, i)))
                    .collect(),
            })
            .collect();
        db.append(batch, now).expect("append");
        db.flush().expect("flush");
    }
    let conn = Connection::open(dir.path().join("vigil-tsdb.sqlite")).expect("open file");
    let version: i64 = conn
        .query_row(
            "SELECT value FROM kv WHERE key = 'format_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, 3);
    let symbols: i64 = conn
        .query_row("SELECT count(*) FROM symbols", [], |r| r.get(0))
        .expect("symbols");
    // __name__ old_counter old_gauge job node ünï cødé node2: each once.
    assert_eq!(symbols, 8);
    drop(conn);
    let db = Db::open(dir.path(), Options::default()).expect("reopen format 3");
    check(&db, 40);
    let m = [Matcher::new("job", MatchOp::Equal, "node2").expect("matcher")];
    let got = db.select(&m, i64::MIN, i64::MAX).expect("select");
    assert_eq!(got[0].samples, vec![Sample::new(now, 1.5)]);
}

#[test]
fn unknown_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_v1(dir.path());
    let conn = Connection::open(dir.path().join("vigil-tsdb.sqlite")).expect("open file");
    conn.execute("UPDATE kv SET value = 7 WHERE key = 'format_version'", [])
        .expect("bump");
    drop(conn);
    let err = Db::open(dir.path(), Options::default())
        .err()
        .expect("format 7 is refused");
    assert!(err.to_string().contains("format version 7"), "{err}");
}
