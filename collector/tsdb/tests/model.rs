//! Model-based test: random operation sequences (appends with out-of-order
//! and duplicate samples, selects, label queries, restarts, flushes and
//! retention) are applied both to the store and to a plain `BTreeMap`
//! model; every answer must agree.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use vigil_tsdb::{AppendOutcome, Db, Options, RejectReason, SeriesSamples};
use vigil_wire::{Labels, MatchOp, Matcher, Sample, matches_all, stale_nan};

const RETENTION_MS: i64 = 300;
const MAX_FUTURE_MS: i64 = 50;

/// The read cache's bounds tried: off, tiny (evicting all the time) and
/// the default.
const CACHE_BYTES: [usize; 3] = [0, 4096, 64 << 20];

fn opts(cache: usize) -> Options {
    Options {
        read_cache_bytes: CACHE_BYTES[cache],
        retention: Duration::from_millis(RETENTION_MS as u64),
        max_future_ms: MAX_FUTURE_MS,
        // Tiny chunks so sequences cross chunk boundaries often.
        chunk_max_samples: 3,
        chunk_max_duration_ms: 100,
        ..Options::default()
    }
}

fn series_labels() -> Vec<Labels> {
    vec![
        Labels::from_pairs([("__name__", "up"), ("job", "a")]),
        Labels::from_pairs([("__name__", "up"), ("job", "b"), ("instance", "x")]),
        Labels::from_pairs([("__name__", "cpu"), ("job", "a"), ("mode", "idle")]),
        Labels::from_pairs([("__name__", "cpu"), ("job", "a"), ("mode", "user")]),
        Labels::from_pairs([("__name__", "mem"), ("instance", "x")]),
    ]
}

fn matcher_sets() -> Vec<Vec<Matcher>> {
    let m = |n: &str, op, v: &str| Matcher::new(n, op, v).expect("valid test matcher");
    vec![
        vec![m("__name__", MatchOp::Equal, "up")],
        vec![m("job", MatchOp::Equal, "a")],
        vec![
            m("__name__", MatchOp::RegexMatch, "cpu|up"),
            m("instance", MatchOp::Equal, ""),
        ],
        vec![
            m("job", MatchOp::NotEqual, "a"),
            m("__name__", MatchOp::RegexMatch, ".+"),
        ],
        vec![m("mode", MatchOp::RegexMatch, "id.*")],
        vec![
            m("__name__", MatchOp::RegexNoMatch, "mem"),
            m("job", MatchOp::RegexMatch, "a|b"),
        ],
    ]
}

/// Every kind of value the sealed encoding tells apart: decimals of
/// several scales (a counter that resets to 0), integers past 2^53,
/// full-precision floats, and the raw exceptions (NaN payloads, the stale
/// marker, -0.0, infinities, subnormals).
fn values() -> Vec<u64> {
    let mut v: Vec<u64> = [
        0.0,
        1.0,
        -0.0,
        f64::NAN,
        stale_nan(),
        f64::INFINITY,
        2.5,
        123.45,
        0.001,
        9_007_199_254_740_993.0,
        std::f64::consts::PI,
        f64::MIN_POSITIVE / 3.0,
    ]
    .iter()
    .map(|v| v.to_bits())
    .collect();
    v.push(0x7ff8_0000_dead_beef);
    v
}

#[derive(Debug, Clone)]
enum Op {
    /// `(series, offset step from now - 350ms, value index)` and how far `now` advances first.
    Append {
        items: Vec<(usize, i64, usize)>,
        advance: i64,
    },
    Select {
        set: usize,
        start: i64,
        len: i64,
    },
    Series {
        sets: Vec<usize>,
        start: i64,
        len: i64,
    },
    LabelNames {
        sets: Vec<usize>,
        start: i64,
        len: i64,
    },
    LabelValues {
        name: usize,
        sets: Vec<usize>,
        start: i64,
        len: i64,
    },
    /// One scrape of every series at the same timestamp (as a target's
    /// series share theirs), `(offset step, jitter ms, value index per series)`:
    /// compaction shares such timestamps in one column.
    Scrape {
        offset: i64,
        jitter: i64,
        values: Vec<usize>,
        advance: i64,
    },
    Restart,
    Flush,
    Retention,
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0i64..60, 0i64..60);
    prop_oneof![
        6 => (prop::collection::vec((0usize..5, 0i64..46, 0usize..13), 1..12), 0i64..4)
            .prop_map(|(items, advance)| Op::Append { items, advance }),
        2 => (0usize..6, range.clone()).prop_map(|(set, (start, len))| Op::Select { set, start, len }),
        1 => (prop::collection::vec(0usize..6, 0..3), range.clone())
            .prop_map(|(sets, (start, len))| Op::Series { sets, start, len }),
        1 => (prop::collection::vec(0usize..6, 0..3), range.clone())
            .prop_map(|(sets, (start, len))| Op::LabelNames { sets, start, len }),
        1 => (0usize..4, prop::collection::vec(0usize..6, 0..3), range)
            .prop_map(|(name, sets, (start, len))| Op::LabelValues { name, sets, start, len }),
        3 => (0i64..46, 0i64..7, prop::collection::vec(0usize..13, 5), 0i64..4)
            .prop_map(|(offset, jitter, values, advance)| Op::Scrape { offset, jitter, values, advance }),
        1 => Just(Op::Restart),
        1 => Just(Op::Flush),
        1 => Just(Op::Retention),
    ]
}

fn scrape_heavy_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0i64..46, 0i64..7, prop::collection::vec(0usize..13, 5), 1i64..3)
            .prop_map(|(offset, jitter, values, advance)| Op::Scrape { offset: 30 + offset % 5, jitter, values, advance }),
        1 => op(),
        1 => Just(Op::Flush),
        1 => Just(Op::Retention),
    ]
}

#[derive(Default)]
struct ModelSeries {
    samples: BTreeMap<i64, u64>,
    last: Option<(i64, u64)>,
}

#[derive(Default)]
struct Model {
    series: BTreeMap<Labels, ModelSeries>,
    /// Queries start at or after the newest retention cutoff: the store
    /// deletes by whole chunks, so older data may or may not remain.
    cutoff: i64,
    retention_ran: bool,
}

impl Model {
    fn append(&mut self, batch: &[SeriesSamples], now: i64) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        for ss in batch {
            let existed = self.series.contains_key(&ss.labels);
            let entry = self.series.entry(ss.labels.clone()).or_default();
            let mut stored_any = false;
            for s in &ss.samples {
                let (t, v) = (s.timestamp_ms, s.value.to_bits());
                let reason = if t > now + MAX_FUTURE_MS {
                    Some(RejectReason::TooFarInFuture)
                } else if t < now - RETENTION_MS {
                    Some(RejectReason::TooOld)
                } else {
                    match entry.last {
                        Some((lt, _)) if t < lt => Some(RejectReason::OutOfOrder),
                        Some((lt, lv)) if t == lt && lv == v => {
                            out.accepted += 1;
                            continue;
                        }
                        Some((lt, _)) if t == lt => Some(RejectReason::DuplicateTimestamp),
                        _ => None,
                    }
                };
                match reason {
                    Some(r) => *out.rejected.entry(r).or_default() += 1,
                    None => {
                        entry.samples.insert(t, v);
                        entry.last = Some((t, v));
                        out.accepted += 1;
                        stored_any = true;
                    }
                }
            }
            if !existed {
                if stored_any {
                    out.new_series += 1;
                } else {
                    self.series.remove(&ss.labels);
                }
            }
        }
        out
    }

    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<(Labels, Vec<(i64, u64)>)> {
        self.series
            .iter()
            .filter(|(l, _)| matches_all(matchers, l))
            .filter_map(|(l, s)| {
                let v: Vec<(i64, u64)> = s
                    .samples
                    .range(start..=end)
                    .map(|(t, v)| (*t, *v))
                    .collect();
                (!v.is_empty()).then(|| (l.clone(), v))
            })
            .collect()
    }

    fn series(&self, sets: &[Vec<Matcher>], start: i64, end: i64) -> Vec<Labels> {
        self.series
            .iter()
            .filter(|(l, _)| sets.is_empty() || sets.iter().any(|m| matches_all(m, l)))
            .filter(|(_, s)| s.samples.range(start..=end).next().is_some())
            .map(|(l, _)| l.clone())
            .collect()
    }
}

fn run(ops: Vec<Op>, cache: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let open = || Db::open(dir.path(), opts(cache)).map_err(|e| TestCaseError::fail(e.to_string()));
    let mut db = open()?;
    let mut model = Model::default();
    let labels = series_labels();
    let sets = matcher_sets();
    let vals = values();
    // Realistic epoch milliseconds: timestamp columns then cost what real
    // ones do, so compaction shares them (see Op::Scrape).
    let mut now: i64 = 1_700_000_000_000;
    // Query windows are relative to `now` and clamped to the retention cutoff.
    let window = |now: i64, cutoff: i64, start: i64, len: i64| {
        let start = (now - 400 + start * 10).max(cutoff);
        (start, start + len * 10)
    };
    for op in ops {
        match op {
            Op::Append { items, advance } => {
                now += advance * 10;
                let batch: Vec<SeriesSamples> = items
                    .iter()
                    .map(|&(s, k, v)| SeriesSamples {
                        labels: labels[s].clone(),
                        samples: vec![Sample::new(now - 350 + k * 10, f64::from_bits(vals[v]))],
                    })
                    .collect();
                let want = model.append(&batch, now);
                let got = db
                    .append(batch, now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got.accepted, want.accepted);
                prop_assert_eq!(&got.rejected, &want.rejected);
                if !model.retention_ran {
                    prop_assert_eq!(got.new_series, want.new_series);
                }
            }
            Op::Scrape {
                offset,
                jitter,
                values,
                advance,
            } => {
                now += advance * 10;
                let t = now - 350 + offset * 10 + jitter;
                let batch: Vec<SeriesSamples> = labels
                    .iter()
                    .zip(&values)
                    .map(|(l, &v)| SeriesSamples {
                        labels: l.clone(),
                        samples: vec![Sample::new(t, f64::from_bits(vals[v]))],
                    })
                    .collect();
                let want = model.append(&batch, now);
                let got = db
                    .append(batch, now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got.accepted, want.accepted);
                prop_assert_eq!(&got.rejected, &want.rejected);
            }
            Op::Select { set, start, len } => {
                let (start, end) = window(now, model.cutoff, start, len);
                let got: Vec<(Labels, Vec<(i64, u64)>)> = db
                    .select(&sets[set], start, end)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .into_iter()
                    .map(|s| {
                        (
                            s.labels,
                            s.samples
                                .iter()
                                .map(|x| (x.timestamp_ms, x.value.to_bits()))
                                .collect(),
                        )
                    })
                    .collect();
                prop_assert_eq!(got, model.select(&sets[set], start, end));
            }
            Op::Series {
                sets: idx,
                start,
                len,
            } => {
                let (start, end) = window(now, model.cutoff, start, len);
                let ms: Vec<Vec<Matcher>> = idx.iter().map(|&i| sets[i].clone()).collect();
                let got = db
                    .series(&ms, start, end)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, model.series(&ms, start, end));
            }
            Op::LabelNames {
                sets: idx,
                start,
                len,
            } => {
                let (start, end) = window(now, model.cutoff, start, len);
                let ms: Vec<Vec<Matcher>> = idx.iter().map(|&i| sets[i].clone()).collect();
                let got = db
                    .label_names(&ms, start, end)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let mut want: Vec<String> = model
                    .series(&ms, start, end)
                    .iter()
                    .flat_map(|l| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
                    .collect();
                want.sort();
                want.dedup();
                prop_assert_eq!(got, want);
            }
            Op::LabelValues {
                name,
                sets: idx,
                start,
                len,
            } => {
                let name = ["__name__", "job", "instance", "mode"][name];
                let (start, end) = window(now, model.cutoff, start, len);
                let ms: Vec<Vec<Matcher>> = idx.iter().map(|&i| sets[i].clone()).collect();
                let got = db
                    .label_values(name, &ms, start, end)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let mut want: Vec<String> = model
                    .series(&ms, start, end)
                    .iter()
                    .filter_map(|l| l.get(name).map(str::to_string))
                    .collect();
                want.sort();
                want.dedup();
                prop_assert_eq!(got, want);
            }
            Op::Restart => {
                drop(db);
                db = open()?;
            }
            Op::Flush => db.flush().map_err(|e| TestCaseError::fail(e.to_string()))?,
            Op::Retention => {
                db.enforce_retention(now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.cutoff = now - RETENTION_MS;
                model.retention_ran = true;
            }
        }
    }
    // Whatever happened, a final restart must show the same data.
    drop(db);
    let db = open()?;
    let all = vec![
        Matcher::new("__name__", MatchOp::RegexMatch, ".+")
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
    ];
    let start = model.cutoff;
    let got: Vec<(Labels, Vec<(i64, u64)>)> = db
        .select(&all, start, i64::MAX)
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .into_iter()
        .map(|s| {
            (
                s.labels,
                s.samples
                    .iter()
                    .map(|x| (x.timestamp_ms, x.value.to_bits()))
                    .collect(),
            )
        })
        .collect();
    prop_assert_eq!(got, model.select(&all, start, i64::MAX));
    // The persisted counters agree with what is actually stored.
    let stored: usize = db
        .select(&all, i64::MIN, i64::MAX)
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .iter()
        .map(|s| s.samples.len())
        .sum();
    let stats = db.stats();
    prop_assert_eq!(stats.chunk_samples + stats.head_samples, stored as u64);
    drop(db);
    check_columns(dir.path())
}

/// Every shared timestamp column is referenced by exactly `refs` chunks,
/// and every reference names a stored column: compaction, retention and
/// crashes between them neither leak columns nor drop used ones.
fn check_columns(dir: &std::path::Path) -> Result<(), TestCaseError> {
    let fail = |e: rusqlite::Error| TestCaseError::fail(e.to_string());
    let conn = rusqlite::Connection::open(dir.join(vigil_tsdb::DB_FILE)).map_err(fail)?;
    let bad: i64 = conn
        .query_row(
            "SELECT count(*) FROM timestamps t \
             WHERE refs != (SELECT count(*) FROM chunks c WHERE c.ts = t.id)",
            [],
            |r| r.get(0),
        )
        .map_err(fail)?;
    prop_assert_eq!(bad, 0, "columns whose refs disagree with their chunks");
    let dangling: i64 = conn
        .query_row(
            "SELECT count(*) FROM chunks c WHERE c.ts IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM timestamps t WHERE t.id = c.ts)",
            [],
            |r| r.get(0),
        )
        .map_err(fail)?;
    prop_assert_eq!(dangling, 0, "chunks naming a missing column");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..40), cache in 0usize..3) {
        run(ops, cache)?;
    }

    /// Mostly whole-target scrapes, so series' chunks line up and share
    /// timestamp columns through compaction, retention and restarts.
    #[test]
    fn scrapes_match_model(ops in prop::collection::vec(scrape_heavy_op(), 1..60), cache in 0usize..3) {
        run(ops, cache)?;
    }
}
