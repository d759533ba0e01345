//! Crash safety: a child process (this test binary re-run in "writer" mode)
//! appends batches from two threads and prints each acknowledged batch; the
//! parent kills it with SIGKILL at varied points, reopens the store and
//! checks that every acknowledged sample is there, bit for bit, and that
//! every shared timestamp column is referenced exactly as often as it says.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vigil_tsdb::{Db, Options, SeriesSamples};
use vigil_wire::{Labels, MatchOp, Matcher, Sample, stale_nan};

const ENV_DIR: &str = "VIGIL_TSDB_CRASH_DIR";
const THREADS: u64 = 2;
const SERIES_PER_THREAD: u64 = 40;
const BASE_T: i64 = 1_700_000_000_000;

fn opts() -> Options {
    Options {
        // Small chunks: chunks are cut and stored (and the wal trimmed)
        // while the child runs, so crashes land in every phase.
        chunk_max_samples: 7,
        ..Options::default()
    }
}

fn labels(thread: u64, series: u64) -> Labels {
    Labels::from_pairs([
        ("__name__", "crash_test".to_string()),
        ("thread", thread.to_string()),
        ("series", series.to_string()),
    ])
}

fn value(thread: u64, batch: u64, series: u64) -> f64 {
    if (batch + series).is_multiple_of(11) {
        stale_nan()
    } else {
        (thread * 1_000_000 + batch * 100 + series) as f64 / 8.0
    }
}

/// Scrape-like timestamps, a few milliseconds of jitter, the same for
/// every series: the flushes' compaction stores them in shared timestamp
/// columns, so kills land in those transactions too.
fn ts(batch: u64) -> i64 {
    BASE_T + batch as i64 * 1_000 + (batch as i64 * 7919) % 11
}

/// Child mode: append until killed, acknowledging each batch on stdout.
fn writer(dir: &Path) {
    let db = match Db::open(dir, opts()) {
        Ok(db) => Arc::new(db),
        Err(e) => panic!("child could not open the store: {e}"),
    };
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let db = db.clone();
            std::thread::spawn(move || {
                for batch in 0..20_000u64 {
                    let payload = (0..SERIES_PER_THREAD)
                        .map(|s| SeriesSamples {
                            labels: labels(thread, s),
                            samples: vec![Sample::new(ts(batch), value(thread, batch, s))],
                        })
                        .collect();
                    match db.append(payload, ts(batch)) {
                        Ok(out) if out.accepted == SERIES_PER_THREAD => {}
                        other => panic!("append failed: {other:?}"),
                    }
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {thread} {batch}");
                    let _ = out.flush();
                    if thread == 0
                        && batch % 30 == 29
                        && let Err(e) = db.flush()
                    {
                        panic!("flush failed: {e}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

#[test]
fn acknowledged_samples_survive_sigkill() {
    if let Ok(dir) = std::env::var(ENV_DIR) {
        writer(Path::new(&dir));
        return;
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // (acks to wait for, extra delay before the kill), plus a random extra
    // delay per run so the kill lands at different points of a commit; the
    // seed is printed in every failure message.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let crash_points = [
        (1, 0),
        (5, 300),
        (17, 0),
        (40, 1_500),
        (90, 50),
        (160, 0),
        (310, 700),
        (600, 0),
    ];
    for (i, &(acks, delay_us)) in crash_points.iter().enumerate() {
        let delay_us = delay_us + u64::from(seed.wrapping_mul(i as u32 + 1) % 700);
        let i = format!("{i} (seed {seed}, delay {delay_us} µs)");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(&exe)
            .args([
                "acknowledged_samples_survive_sigkill",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut acked: BTreeMap<u64, u64> = BTreeMap::new(); // thread -> batches acked
        let mut seen = 0;
        while seen < acks {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some((t, b)) = parse_ack(&line) {
                acked.insert(t, b + 1);
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(delay_us));
        child.kill().expect("SIGKILL the child");
        // Acks already written before the kill count too.
        for line in lines.map_while(Result::ok) {
            if let Some((t, b)) = parse_ack(&line) {
                acked.insert(t, b + 1);
            }
        }
        let _ = child.wait();
        assert!(
            seen >= acks,
            "crash point {i}: child stopped after {seen} acks"
        );

        let db = Db::open(dir.path(), opts()).expect("reopen after SIGKILL");
        let all = [Matcher::new("__name__", MatchOp::Equal, "crash_test").expect("matcher")];
        let got = db.select(&all, i64::MIN, i64::MAX).expect("select");
        let by_labels: BTreeMap<Labels, Vec<Sample>> =
            got.into_iter().map(|s| (s.labels, s.samples)).collect();
        for (&thread, &batches) in &acked {
            for s in 0..SERIES_PER_THREAD {
                let samples = by_labels
                    .get(&labels(thread, s))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                assert!(
                    samples.len() as u64 >= batches,
                    "crash point {i}: series {thread}/{s} has {} samples, {batches} acknowledged",
                    samples.len()
                );
                for (b, smp) in samples.iter().enumerate().take(batches as usize) {
                    let want = Sample::new(ts(b as u64), value(thread, b as u64, s));
                    assert!(smp.bit_eq(&want), "crash point {i}: {smp:?} != {want:?}");
                }
            }
        }
        let conn = rusqlite::Connection::open(dir.path().join(vigil_tsdb::DB_FILE))
            .expect("open the file");
        let bad: i64 = conn
            .query_row(
                "SELECT count(*) FROM timestamps t \
                 WHERE refs != (SELECT count(*) FROM chunks c WHERE c.ts = t.id)",
                [],
                |r| r.get(0),
            )
            .expect("count columns");
        assert_eq!(bad, 0, "crash point {i}: column references disagree");
        drop(conn);
        // The recovered store keeps working: the next batch appends cleanly.
        let next = acked.get(&0).copied().unwrap_or(0) + 5;
        let out = db
            .append(
                vec![SeriesSamples {
                    labels: labels(0, 0),
                    samples: vec![Sample::new(ts(next), 1.0)],
                }],
                ts(next),
            )
            .expect("append after recovery");
        assert_eq!(out.accepted, 1);
    }
}

fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
