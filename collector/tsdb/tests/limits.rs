//! Series budgets: creation of new series is refused past a budget, samples
//! of existing series always pass, counts stay exact under concurrency and
//! follow retention; and the cardinality statistics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use vigil_tsdb::{Budget, Db, Options, RejectReason, SeriesLimit, SeriesLimits, SeriesSamples};
use vigil_wire::{Labels, Matcher, Sample};

const NOW: i64 = 1_700_000_000_000;

fn series(name: &str, id: usize, samples: &[i64]) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs([("__name__", name.to_string()), ("id", id.to_string())]),
        samples: samples.iter().map(|&t| Sample::new(t, 1.0)).collect(),
    }
}

fn budget(limits: SeriesLimits, owner: Option<&str>) -> Budget {
    Budget {
        limits: Arc::new(limits),
        owner: owner.map(Arc::from),
    }
}

fn live(db: &Db, name: &str) -> usize {
    db.series(&[vec![Matcher::equal("__name__", name)]], 0, i64::MAX)
        .expect("series")
        .len()
}

#[test]
fn per_metric_budget_refuses_new_series_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let limits = SeriesLimits {
        max_per_metric: 2,
        per_metric: HashMap::from([("exempt".to_string(), 0), ("tight".to_string(), 1)]),
        ..SeriesLimits::default()
    };
    let mut batch: Vec<SeriesSamples> = (0..4).map(|i| series("a", i, &[NOW - 1, NOW])).collect();
    batch.push(series("b", 0, &[NOW]));
    batch.extend((0..3).map(|i| series("tight", i, &[NOW])));
    batch.extend((0..5).map(|i| series("exempt", i, &[NOW])));
    let out = db
        .append_with_budget(batch, NOW, budget(limits.clone(), None))
        .expect("append");
    // a: 2 of 4 series (2 samples each); b: 1; tight: 1 of 3; exempt: 5.
    assert_eq!(out.accepted, 4 + 1 + 1 + 5);
    assert_eq!(out.new_series, 2 + 1 + 1 + 5);
    let refused = SeriesLimit::PerMetric;
    assert_eq!(
        out.rejected,
        BTreeMap::from([(RejectReason::SeriesLimit(refused), 4 + 2)])
    );
    assert_eq!(
        out.series_limited,
        BTreeMap::from([
            ((refused, "a".to_string()), 2),
            ((refused, "tight".to_string()), 2)
        ])
    );
    assert_eq!(live(&db, "a"), 2);
    assert_eq!(live(&db, "tight"), 1);
    assert_eq!(live(&db, "exempt"), 5);

    // Existing series keep taking samples at the budget; new ones do not.
    let out = db
        .append_with_budget(
            vec![
                series("a", 0, &[NOW + 1]),
                series("a", 1, &[NOW + 1]),
                series("a", 9, &[NOW + 1]),
            ],
            NOW,
            budget(limits, None),
        )
        .expect("append");
    assert_eq!(out.accepted, 2);
    assert_eq!(out.new_series, 0);
    assert_eq!(out.series_limited.len(), 1);
    assert_eq!(
        db.stats()
            .rejected_total
            .get(&RejectReason::SeriesLimit(refused)),
        Some(&7)
    );
    assert_eq!(
        RejectReason::SeriesLimit(refused).to_string(),
        "series_limit_per_metric"
    );
}

#[test]
fn lowering_a_budget_never_refuses_existing_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let batch: Vec<SeriesSamples> = (0..5).map(|i| series("m", i, &[NOW - 10])).collect();
    db.append(batch, NOW).expect("append");
    let tight = SeriesLimits {
        max_per_metric: 2,
        max_total: 2,
        ..SeriesLimits::default()
    };
    let batch: Vec<SeriesSamples> = (0..6).map(|i| series("m", i, &[NOW])).collect();
    let out = db
        .append_with_budget(batch, NOW, budget(tight, Some("x")))
        .expect("append");
    assert_eq!(out.accepted, 5);
    assert_eq!(
        out.series_limited,
        BTreeMap::from([((SeriesLimit::PerMetric, "m".to_string()), 1)])
    );
}

#[test]
fn per_agent_budget_counts_created_series_and_follows_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let limits = SeriesLimits {
        max_per_owner: 3,
        ..SeriesLimits::default()
    };
    let mk = |from: usize, n: usize, t: i64| -> Vec<SeriesSamples> {
        (from..from + n).map(|i| series("m", i, &[t])).collect()
    };
    let out = db
        .append_with_budget(mk(0, 5, NOW), NOW, budget(limits.clone(), Some("x")))
        .expect("append");
    assert_eq!(out.new_series, 3);
    assert_eq!(
        out.series_limited,
        BTreeMap::from([((SeriesLimit::PerAgent, "m".to_string()), 2)])
    );
    // Another agent has its own budget; a series of x's is "existing" for y.
    let out = db
        .append_with_budget(mk(2, 4, NOW + 1), NOW, budget(limits.clone(), Some("y")))
        .expect("append");
    assert_eq!((out.accepted, out.new_series), (4, 3));
    let card = db.cardinality(10);
    assert_eq!(
        card.series_count_by_owner,
        vec![("x".to_string(), 3), ("y".to_string(), 3)]
    );
    // Retention drops every series; the agents' budgets are free again.
    db.flush().expect("flush");
    db.enforce_retention(NOW + 30 * 86_400_000)
        .expect("retention");
    assert!(db.cardinality(10).series_count_by_owner.is_empty());
    let later = NOW + 30 * 86_400_000;
    let out = db
        .append_with_budget(mk(100, 3, later), later, budget(limits, Some("x")))
        .expect("append");
    assert_eq!(out.new_series, 3);
}

#[test]
fn total_budget_is_exact_under_concurrent_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
    let limits = SeriesLimits {
        max_total: 50,
        ..SeriesLimits::default()
    };
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            let limits = limits.clone();
            std::thread::spawn(move || {
                let mut created = 0;
                for round in 0..10 {
                    let batch = (0..5)
                        .map(|i| series(&format!("w{w}"), round * 5 + i, &[NOW]))
                        .collect();
                    let out = db
                        .append_with_budget(batch, NOW, budget(limits.clone(), None))
                        .expect("append");
                    created += out.new_series;
                    if let Some(n) = out
                        .series_limited
                        .get(&(SeriesLimit::Total, format!("w{w}")))
                    {
                        assert_eq!(out.new_series + n, 5);
                    }
                }
                created
            })
        })
        .collect();
    let created: u64 = handles.into_iter().map(|h| h.join().expect("writer")).sum();
    assert_eq!(created, 50);
    assert_eq!(db.stats().series, 50);
}

#[test]
fn cardinality_statistics_match_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let mut batch: Vec<SeriesSamples> = (0..3).map(|i| series("big", i, &[NOW - 5])).collect();
    batch.push(series("small", 7, &[NOW]));
    db.append(batch, NOW).expect("append");
    let c = db.cardinality(2);
    assert_eq!(c.num_series, 4);
    // __name__=big, __name__=small, id=0, id=1, id=2, id=7
    assert_eq!(c.num_label_pairs, 6);
    assert_eq!(c.chunk_count, 4);
    assert_eq!((c.min_time, c.max_time), (NOW - 5, NOW));
    assert_eq!(
        c.series_count_by_metric_name,
        vec![("big".to_string(), 3), ("small".to_string(), 1)]
    );
    assert_eq!(
        c.label_value_count_by_label_name,
        vec![("id".to_string(), 4), ("__name__".to_string(), 2)]
    );
    // __name__: 3·len("big") + 5; id: four one-byte values.
    assert_eq!(
        c.memory_in_bytes_by_label_name,
        vec![("__name__".to_string(), 14), ("id".to_string(), 4)]
    );
    assert_eq!(
        c.series_count_by_label_value_pair,
        vec![
            ("__name__=big".to_string(), 3),
            ("__name__=small".to_string(), 1)
        ]
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let db = Db::open(empty.path(), Options::default()).expect("open");
    let c = db.cardinality(10);
    assert_eq!(
        (c.num_series, c.min_time, c.max_time),
        (0, i64::MAX, i64::MIN)
    );
}
