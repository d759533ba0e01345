//! Behaviour of the public API beyond the model test: bad input, metadata,
//! stats, retention by size, group commit under concurrency.

use std::sync::Arc;
use std::time::Duration;

use vigil_tsdb::{Db, Error, MetricMeta, Options, RejectReason, SeriesSamples};
use vigil_wire::remote_write::MetricType;
use vigil_wire::{Labels, MatchOp, Matcher, Sample, is_stale_nan, stale_nan};

const NOW: i64 = 1_700_000_000_000;

fn db(dir: &std::path::Path) -> Db {
    Db::open(dir, Options::default()).expect("open")
}

fn one(name: &str, job: &str, samples: Vec<Sample>) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs([("__name__", name), ("job", job)]),
        samples,
    }
}

#[test]
fn db_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Db>();
}

#[test]
fn bad_queries_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    db.append(vec![one("up", "a", vec![Sample::new(NOW, 1.0)])], NOW)
        .expect("append");
    let empty_ok = Matcher::new("job", MatchOp::RegexMatch, ".*").expect("matcher");
    let up = Matcher::equal("__name__", "up");

    assert!(matches!(
        db.select(&[], 0, NOW),
        Err(Error::InvalidMatchers(_))
    ));
    assert!(matches!(
        db.select(std::slice::from_ref(&empty_ok), 0, NOW),
        Err(Error::InvalidMatchers(_))
    ));
    assert!(matches!(
        db.select(std::slice::from_ref(&up), NOW, NOW - 1),
        Err(Error::InvalidRange { .. })
    ));
    assert!(matches!(
        db.series(&[vec![empty_ok.clone()]], 0, NOW),
        Err(Error::InvalidMatchers(_))
    ));
    assert!(matches!(
        db.series(&[vec![up.clone()], vec![]], 0, NOW),
        Err(Error::InvalidMatchers(_))
    ));
    assert!(matches!(
        db.label_names(&[], NOW, 0),
        Err(Error::InvalidRange { .. })
    ));
    assert!(matches!(
        db.label_values("bad-name", &[], 0, NOW),
        Err(Error::InvalidLabels(_))
    ));
    assert!(matches!(
        db.append(
            vec![SeriesSamples {
                labels: Labels::empty(),
                samples: vec![Sample::new(NOW, 1.0)]
            }],
            NOW
        ),
        Err(Error::InvalidLabels(_))
    ));
    // Extreme but valid ranges work.
    assert_eq!(
        db.select(&[up.clone(), empty_ok], i64::MIN, i64::MAX)
            .expect("select")
            .len(),
        1
    );
    assert!(
        db.select(&[up], NOW + 1, NOW + 1)
            .expect("select")
            .is_empty()
    );
    assert_eq!(
        db.label_values("__name__", &[], i64::MIN, i64::MAX)
            .expect("values"),
        ["up"]
    );
}

#[test]
fn a_directory_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = db(dir.path());
    assert!(matches!(
        Db::open(dir.path(), Options::default()),
        Err(Error::Locked(_))
    ));
    drop(first);
    assert!(Db::open(dir.path(), Options::default()).is_ok());
}

#[test]
fn full_sync_mode_works_and_garbage_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(
            dir.path(),
            Options {
                sync: vigil_tsdb::SyncMode::Full,
                ..Options::default()
            },
        )
        .expect("open");
        let out = db
            .append(vec![one("up", "a", vec![Sample::new(NOW, 1.0)])], NOW)
            .expect("append");
        assert_eq!(out.accepted, 1);
    }
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        other.path().join("vigil-tsdb.sqlite"),
        b"this is not a database, just text",
    )
    .expect("write");
    assert!(matches!(
        Db::open(other.path(), Options::default()),
        Err(Error::Sqlite(_))
    ));
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = Options {
        chunk_max_samples: 0,
        ..Options::default()
    };
    assert!(matches!(
        Db::open(dir.path(), bad),
        Err(Error::InvalidOptions(_))
    ));
    let bad = Options {
        chunk_max_duration_ms: 0,
        ..Options::default()
    };
    assert!(matches!(
        Db::open(dir.path(), bad),
        Err(Error::InvalidOptions(_))
    ));
}

#[test]
fn rejections_are_counted_and_valid_samples_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    let out = db
        .append(
            vec![one(
                "up",
                "a",
                vec![
                    Sample::new(NOW - 10, 1.0),
                    Sample::new(NOW - 20, 1.0), // out of order
                    Sample::new(NOW - 10, 2.0), // duplicate timestamp
                    Sample::new(NOW - 10, 1.0), // exact re-send: no-op
                    Sample::new(NOW - 16 * 86_400_000, 1.0), // too old
                    Sample::new(NOW + 11 * 60_000, 1.0), // too far in the future
                    Sample::new(NOW, stale_nan()),
                ],
            )],
            NOW,
        )
        .expect("append");
    assert_eq!(out.accepted, 3);
    assert_eq!(out.new_series, 1);
    for r in RejectReason::ALL {
        assert_eq!(out.rejected.get(&r), Some(&1), "{r}");
    }
    assert_eq!(
        RejectReason::TooFarInFuture.to_string(),
        "too_far_in_future"
    );
    db.flush().expect("flush");
    let got = db
        .select(&[Matcher::equal("job", "a")], 0, NOW)
        .expect("select");
    assert_eq!(got[0].samples.len(), 2);
    assert_eq!(got[0].samples[0], Sample::new(NOW - 10, 1.0));
    assert!(is_stale_nan(got[0].samples[1].value));
    let stats = db.stats();
    assert_eq!(stats.samples_appended_total, 3);
    assert_eq!(stats.rejected_total.values().sum::<u64>(), 4);
    assert_eq!(
        (
            stats.series,
            stats.chunk_count,
            stats.chunk_samples,
            stats.head_samples
        ),
        (1, 1, 2, 0)
    );
    assert!(stats.db_file_bytes > 0);
    assert_eq!(
        stats.commit_seconds_buckets.last().map(|b| b.1),
        Some(stats.commits_total)
    );
}

#[test]
fn metadata_persists_last_write_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = db(dir.path());
        let meta = |help: &str| MetricMeta {
            metric_type: MetricType::Counter,
            help: help.into(),
            unit: "bytes".into(),
        };
        db.set_metadata("node_network_receive_bytes_total", meta("old"))
            .expect("meta");
        db.set_metadata("node_network_receive_bytes_total", meta("new"))
            .expect("meta");
        db.set_metadata(
            "node_load1",
            MetricMeta {
                metric_type: MetricType::Gauge,
                help: "1m load".into(),
                unit: String::new(),
            },
        )
        .expect("meta");
    }
    let db = db(dir.path());
    let m = db.metadata().expect("metadata");
    assert_eq!(m.len(), 2);
    assert_eq!(m["node_network_receive_bytes_total"].help, "new");
    assert_eq!(
        m["node_network_receive_bytes_total"].metric_type,
        MetricType::Counter
    );
    assert_eq!(m["node_load1"].metric_type, MetricType::Gauge);
}

#[test]
fn size_retention_drops_oldest_chunks_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        chunk_max_samples: 30,
        // Compaction off: the flush would merge each series' ten chunks
        // into one, and retention deletes whole chunks; this test is about
        // which chunks go first.
        compact_max_samples: 30,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts.clone()).expect("open");
    // Incompressible values so the file grows quickly.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..300 {
        let t = NOW - 3_000_000 + step * 10_000;
        let batch = (0..50)
            .map(|s| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                one(
                    "noise",
                    &s.to_string(),
                    vec![Sample::new(t, f64::from_bits(x >> 2))],
                )
            })
            .collect();
        db.append(batch, NOW).expect("append");
    }
    db.flush().expect("flush");
    let before = db.stats();
    drop(db);
    let file = dir.path().join("vigil-tsdb.sqlite");
    // The flush left no free pages: the file is what is in use. Ask for
    // two thirds of the chunk bytes to go (the schema's own pages stay).
    let in_use = std::fs::metadata(&file).expect("db file").len();
    let limit = in_use - before.chunk_bytes * 2 / 3;
    let db = Db::open(
        dir.path(),
        Options {
            max_bytes: Some(limit),
            ..opts
        },
    )
    .expect("reopen");
    let file_before = std::fs::metadata(&file).expect("db file").len();
    let dropped = db.enforce_retention(NOW).expect("retention");
    assert!(dropped > 0);
    // The freed pages go back to the file system, not only to SQLite's
    // free list: the limit bounds what the operator sees on disk.
    db.flush().expect("flush");
    let file_after = std::fs::metadata(&file).expect("db file").len();
    assert!(
        file_after < file_before,
        "file did not shrink: {file_before} -> {file_after}"
    );
    let after = db.stats();
    assert!(after.chunk_bytes < before.chunk_bytes);
    assert_eq!(after.chunk_samples, before.chunk_samples - dropped);
    let all = [Matcher::equal("__name__", "noise")];
    let got = db.select(&all, i64::MIN, i64::MAX).expect("select");
    // The newest sample of every series survives; the oldest is gone.
    assert_eq!(got.len(), 50);
    for s in &got {
        assert_eq!(
            s.samples.last().map(|x| x.timestamp_ms),
            Some(NOW - 3_000_000 + 299 * 10_000)
        );
        assert!(s.samples[0].timestamp_ms > NOW - 3_000_000);
    }
}

#[test]
fn flush_leaves_no_free_pages_and_an_empty_sqlite_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    // Many small commits: each leaves a write-ahead record that the flush
    // deletes, which frees pages inside the file.
    for step in 0..400 {
        let batch = (0..20)
            .map(|s| {
                one(
                    "load",
                    &s.to_string(),
                    vec![Sample::new(NOW + step * 15_000, (step * s) as f64)],
                )
            })
            .collect();
        db.append(batch, NOW + step * 15_000).expect("append");
    }
    db.flush().expect("flush");
    let sqlite = dir.path().join("vigil-tsdb.sqlite");
    let conn =
        rusqlite::Connection::open_with_flags(&sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
    let free: i64 = conn
        .pragma_query_value(None, "freelist_count", |r| r.get(0))
        .expect("freelist_count");
    assert_eq!(free, 0, "free pages left in the file after flush");
    drop(conn);
    let wal_len = std::fs::metadata(dir.path().join("vigil-tsdb.sqlite-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal_len, 0, "SQLite WAL not truncated by flush");
    let got = db
        .select(&[Matcher::equal("__name__", "load")], i64::MIN, i64::MAX)
        .expect("select");
    assert_eq!(got.iter().map(|s| s.samples.len()).sum::<usize>(), 8000);
}

#[test]
fn age_retention_drops_empty_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        retention: Duration::from_secs(3600),
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts.clone()).expect("open");
    db.append(
        vec![one("old", "a", vec![Sample::new(NOW - 1000, 1.0)])],
        NOW,
    )
    .expect("append");
    db.append(
        vec![one("new", "a", vec![Sample::new(NOW + 7_200_000, 1.0)])],
        NOW + 7_200_000,
    )
    .expect("append");
    db.flush().expect("flush");
    assert_eq!(db.stats().series, 2);
    assert_eq!(db.enforce_retention(NOW + 7_200_000).expect("retention"), 1);
    assert_eq!(db.stats().series, 1);
    drop(db);
    let db = Db::open(dir.path(), opts).expect("reopen");
    assert_eq!(
        db.label_values("__name__", &[], i64::MIN, i64::MAX)
            .expect("values"),
        ["new"]
    );
    assert_eq!(db.stats().series, 1);
}

#[test]
fn concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(db(dir.path()));
    let threads = 8;
    let per_thread = 50;
    let handles: Vec<_> = (0..threads)
        .map(|th| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let t = NOW - 100_000 + i * 1000;
                    let out = db
                        .append(
                            vec![one("c", &th.to_string(), vec![Sample::new(t, i as f64)])],
                            NOW,
                        )
                        .expect("append");
                    assert_eq!(out.accepted, 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let stats = db.stats();
    assert_eq!(stats.samples_appended_total, (threads * per_thread) as u64);
    // Never more than one transaction per call, usually far fewer.
    assert!(stats.commits_total <= (threads * per_thread) as u64);
    let got = db
        .select(&[Matcher::equal("__name__", "c")], i64::MIN, i64::MAX)
        .expect("select");
    assert_eq!(got.len(), threads as usize);
    assert!(got.iter().all(|s| s.samples.len() == per_thread as usize));
}

#[test]
fn reads_during_writes_and_flushes_see_consistent_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        chunk_max_samples: 5,
        ..Options::default()
    };
    let db = Arc::new(Db::open(dir.path(), opts).expect("open"));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let total = 400;
    let writer = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..total {
                let t = NOW + i * 10;
                db.append(vec![one("r", "a", vec![Sample::new(t, i as f64)])], t)
                    .expect("append");
                if i % 37 == 36 {
                    db.flush().expect("flush");
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, done) = (db.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                let mut rounds = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) || rounds == 0 {
                    rounds += 1;
                    let got = db
                        .select(&[Matcher::equal("__name__", "r")], i64::MIN, i64::MAX)
                        .expect("select");
                    let samples = got.first().map(|s| s.samples.clone()).unwrap_or_default();
                    // Every prefix of the appended sequence, never a gap or a repeat.
                    for (i, s) in samples.iter().enumerate() {
                        assert_eq!(*s, Sample::new(NOW + i as i64 * 10, i as f64));
                    }
                    assert!(
                        samples.len() >= seen,
                        "went back from {seen} to {}",
                        samples.len()
                    );
                    seen = samples.len();
                }
                seen
            })
        })
        .collect();
    writer.join().expect("writer");
    for r in readers {
        assert!(r.join().expect("reader") <= total as usize);
    }
    let got = db
        .select(&[Matcher::equal("__name__", "r")], i64::MIN, i64::MAX)
        .expect("select");
    assert_eq!(got[0].samples.len(), total as usize);
}

#[test]
fn idle_series_do_not_pin_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        chunk_max_duration_ms: 60_000,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts.clone()).expect("open");
    // "gone" gets two samples, then its target disappears; "live" goes on.
    db.append(
        vec![one(
            "gone",
            "a",
            vec![Sample::new(NOW, 1.0), Sample::new(NOW + 15_000, 1.0)],
        )],
        NOW,
    )
    .expect("append");
    // (oldest wal record id, record count)
    let wal_rows = |db: &Db| -> (i64, i64) {
        let conn = rusqlite::Connection::open(db.path()).expect("inspect");
        conn.query_row("SELECT min(id), count(*) FROM wal", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("count")
    };
    for i in 0..20 {
        let t = NOW + i * 15_000;
        db.append(vec![one("live", "a", vec![Sample::new(t, i as f64)])], t)
            .expect("append");
    }
    // The wal is trimmed at most once a second, on the next commit.
    std::thread::sleep(Duration::from_millis(1100));
    let t = NOW + 20 * 15_000;
    db.append(vec![one("live", "a", vec![Sample::new(t, 20.0)])], t)
        .expect("append");
    // Record 1 (the idle series' samples) is gone; what is left is what the
    // live head still needs (4 samples since its last cut) plus the newest.
    assert_eq!(wal_rows(&db), (18, 5));
    // The idle head became a stored chunk and survives a restart.
    drop(db);
    let db = Db::open(dir.path(), opts).expect("reopen");
    let got = db
        .select(&[Matcher::equal("__name__", "gone")], i64::MIN, i64::MAX)
        .expect("select");
    assert_eq!(got[0].samples.len(), 2);
    assert!(db.stats().chunk_count >= 1);
}

#[test]
fn compaction_merges_old_chunks_and_keeps_every_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        chunk_max_samples: 50,
        chunk_max_duration_ms: 100_000,
        compact_max_samples: 400,
        ..Options::default()
    };
    // 1000 samples per series a second apart: 20 chunks of 50 each.
    let value = |s: i64, i: i64| match (s + i) % 13 {
        0 => stale_nan(),
        _ if s == 0 => (i * 7) as f64 / 100.0,
        _ => ((i as f64) / 7.0).sin() * 1e6,
    };
    let t0 = NOW - 2_000_000;
    let want = |s: i64| -> Vec<(i64, u64)> {
        (0..1000)
            .map(|i| (t0 + i * 1000, value(s, i).to_bits()))
            .collect()
    };
    let got_all = |db: &Db| {
        let m = [Matcher::equal("__name__", "compacted")];
        let mut got = db.select(&m, i64::MIN, i64::MAX).expect("select");
        got.sort_by(|a, b| a.labels.cmp(&b.labels));
        got.into_iter()
            .map(|s| {
                s.samples
                    .iter()
                    .map(|x| (x.timestamp_ms, x.value.to_bits()))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    {
        let db = Db::open(dir.path(), opts.clone()).expect("open");
        for i in 0..1000 {
            let batch = (0..2)
                .map(|s| {
                    one(
                        "compacted",
                        &s.to_string(),
                        vec![Sample::new(t0 + i * 1000, value(s, i))],
                    )
                })
                .collect();
            db.append(batch, NOW).expect("append");
        }
        // Retention's pass merges chunks a chunk duration older than the
        // newest data, leaving the recent ones alone.
        let before = db.stats().chunk_count;
        db.enforce_retention(NOW).expect("retention");
        let after = db.stats().chunk_count;
        assert!(after < before, "{before} -> {after} chunks");
        assert_eq!(got_all(&db), vec![want(0), want(1)]);
        db.flush().expect("flush");
        // At a flush everything merges: 1000 samples in groups of at most 400.
        let stats = db.stats();
        assert_eq!(stats.chunk_samples, 2000);
        assert!(stats.chunk_count <= 2 * 4, "{} chunks", stats.chunk_count);
        assert_eq!(got_all(&db), vec![want(0), want(1)]);
    }
    let db = Db::open(dir.path(), opts).expect("reopen");
    assert_eq!(got_all(&db), vec![want(0), want(1)]);
    // Range reads across merged chunk boundaries return exactly the range.
    let m = [Matcher::equal("job", "1")];
    let got = db
        .select(&m, t0 + 333_000, t0 + 777_000)
        .expect("select range");
    let bits: Vec<(i64, u64)> = got[0]
        .samples
        .iter()
        .map(|x| (x.timestamp_ms, x.value.to_bits()))
        .collect();
    assert_eq!(bits, want(1)[333..=777].to_vec());
}

fn pairs<'a>(
    labels: &'a [(&'a str, &'a str)],
) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone {
    labels.iter().copied()
}

fn budget() -> vigil_tsdb::Budget {
    vigil_tsdb::Budget {
        limits: Arc::new(vigil_tsdb::SeriesLimits::default()),
        owner: None,
    }
}

/// Ingest workers find stored series by raw labels and pass hints; the
/// store must treat a hint only as a shortcut, never as the series' name.
#[test]
fn series_found_by_raw_labels_and_hints_store_where_the_labels_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    db.append(
        vec![
            one("up", "a", vec![Sample::new(NOW, 1.0)]),
            one("up", "b", vec![Sample::new(NOW, 2.0)]),
        ],
        NOW,
    )
    .expect("append");
    let a = [("__name__", "up"), ("job", "a")];
    let b = [("__name__", "up"), ("job", "b")];
    let (hint_a, labels_a) = db.find_series(|f| f.find(pairs(&a))).expect("a is stored");
    assert_eq!(labels_a, Labels::from_pairs(a));
    let (hint_b, labels_b) = db.find_series(|f| f.find(pairs(&b))).expect("b is stored");
    assert_ne!(hint_a, hint_b);
    // Only the canonical form is found: unsorted pairs, an empty value, a
    // subset or an unknown set take the owned path.
    for other in [
        &[("job", "a"), ("__name__", "up")][..],
        &[("__name__", "up"), ("job", "a"), ("zone", "")][..],
        &[("__name__", "up")][..],
        &[("__name__", "up"), ("job", "c")][..],
    ] {
        assert!(
            db.find_series(|f| f.find(pairs(other))).is_none(),
            "{other:?}"
        );
    }

    // A right hint, a hint naming another series (b's hint with a's labels),
    // and no hint: every sample lands in the series its labels name.
    let out = db
        .append_hinted(
            vec![
                SeriesSamples {
                    labels: labels_a.clone(),
                    samples: vec![Sample::new(NOW + 1, 10.0)],
                },
                SeriesSamples {
                    labels: labels_a.clone(),
                    samples: vec![Sample::new(NOW + 2, 11.0)],
                },
                one("up", "b", vec![Sample::new(NOW + 1, 20.0)]),
                one("up", "c", vec![Sample::new(NOW + 1, 30.0)]),
            ],
            vec![Some(hint_a), Some(hint_b), None],
            NOW,
            budget(),
        )
        .expect("append");
    assert_eq!(out.accepted, 4);
    assert_eq!(out.new_series, 1);
    let got = db
        .select(&[Matcher::equal("__name__", "up")], 0, NOW + 10)
        .expect("select");
    let by_job: Vec<(String, Vec<f64>)> = got
        .iter()
        .map(|s| {
            (
                s.labels.get("job").unwrap_or("").to_string(),
                s.samples.iter().map(|x| x.value).collect(),
            )
        })
        .collect();
    assert_eq!(
        by_job,
        [
            ("a".to_string(), vec![1.0, 10.0, 11.0]),
            ("b".to_string(), vec![2.0, 20.0]),
            ("c".to_string(), vec![30.0]),
        ]
    );
    drop(labels_b);
}

/// A hint whose series retention dropped after it was found must not lose
/// the samples: the writer misses the hint and creates the series anew.
#[test]
fn a_hint_to_a_series_dropped_since_still_stores_the_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        retention: Duration::from_secs(3600),
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts).expect("open");
    let old = NOW - 7_200_000;
    db.append(vec![one("gone", "a", vec![Sample::new(old, 1.0)])], old)
        .expect("append");
    db.flush().expect("flush");
    let raw = [("__name__", "gone"), ("job", "a")];
    let (hint, labels) = db.find_series(|f| f.find(pairs(&raw))).expect("stored");
    db.enforce_retention(NOW).expect("retention");
    assert!(
        db.find_series(|f| f.find(pairs(&raw))).is_none(),
        "dropped by retention"
    );
    let out = db
        .append_hinted(
            vec![SeriesSamples {
                labels,
                samples: vec![Sample::new(NOW, 5.0)],
            }],
            vec![Some(hint)],
            NOW,
            budget(),
        )
        .expect("append");
    assert_eq!((out.accepted, out.new_series), (1, 1));
    let got = db
        .select(&[Matcher::equal("__name__", "gone")], 0, NOW)
        .expect("select");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, vec![Sample::new(NOW, 5.0)]);
}
