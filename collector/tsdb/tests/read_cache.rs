//! The decoded-chunk read cache: a store with the cache and one without,
//! fed the same writes, answer every read the same through compaction
//! (which replaces stored chunks with merged ones), retention (which
//! deletes them) and eviction; repeated reads are served from the cache.

use std::time::Duration;

use vigil_tsdb::{Db, Options, SeriesSamples};
use vigil_wire::{Labels, MatchOp, Matcher, Sample, stale_nan};

const SERIES: usize = 4;
const STEP_MS: i64 = 1_000;

fn opts(cache: usize) -> Options {
    Options {
        retention: Duration::from_secs(24 * 3600),
        // Small chunks, merged by compaction into larger ones.
        chunk_max_samples: 20,
        chunk_max_duration_ms: 60_000,
        compact_max_samples: 200,
        read_cache_bytes: cache,
        ..Options::default()
    }
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "m".to_string()),
        ("i", i.to_string()),
        (
            "job",
            if i.is_multiple_of(2) { "even" } else { "odd" }.to_string(),
        ),
    ])
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Samples `from..to` (in steps) of series `i`: jittered timestamps on odd
/// series, evenly spaced on even ones; gauges with two decimals, a stale
/// marker now and then, and a NaN with a payload.
fn samples(i: usize, from: i64, to: i64, t0: i64) -> Vec<Sample> {
    (from..to)
        .map(|k| {
            let r = xorshift((i as u64 + 1) * 7919 + k as u64);
            let jitter = if i % 2 == 1 { (r % 7) as i64 } else { 0 };
            let v = match r % 97 {
                0 => stale_nan(),
                1 => f64::from_bits(0x7ff8_0000_dead_beef),
                _ => (r % 10_000) as f64 / 100.0,
            };
            Sample::new(t0 + k * STEP_MS + jitter, v)
        })
        .collect()
}

type Answer = Vec<(Labels, Vec<(i64, u64)>)>;

fn read(db: &Db, matchers: &[Matcher], start: i64, end: i64) -> Answer {
    db.select(matchers, start, end)
        .expect("select")
        .into_iter()
        .map(|s| {
            let v = s
                .samples
                .iter()
                .map(|x| (x.timestamp_ms, x.value.to_bits()))
                .collect();
            (s.labels, v)
        })
        .collect()
}

#[test]
fn cached_reads_equal_uncached_through_compaction_retention_and_eviction() {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    // Off, default, and so small it evicts on nearly every insert.
    let dbs: Vec<Db> = [0, 64 << 20, 48 << 10]
        .iter()
        .zip(&dirs)
        .map(|(&cache, d)| Db::open(d.path(), opts(cache)).expect("open"))
        .collect();
    let t0: i64 = 1_700_000_000_000;
    let total: i64 = 3_000;
    let now = t0 + total * STEP_MS;
    let all = vec![Matcher::new("__name__", MatchOp::Equal, "m").expect("matcher")];
    let odd = vec![Matcher::new("job", MatchOp::Equal, "odd").expect("matcher")];
    let ranges = |upto: i64| {
        let end = t0 + upto * STEP_MS;
        vec![
            (t0 - 10_000, end + 10_000),
            (t0 + 123_456, t0 + 654_321),
            (end - 300_000, end),
            (t0 + 1_000_500, t0 + 1_000_500),
            (t0 + 59_000, t0 + 61_000),
        ]
    };
    let check = |dbs: &[Db], upto: i64, what: &str| {
        for (start, end) in ranges(upto) {
            for m in [&all, &odd] {
                let want = read(&dbs[0], m, start, end);
                for (k, db) in dbs.iter().enumerate().skip(1) {
                    // Twice: the second read comes from the cache.
                    for pass in 0..2 {
                        assert_eq!(
                            read(db, m, start, end),
                            want,
                            "{what}: store {k}, pass {pass}, range {start}..={end}"
                        );
                    }
                }
            }
        }
    };

    // Written in batches, as remote_write would, with compaction between.
    let mut written = 0;
    while written < total {
        let next = (written + 250).min(total);
        for db in &dbs {
            let batch = (0..SERIES)
                .map(|i| SeriesSamples {
                    labels: labels(i),
                    samples: samples(i, written, next, t0),
                })
                .collect();
            db.append(batch, now).expect("append");
        }
        written = next;
        if written % 1000 == 0 {
            for db in &dbs {
                db.enforce_retention(now).expect("compaction");
            }
            check(&dbs, written, "after compaction");
        }
    }
    check(&dbs, total, "all written");
    let before = dbs[1].stats().read_cache;
    assert!(before.misses > 0 && before.entries > 0, "{before:?}");
    check(&dbs, total, "read again");
    let after = dbs[1].stats().read_cache;
    assert!(after.hits > before.hits, "{before:?} then {after:?}");
    assert_eq!(after.misses, before.misses, "nothing new to decode");
    let tiny = dbs[2].stats().read_cache;
    assert!(
        tiny.evictions > 0 && tiny.bytes <= tiny.max_bytes,
        "{tiny:?}"
    );
    assert_eq!(dbs[0].stats().read_cache.entries, 0);

    // A flush merges every stored chunk: the cached ones are no longer
    // asked for, the merged ones are decoded once.
    for db in &dbs {
        db.flush().expect("flush");
    }
    check(&dbs, total, "after flush");
    // Retention deletes the oldest chunks: nothing cached brings them back.
    for db in &dbs {
        db.enforce_retention(now + 24 * 3600 * 1000 - 2_000 * STEP_MS)
            .expect("retention");
    }
    check(&dbs, total, "after retention");
    let left: usize = read(&dbs[1], &all, i64::MIN, i64::MAX)
        .iter()
        .map(|(_, s)| s.len())
        .sum();
    assert!(left > 0 && left < SERIES * total as usize, "{left}");
}

/// The newest stored chunk of a series stays in memory (served without a
/// decode from disk) only while the series is being read; a series nobody
/// reads holds only its head, so a large ingest costs one chunk per series.
/// The first read of such a series brings its newest chunk back.
#[test]
fn newest_stored_chunk_stays_in_memory_only_for_series_that_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(
        dir.path(),
        Options {
            compact_max_samples: 20,
            ..opts(64 << 20)
        },
    )
    .expect("open");
    let t0 = 1_700_000_000_000;
    let one = |i: usize| {
        vec![
            Matcher::equal("i", i.to_string()),
            Matcher::equal("__name__", "m"),
        ]
    };
    // Three chunks of 20 samples each for series 0 (read after every
    // append, as a rule would) and series 1 (never read while written).
    for step in 0..61i64 {
        let t = t0 + step * STEP_MS;
        let batch = (0..2)
            .map(|i| SeriesSamples {
                labels: labels(i),
                samples: vec![Sample::new(t, step as f64)],
            })
            .collect();
        db.append(batch, t).expect("append");
        db.select(&one(0), t0, t).expect("read series 0");
    }
    // The second chunk (samples 20..40) is the newest stored one of both.
    let (from, to) = (t0 + 20 * STEP_MS, t0 + 39 * STEP_MS);
    let before = db.stats().read_cache.misses;
    let got = db.select(&one(0), from, to).expect("select");
    assert_eq!(got[0].samples.len(), 20);
    assert_eq!(
        db.stats().read_cache.misses,
        before,
        "series 0's newest stored chunk is in memory"
    );
    let got = db.select(&one(1), from, to).expect("select");
    assert_eq!(
        got[0].samples.len(),
        20,
        "series 1 reads it from disk, every sample there"
    );
    assert!(
        db.stats().read_cache.misses > before,
        "series 1's chunk was decoded from disk"
    );
    // Once read, series 1 keeps that chunk in memory too: reading it again
    // touches neither the disk nor the decoded-chunk cache.
    let seen = db.stats().read_cache;
    let again = db.select(&one(1), from, to).expect("select");
    assert_eq!(again, got);
    let now = db.stats().read_cache;
    assert_eq!(
        (now.hits, now.misses),
        (seen.hits, seen.misses),
        "served from memory"
    );
}
