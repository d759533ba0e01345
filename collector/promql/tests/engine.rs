//! Engine behaviour beyond single answers: limits, timeouts, cancellation,
//! result shapes and JSON, and a property test that arbitrary queries built
//! from the supported pieces never panic.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use vigil_promql::{Engine, EngineOptions, ErrorKind, MemStorage, QueryContext, Value};
use vigil_wire::{Labels, Sample, stale_nan};

fn storage() -> MemStorage {
    let mut s = MemStorage::new();
    for (i, job) in ["a", "b", "c"].iter().enumerate() {
        let samples = (0..200)
            .map(|k| Sample::new(k * 15_000, (k as f64) * (i as f64 + 1.0)))
            .collect();
        s.add(
            Labels::from_pairs([("__name__", "m"), ("job", job)]),
            samples,
        );
        let hist = ["0.5", "1", "+Inf"];
        for (b, le) in hist.iter().enumerate() {
            let samples = (0..200)
                .map(|k| Sample::new(k * 15_000, (k * (b as i64 + 1)) as f64))
                .collect();
            s.add(
                Labels::from_pairs([("__name__", "h_bucket"), ("job", job), ("le", le)]),
                samples,
            );
        }
    }
    s.add(
        Labels::from_pairs([("__name__", "g")]),
        vec![
            Sample::new(0, 1.0),
            Sample::new(15_000, f64::NAN),
            Sample::new(30_000, stale_nan()),
            Sample::new(45_000, f64::INFINITY),
        ],
    );
    s
}

fn ctx() -> QueryContext {
    QueryContext::default()
}

#[test]
fn too_many_samples_is_an_execution_error() {
    let opts = EngineOptions {
        max_samples: 100,
        ..EngineOptions::default()
    };
    let e = Engine::new(opts)
        .range(&storage(), "sum(m)", 0, 3_000_000, 15_000, &ctx())
        .expect_err("over the sample limit");
    assert_eq!(e.kind, ErrorKind::Execution);
    assert_eq!(e.error_type(), "execution");
    assert_eq!(
        e.message,
        "query processing would load too many samples into memory in query execution"
    );
}

#[test]
fn too_many_points_is_bad_data() {
    let e = Engine::new(EngineOptions::default())
        .range(&storage(), "m", 0, 11_001_000, 1_000, &ctx())
        .expect_err("over the resolution limit");
    assert_eq!(e.kind, ErrorKind::BadData);
    assert_eq!(
        e.message,
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
    );
    // Exactly 11,000 intervals is still allowed.
    assert!(
        Engine::new(EngineOptions::default())
            .range(&storage(), "vector(1)", 0, 11_000_000, 1_000, &ctx())
            .is_ok()
    );
}

#[test]
fn cancellation_and_timeout() {
    let engine = Engine::new(EngineOptions::default());
    let cancel = Arc::new(AtomicBool::new(true));
    let c = QueryContext {
        cancel: Some(cancel),
        timeout: None,
    };
    let e = engine
        .instant(&storage(), "sum(m)", 60_000, &c)
        .expect_err("canceled");
    assert_eq!(e.kind, ErrorKind::Canceled);
    assert_eq!(e.error_type(), "canceled");
    let c = QueryContext {
        cancel: None,
        timeout: Some(Duration::ZERO),
    };
    let e = engine
        .range(&storage(), "rate(m[1m]) * 2", 0, 3_000_000, 1_000, &c)
        .expect_err("timed out");
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(e.error_type(), "timeout");
}

#[test]
fn parse_errors_are_bad_data() {
    let e = Engine::new(EngineOptions::default())
        .instant(&storage(), "sum(", 0, &ctx())
        .expect_err("invalid query");
    assert_eq!(e.kind, ErrorKind::BadData);
    assert_eq!(e.message, "1:5: parse error: unclosed left parenthesis");
    let e = Engine::new(EngineOptions::default())
        .range(&storage(), "m[5m]", 0, 60_000, 15_000, &ctx())
        .expect_err("range vector in a range query");
    assert_eq!(e.kind, ErrorKind::BadData);
}

#[test]
fn result_shapes_and_json() {
    let engine = Engine::new(EngineOptions::default());
    let s = storage();
    let v = engine.instant(&s, "1 + 1", 90_500, &ctx()).expect("scalar");
    assert_eq!(
        v.to_api_json(),
        json!({"resultType": "scalar", "result": [90.5, "2"]})
    );
    let v = engine.instant(&s, "\"hi\"", 1_000, &ctx()).expect("string");
    assert_eq!(
        v.to_api_json(),
        json!({"resultType": "string", "result": [1, "hi"]})
    );
    let v = engine.instant(&s, "g", 15_000, &ctx()).expect("vector");
    assert_eq!(
        v.to_api_json(),
        json!({"resultType": "vector", "result": [{"metric": {"__name__": "g"}, "value": [15, "NaN"]}]})
    );
    // The stale marker at 30s hides the series until the next sample.
    let v = engine.instant(&s, "g", 40_000, &ctx()).expect("vector");
    assert_eq!(v, Value::Vector(vec![]));
    let v = engine.instant(&s, "g[1m]", 45_000, &ctx()).expect("matrix");
    assert_eq!(
        v.to_api_json(),
        json!({"resultType": "matrix", "result": [{"metric": {"__name__": "g"},
            "values": [[0, "1"], [15, "NaN"], [45, "+Inf"]]}]})
    );
    let v = engine
        .range(&s, "time()", 0, 30_000, 15_000, &ctx())
        .expect("range of a scalar");
    assert_eq!(
        v.to_api_json(),
        json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[0, "0"], [15, "15"], [30, "30"]]}]})
    );
    match engine
        .range(&s, "m", 0, 30_000, 15_000, &ctx())
        .expect("range")
    {
        Value::Matrix(m) => {
            let jobs: Vec<_> = m
                .iter()
                .map(|s| s.labels.get("job").unwrap_or(""))
                .collect();
            assert_eq!(jobs, ["a", "b", "c"], "range results are sorted by labels");
            assert_eq!(
                m[1].samples,
                vec![
                    Sample::new(0, 0.0),
                    Sample::new(15_000, 2.0),
                    Sample::new(30_000, 4.0)
                ]
            );
        }
        other => panic!("expected a matrix, got {other:?}"),
    }
}

/// Instant-vector expressions built from the supported pieces.
fn vector_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("m".to_string()),
        Just("m{job=~\"a|b\"}".to_string()),
        Just("g".to_string()),
        Just("h_bucket".to_string()),
        Just("nothing".to_string()),
        Just("m offset 1m".to_string()),
        Just("m @ 600".to_string()),
        Just("vector(time())".to_string()),
    ];
    leaf.prop_recursive(3, 24, 3, |inner| {
        let range_fn = prop_oneof![
            Just("rate"),
            Just("irate"),
            Just("increase"),
            Just("delta"),
            Just("idelta"),
            Just("deriv"),
            Just("changes"),
            Just("resets"),
            Just("avg_over_time"),
            Just("min_over_time"),
            Just("max_over_time"),
            Just("sum_over_time"),
            Just("count_over_time"),
            Just("stddev_over_time"),
            Just("stdvar_over_time"),
            Just("last_over_time"),
            Just("present_over_time"),
            Just("absent_over_time"),
        ];
        let inst_fn = prop_oneof![
            Just("abs"),
            Just("ceil"),
            Just("floor"),
            Just("round"),
            Just("sqrt"),
            Just("exp"),
            Just("ln"),
            Just("log2"),
            Just("sgn"),
            Just("timestamp"),
            Just("sort"),
            Just("sort_desc"),
            Just("absent"),
            Just("hour"),
            Just("days_in_month"),
            Just("cosh"),
            Just("deg"),
        ];
        let agg = prop_oneof![
            Just("sum"),
            Just("avg"),
            Just("min"),
            Just("max"),
            Just("count"),
            Just("group"),
            Just("stddev"),
            Just("stdvar"),
        ];
        let op = prop_oneof![
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("^"),
            Just("=="),
            Just("!="),
            Just(">"),
            Just("<"),
            Just(">= bool"),
            Just("and"),
            Just("or"),
            Just("unless"),
            Just("atan2"),
        ];
        let matching = prop_oneof![
            Just(""),
            Just(" on(job)"),
            Just(" ignoring(le)"),
            Just(" on(job) group_left"),
            Just(" ignoring(job) group_right"),
        ];
        let range = prop_oneof![Just("1m"), Just("5m"), Just("30s")];
        let sub = prop_oneof![Just("[5m:1m]"), Just("[2m:]"), Just("[10m:45s] offset 1m")];
        prop_oneof![
            (range_fn.clone(), range).prop_map(|(f, r)| format!("{f}(m[{r}])")),
            (range_fn, inner.clone(), sub).prop_map(|(f, e, s)| format!("{f}(({e}){s})")),
            (inst_fn, inner.clone()).prop_map(|(f, e)| format!("{f}({e})")),
            (agg.clone(), inner.clone()).prop_map(|(a, e)| format!("{a} by (job) ({e})")),
            (agg, inner.clone()).prop_map(|(a, e)| format!("{a} without (le) ({e})")),
            (inner.clone(), op.clone(), matching, inner.clone())
                .prop_map(|(a, o, m, b)| format!("({a}) {o}{m} ({b})")),
            (inner.clone(), op, -3.0f64..3.0).prop_map(|(a, o, x)| format!("({a}) {o} {x}")),
            inner.clone().prop_map(|e| format!("topk(2, {e})")),
            inner.clone().prop_map(|e| format!("quantile(0.3, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("count_values(\"v\", {e})")),
            inner
                .clone()
                .prop_map(|e| format!("histogram_quantile(0.9, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("label_replace({e}, \"x\", \"$1\", \"job\", \"(.)\")")),
            inner
                .clone()
                .prop_map(|e| format!("label_join({e}, \"x\", \"-\", \"job\", \"le\")")),
            inner.clone().prop_map(|e| format!("clamp({e}, -1, 5)")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.prop_map(|e| format!("scalar({e}) * m")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_queries_never_panic(q in vector_expr(), t in 0i64..3_000_000, step in 1i64..120) {
        let s = storage();
        let engine = Engine::new(EngineOptions::default());
        // Errors are fine (many generated queries are invalid); panics are not.
        let _ = engine.instant(&s, &q, t, &QueryContext::default());
        let _ = engine.range(&s, &q, t, t + 600_000, step * 1000, &QueryContext::default());
    }
}

#[test]
fn huge_subqueries_hit_the_sample_limit() {
    let opts = EngineOptions {
        max_samples: 10_000,
        ..EngineOptions::default()
    };
    let e = Engine::new(opts)
        .instant(&storage(), "max_over_time(m[1y:1s])", 3_000_000, &ctx())
        .expect_err("too many subquery steps");
    assert_eq!(e.kind, ErrorKind::Execution);
}

#[test]
fn points_held_count_against_the_sample_limit() {
    // 3 series over 300 steps: 900 points from only ~600 loaded samples.
    let opts = EngineOptions {
        max_samples: 1_000,
        ..EngineOptions::default()
    };
    let engine = Engine::new(opts);
    let e = engine
        .range(&storage(), "m", 0, 2_990_000, 10_000, &ctx())
        .expect_err("too many points held");
    assert_eq!(e.kind, ErrorKind::Execution);
    assert!(
        engine
            .range(&storage(), "m", 0, 290_000, 10_000, &ctx())
            .is_ok()
    );
}

/// Storage that streams series and counts how often the engine asked for
/// every series at once instead.
struct StreamingOnly {
    inner: MemStorage,
    loaded_selects: std::sync::atomic::AtomicUsize,
}

impl vigil_promql::Queryable for StreamingOnly {
    fn select(
        &self,
        matchers: &[vigil_wire::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<vigil_promql::SeriesData>, vigil_promql::StorageError> {
        self.loaded_selects
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.select(matchers, start_ms, end_ms)
    }

    fn select_each(
        &self,
        matchers: &[vigil_wire::Matcher],
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(vigil_promql::SeriesData) -> bool,
    ) -> Result<(), vigil_promql::StorageError> {
        for s in self.inner.select(matchers, start_ms, end_ms)? {
            if !f(s) {
                break;
            }
        }
        Ok(())
    }
}

#[test]
fn range_functions_and_selectors_stream_series_from_storage() {
    let streaming = StreamingOnly {
        inner: storage(),
        loaded_selects: Default::default(),
    };
    let plain = storage();
    let e = Engine::new(EngineOptions::default());
    let ctx = QueryContext::default();
    let answer = |storage: &dyn vigil_promql::Queryable, q: &str| {
        e.range(storage, q, 600_000, 2_400_000, 60_000, &ctx)
            .expect("query runs")
    };
    for q in [
        "sum(rate(m[1m]))",
        "max_over_time(m[5m])",
        "predict_linear(m[5m], 60)",
        "quantile_over_time(0.9, m[2m])",
        "histogram_quantile(0.9, sum by (le) (rate(h_bucket[1m])))",
        "m",
        "topk(2, m) + on(job) m",
    ] {
        let before = streaming
            .loaded_selects
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(answer(&streaming, q), answer(&plain, q), "{q}");
        assert_eq!(
            streaming
                .loaded_selects
                .load(std::sync::atomic::Ordering::SeqCst),
            before,
            "{q} loaded every series at once"
        );
    }
    // Functions that need every series before computing any still answer
    // the same through the loaded path.
    for q in [
        "absent_over_time(nope[1m])",
        "holt_winters(m[5m], 0.5, 0.5)",
    ] {
        assert_eq!(answer(&streaming, q), answer(&plain, q), "{q}");
    }
}

#[test]
fn streamed_series_still_count_against_the_sample_budget() {
    let streaming = StreamingOnly {
        inner: storage(),
        loaded_selects: Default::default(),
    };
    let e = Engine::new(EngineOptions {
        max_samples: 100,
        ..EngineOptions::default()
    });
    let err = e
        .range(
            &streaming,
            "sum(rate(m[10m]))",
            600_000,
            2_400_000,
            60_000,
            &QueryContext::default(),
        )
        .expect_err("three series of 40+ samples exceed 100");
    assert_eq!(err.kind, ErrorKind::Execution);
    assert!(err.message.contains("too many samples"), "{}", err.message);
}

#[test]
fn instant_folds_answer_as_the_step_by_step_path() {
    // Six series (the instant path folds four windows at a time) of
    // different lengths, some with infinities and NaN.
    let mut s = MemStorage::new();
    for i in 0..6i64 {
        let samples = (0..40 + i * 7)
            .map(|k| {
                let v = match (i, k % 11) {
                    (2, 3) => f64::INFINITY,
                    (4, 5) => f64::NAN,
                    _ => (k * (i + 1)) as f64 / 3.0,
                };
                Sample::new(k * 15_000, v)
            })
            .collect();
        s.add(
            Labels::from_pairs([("__name__", "f".to_string()), ("i", i.to_string())]),
            samples,
        );
    }
    let e = Engine::new(EngineOptions::default());
    let ctx = QueryContext::default();
    let bits = |v: Value| match v {
        Value::Vector(v) => v
            .into_iter()
            .map(|s| (s.labels, s.v.to_bits()))
            .collect::<Vec<_>>(),
        Value::Matrix(m) => m
            .into_iter()
            .map(|s| (s.labels, s.samples[0].value.to_bits()))
            .collect(),
        other => panic!("unexpected {other:?}"),
    };
    for f in ["avg_over_time", "stdvar_over_time", "stddev_over_time"] {
        for range in ["1m", "5m", "20m"] {
            let q = format!("{f}(f[{range}])");
            let t = 600_000;
            let instant = e.instant(&s, &q, t, &ctx).expect("instant");
            // A range query of two steps takes the general path; its first
            // point is the instant answer.
            let range = e.range(&s, &q, t, t + 60_000, 60_000, &ctx).expect("range");
            assert_eq!(bits(instant), bits(range), "{q}");
        }
    }
    // Two series that differ only by name collide once it is dropped.
    s.add(
        Labels::from_pairs([("__name__", "g2"), ("i", "0")]),
        vec![Sample::new(0, 1.0)],
    );
    let err = e
        .instant(
            &s,
            r#"avg_over_time({__name__=~"f|g2", i="0"}[20m])"#,
            60_000,
            &ctx,
        )
        .expect_err("same labelset");
    assert_eq!(err.kind, ErrorKind::Execution);
    assert!(err.message.contains("same labelset"), "{}", err.message);
}
