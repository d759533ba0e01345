//! The query path without HTTP: PromQL over the embedded store, for
//! profiling (callgrind counts instructions reproducibly on a busy machine,
//! where wall time does not).
//!
//! ```text
//! cargo bench -p vigil --bench query
//! valgrind --tool=callgrind target/release/deps/query-* --bench   # RUNS=3
//! # knobs: HOSTS=25 HOURS=24 RUNS=20 CACHE_MIB=64 (0: read cache off)
//! #        QUERY='topk(5, avg_over_time(node_load1[24h]))'
//! #        POINTS=251 (a range query over the whole history instead)
//! ```
//!
//! Writes `HOSTS` hosts' gauges (`node_load1`, two decimals) and counters
//! (`http_requests_total`, six per host) at 15 s in five-minute rounds, as
//! `bench-query` remote-writes them, compacts as the running server does,
//! then runs `QUERY` as an instant query at the last sample (or, with
//! `POINTS`, a range query over the whole history) `RUNS` times.
//! Each run includes writing the API's JSON answer. Prints the
//! first (cold) run, the median of the others, and the store's read-cache
//! counters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil::storage::TsdbQueryable;
use vigil_promql::{Engine, EngineOptions, QueryContext, Value};
use vigil_tsdb::{Db, Options, SeriesSamples};
use vigil_wire::{Labels, Sample};

const STEP_MS: i64 = 15_000;
const ROUND: usize = 20;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn main() -> anyhow::Result<()> {
    let hosts = knob("HOSTS", 25);
    let hours = knob("HOURS", 24);
    let runs = knob("RUNS", 20).max(2);
    let query = std::env::var("QUERY")
        .unwrap_or_else(|_| "topk(5, avg_over_time(node_load1[24h]))".to_string());
    let samples = hours * 3600 * 1000 / STEP_MS as usize;
    let now = chrono::Utc::now().timestamp_millis() / STEP_MS * STEP_MS;
    let start = now - (samples as i64 - 1) * STEP_MS;

    let dir = tempfile::tempdir()?;
    let db = Arc::new(Db::open(
        &dir.path().join("tsdb"),
        Options {
            read_cache_bytes: knob("CACHE_MIB", 64) << 20,
            ..Options::default()
        },
    )?);
    let mut labels = Vec::new();
    for h in 0..hosts {
        let node = format!("host-{h:03}:9100");
        labels.push(Labels::from_pairs([
            ("__name__", "node_load1".to_string()),
            ("instance", node),
            ("job", "node".to_string()),
        ]));
        for (method, status) in [
            ("GET", "200"),
            ("GET", "404"),
            ("GET", "500"),
            ("POST", "200"),
            ("POST", "404"),
            ("POST", "500"),
        ] {
            labels.push(Labels::from_pairs([
                ("__name__", "http_requests_total".to_string()),
                ("instance", format!("host-{h:03}:8080")),
                ("job", "api".to_string()),
                ("method", method.to_string()),
                ("status", status.to_string()),
            ]));
        }
    }
    let mut seeds: Vec<(u64, f64)> = (0..labels.len()).map(|i| (i as u64 + 1, 0.0)).collect();
    let written = Instant::now();
    for first in (0..samples).step_by(ROUND) {
        let batch = labels
            .iter()
            .zip(seeds.iter_mut())
            .map(|(l, (seed, counter))| {
                let gauge = l.get("__name__") == Some("node_load1");
                let samples = (first..(first + ROUND).min(samples))
                    .map(|st| {
                        *seed = xorshift(*seed);
                        let r = (*seed >> 11) as f64 / (1u64 << 53) as f64;
                        let v = if gauge {
                            ((0.3 + 1.5 * (0.5 + r)) * 100.0).round() / 100.0
                        } else {
                            *counter += (r * 150.0).round();
                            *counter
                        };
                        Sample::new(start + st as i64 * STEP_MS, v)
                    })
                    .collect();
                SeriesSamples {
                    labels: l.clone(),
                    samples,
                }
            })
            .collect();
        db.append(batch, now)?;
    }
    // Compaction as the running server does it (retention, every minute):
    // stored chunks older than a chunk duration merge, the newest stay.
    db.enforce_retention(now)?;
    eprintln!(
        "{} series x {samples} samples written and compacted in {:.1} s",
        labels.len(),
        written.elapsed().as_secs_f64()
    );

    let storage = TsdbQueryable(db.clone());
    let engine = Engine::new(EngineOptions::default());
    let mut times = Vec::new();
    let mut answer = String::new();
    let points = knob("POINTS", 0) as i64;
    for _ in 0..runs {
        let t = Instant::now();
        let ctx = QueryContext::default();
        let v = if points > 1 {
            let step = (now - start) / (points - 1);
            engine.range(
                &storage,
                &query,
                start,
                start + step * (points - 1),
                step,
                &ctx,
            )
        } else {
            engine.instant(&storage, &query, now, &ctx)
        }
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        // The API's answer is part of the cost.
        let mut json = String::new();
        v.write_api_json(&mut json);
        times.push(t.elapsed());
        if answer.is_empty() {
            answer = match v {
                Value::Vector(s) => format!("{} series", s.len()),
                Value::Matrix(s) => format!(
                    "{} series, {} points",
                    s.len(),
                    s.iter().map(|s| s.samples.len()).sum::<usize>()
                ),
                other => format!("{other:?}"),
            };
        }
    }
    let cold = times[0];
    let mut warm: Vec<Duration> = times[1..].to_vec();
    warm.sort();
    println!(
        "{query}: {answer}; cold {:.2} ms, warm median {:.2} ms over {} runs",
        cold.as_secs_f64() * 1e3,
        warm[warm.len() / 2].as_secs_f64() * 1e3,
        warm.len()
    );
    let rc = db.stats().read_cache;
    println!(
        "read cache: {} entries, {:.1} MiB of {:.0} MiB, {} hits, {} misses, {} evictions",
        rc.entries,
        rc.bytes as f64 / 1048576.0,
        rc.max_bytes as f64 / 1048576.0,
        rc.hits,
        rc.misses,
        rc.evictions
    );
    Ok(())
}
