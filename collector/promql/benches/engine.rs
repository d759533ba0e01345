//! Engine throughput benchmark (not run in CI).
//!
//! ```text
//! cargo bench -p vigil-promql --bench engine
//! ```
//!
//! Loads 1,000 counter series and 100 classic histograms (10 buckets) with
//! 2 h of 15 s samples into [`MemStorage`], then times typical dashboard
//! queries as instant queries and as 2 h range queries at a 15 s and 60 s
//! step. Prints the median of several runs and the samples per second the
//! engine processed.

use std::time::{Duration, Instant};

use vigil_promql::{Engine, EngineOptions, MemStorage, QueryContext};
use vigil_wire::{Labels, Sample};

const SPAN_MS: i64 = 2 * 3600 * 1000;
const STEP_MS: i64 = 15_000;

fn data() -> (MemStorage, usize) {
    let mut s = MemStorage::new();
    let mut total = 0;
    let mut x: u64 = 7;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 100) as f64
    };
    for i in 0..1000 {
        let labels = Labels::from_pairs([
            ("__name__", "http_requests_total".to_string()),
            ("job", format!("job{}", i % 10)),
            ("instance", format!("i{}", i / 10)),
            ("code", ["200", "404", "500"][i % 3].to_string()),
        ]);
        let mut v = 0.0;
        let samples: Vec<Sample> = (0..=SPAN_MS / STEP_MS)
            .map(|k| {
                v += rnd();
                Sample::new(k * STEP_MS, v)
            })
            .collect();
        total += samples.len();
        s.add(labels, samples);
    }
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    for h in 0..100 {
        let mut counts = [0.0f64; 10];
        let mut per: Vec<Vec<Sample>> = vec![Vec::new(); 10];
        for k in 0..=SPAN_MS / STEP_MS {
            let obs = rnd() as usize % 10;
            for (b, c) in counts.iter_mut().enumerate() {
                if b >= obs {
                    *c += 1.0;
                }
            }
            for b in 0..10 {
                per[b].push(Sample::new(k * STEP_MS, counts[b]));
            }
        }
        for (b, samples) in per.into_iter().enumerate() {
            total += samples.len();
            s.add(
                Labels::from_pairs([
                    ("__name__", "latency_seconds_bucket".to_string()),
                    ("job", format!("job{}", h % 10)),
                    ("instance", format!("i{h}")),
                    ("le", les[b].to_string()),
                ]),
                samples,
            );
        }
    }
    (s, total)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let (storage, total) = data();
    println!("loaded {total} samples");
    let engine = Engine::new(EngineOptions::default());
    let ctx = QueryContext::default();
    let queries = [
        "http_requests_total",
        "sum by (job) (rate(http_requests_total[5m]))",
        "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m])) / sum by (job) (rate(http_requests_total[5m]))",
        "topk(5, rate(http_requests_total[5m]))",
        "histogram_quantile(0.95, sum by (job, le) (rate(latency_seconds_bucket[5m])))",
        "max_over_time(sum(rate(http_requests_total[1m]))[30m:1m])",
        "http_requests_total / on(job, instance) group_left sum by (job, instance) (http_requests_total)",
    ];
    for q in queries {
        for (what, step) in [
            ("instant", 0),
            ("range 15s", STEP_MS),
            ("range 60s", 60_000),
        ] {
            let mut times = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                let r = if step == 0 {
                    engine.instant(&storage, q, SPAN_MS, &ctx)
                } else {
                    engine.range(&storage, q, 0, SPAN_MS, step, &ctx)
                };
                if let Err(e) = r {
                    eprintln!("{q}: {e}");
                }
                times.push(t.elapsed());
            }
            println!(
                "{:>10.2} ms  {what:<9}  {q}",
                median(times).as_secs_f64() * 1000.0
            );
        }
    }
}
