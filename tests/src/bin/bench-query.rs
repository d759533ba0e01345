//! PromQL query latency benchmark: the same day of API- and
//! node-exporter-like samples pushed over remote_write to `vigil serve`, to
//! Prometheus 2.42 (`--web.enable-remote-write-receiver`) and to
//! VictoriaMetrics 1.79, then a fixed set of range and instant queries timed
//! against all three in the same run.
//!
//! Before anything is timed, every system must hold every pushed sample and
//! series (counted with PromQL on each) and Vigil must return Prometheus's
//! answer to every benchmarked query (same series, same timestamps, values
//! within 1e-6 relative): a benchmark of wrong answers is worthless.
//! VictoriaMetrics answers MetricsQL, which differs from PromQL on purpose
//! in places (`rate` and `increase` do not extrapolate, a range query's
//! raw selector looks back one step, ...); a query where its answer is not
//! Prometheus's is not timed on it, and the table says why. It runs with
//! `-search.disableCache` (no rollup result cache: each run computes its
//! answer, as Vigil and Prometheus do) and `-search.latencyOffset=0s` (the
//! newest samples are visible at once).
//!
//! Run: `cargo run --release -p vigil-e2e --bin bench-query -- [--series N]
//! [--hours H] [--runs N] [--out FILE]` (defaults: 1000 series, 24 h at 15 s,
//! 20 timed runs per query and system; `--only SUBSTRING` keeps the queries
//! whose name contains it; `--vigil-config FILE` starts Vigil with that
//! configuration, e.g. `query: {decoded_cache_size: 0}` to time it without
//! its read cache). Range queries take 250 steps over
//! the whole history. Prints a markdown table and writes it to `--out`.
//! The collector timed is `vigil` next to this binary, built only if
//! missing: after changing the collector, `cargo build --release -p vigil`
//! first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use vigil_e2e::bench::{
    Prometheus, VictoriaMetrics, load_average, metric_value, push_rounds, xorshift,
};
use vigil_e2e::{Collector, now_ms};
use vigil_wire::remote_write as rw;

const STEP_MS: i64 = 15_000;
const STEPS_PER_DAY: f64 = 86_400.0 / 15.0;
/// Five minutes of samples per round of requests: rounds go in time order.
const STEPS_PER_ROUND: usize = 20;
const SERIES_PER_REQUEST: usize = 500;
const SENDERS: usize = 2;
const RANGE_STEPS: i64 = 250;
const SERIES_PER_HOST: usize = 40;
const JOBS: [&str; 3] = ["api", "gateway", "worker"];
const LE: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const CPU_MODES: [(&str, f64); 8] = [
    ("idle", 0.0),
    ("user", 0.22),
    ("system", 0.06),
    ("iowait", 0.012),
    ("irq", 0.001),
    ("softirq", 0.004),
    ("steal", 0.0),
    ("nice", 0.002),
];
/// Request classes: method, status, share of the host's traffic.
const CLASSES: [(&str, &str, f64); 6] = [
    ("GET", "200", 0.62),
    ("GET", "404", 0.05),
    ("GET", "500", 0.013),
    ("POST", "200", 0.29),
    ("POST", "404", 0.02),
    ("POST", "500", 0.007),
];

/// The benchmarked queries: (name, expression, range query?).
const QUERIES: [(&str, &str, bool); 10] = [
    ("raw selector", r#"http_requests_total{method="GET"}"#, true),
    ("rate", "rate(http_requests_total[5m])", true),
    (
        "sum by (job) of rate",
        "sum by (job) (rate(http_requests_total[5m]))",
        true,
    ),
    (
        "error ratio (binary op)",
        r#"sum by (job) (rate(http_requests_total{status="500"}[5m])) / sum by (job) (rate(http_requests_total[5m]))"#,
        true,
    ),
    (
        "histogram_quantile",
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        true,
    ),
    (
        "topk",
        r#"topk(5, rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
        true,
    ),
    (
        "subquery",
        "max_over_time(rate(http_requests_total[5m])[1h:1m])",
        true,
    ),
    (
        "instant: increase over 1h",
        "sum by (job, status) (increase(http_requests_total[1h]))",
        false,
    ),
    (
        "instant: p99 over 1h by job",
        "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[1h])))",
        false,
    ),
    (
        "instant: topk of avg_over_time 24h",
        "topk(5, avg_over_time(node_load1[24h]))",
        false,
    ),
];

struct Args {
    series: usize,
    hours: f64,
    runs: usize,
    out: Option<String>,
    only: Option<String>,
    vigil_config: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        series: 1000,
        hours: 24.0,
        runs: 20,
        out: None,
        only: None,
        vigil_config: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--series" => a.series = value()?.parse().context("--series")?,
            "--hours" => a.hours = value()?.parse().context("--hours")?,
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--out" => a.out = Some(value()?),
            "--only" => a.only = Some(value()?),
            "--vigil-config" => a.vigil_config = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "bench-query [--series N (1000)] [--hours H (24)] [--runs N (20)] [--out FILE] [--only SUBSTRING of query names] [--vigil-config FILE (passed to vigil serve)]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; try --help"),
        }
    }
    if a.series == 0 || a.hours <= 0.0 || a.runs == 0 {
        bail!("--series, --hours and --runs must be positive");
    }
    Ok(a)
}

/// A deterministic uniform generator in [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = xorshift(self.0);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Series {
    labels: Vec<rw::Label>,
    values: Vec<f64>,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<rw::Label> {
    let mut v: Vec<rw::Label> = pairs
        .iter()
        .map(|(n, v)| rw::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The 40 series of one host: an API process (request counters by method
/// and status, a latency histogram, its memory) and the node under it (CPU
/// seconds, network bytes, load, free memory). Traffic follows a daily
/// cycle; every tenth host's API process restarts half-way through, so
/// counters reset.
fn host_series(h: usize, samples: usize) -> Vec<Series> {
    let job = JOBS[h % JOBS.len()];
    let instance = format!("host-{h:03}:8080");
    let node = format!("host-{h:03}:9100");
    let mut rng = Rng(xorshift(h as u64 + 1));
    let restart = (h % 10 == 3).then_some(samples / 2 + h);
    let phase = h as f64 * 0.7;
    let diurnal =
        |st: usize| 1.0 + 0.5 * (std::f64::consts::TAU * st as f64 / STEPS_PER_DAY + phase).sin();
    let mut out = Vec::with_capacity(SERIES_PER_HOST);

    // Requests: integer counters per class; their per-step sum feeds the
    // histogram so that _count equals the requests served.
    let base_rps = 5.0 + (h % 7) as f64 * 3.0;
    let mut req = vec![Vec::with_capacity(samples); CLASSES.len()];
    let mut served = Vec::with_capacity(samples);
    let mut cum = [0.0f64; CLASSES.len()];
    for st in 0..samples {
        if Some(st) == restart {
            cum = [0.0; CLASSES.len()];
        }
        let rps = base_rps * diurnal(st);
        let mut n = 0.0;
        for (i, (_, _, share)) in CLASSES.iter().enumerate() {
            let inc = (rps * share * 15.0 * (0.8 + 0.4 * rng.next())).round();
            cum[i] += inc;
            n += inc;
            req[i].push(cum[i]);
        }
        served.push(n);
    }
    for ((method, status, _), values) in CLASSES.iter().zip(req) {
        out.push(Series {
            labels: labels(&[
                ("__name__", "http_requests_total"),
                ("job", job),
                ("instance", &instance),
                ("method", method),
                ("status", status),
            ]),
            values,
        });
    }

    // Latency: log-normal-like around a median that rises with load; the
    // cumulative share below each bound is monotonic in `le`, so rounded
    // bucket counts are too.
    let sigma = 0.9;
    let mut buckets = vec![Vec::with_capacity(samples); LE.len() + 1];
    let mut sum = Vec::with_capacity(samples);
    let mut count = Vec::with_capacity(samples);
    let (mut cb, mut cs, mut cc) = ([0.0f64; LE.len() + 1], 0.0f64, 0.0f64);
    for (st, &n) in served.iter().enumerate() {
        if Some(st) == restart {
            (cb, cs, cc) = ([0.0; LE.len() + 1], 0.0, 0.0);
        }
        let median = 0.04 * (1.0 + 0.2 * (h % 5) as f64) * diurnal(st) * (0.9 + 0.2 * rng.next());
        for (i, le) in LE.iter().enumerate() {
            let z = (le.ln() - median.ln()) / sigma;
            let share = 1.0 / (1.0 + (-1.702 * z).exp());
            cb[i] += (n * share).round();
            buckets[i].push(cb[i]);
        }
        cb[LE.len()] += n;
        buckets[LE.len()].push(cb[LE.len()]);
        cs += ((n * median * (sigma * sigma / 2.0).exp()) * 1000.0).round() / 1000.0;
        cc += n;
        sum.push(cs);
        count.push(cc);
    }
    for (i, values) in buckets.into_iter().enumerate() {
        let le = LE.get(i).map_or("+Inf".to_string(), |le| le.to_string());
        out.push(Series {
            labels: labels(&[
                ("__name__", "http_request_duration_seconds_bucket"),
                ("job", job),
                ("instance", &instance),
                ("le", &le),
            ]),
            values,
        });
    }
    for (name, values) in [
        ("http_request_duration_seconds_sum", sum),
        ("http_request_duration_seconds_count", count),
    ] {
        out.push(Series {
            labels: labels(&[("__name__", name), ("job", job), ("instance", &instance)]),
            values,
        });
    }

    // Gauges.
    let mut rss = 2.0e8;
    let mut gauges: [Vec<f64>; 3] = std::array::from_fn(|_| Vec::with_capacity(samples));
    for st in 0..samples {
        if Some(st) == restart {
            rss = 2.0e8;
        }
        rss += (rng.next() * 4096.0).round() * 4.0;
        gauges[0].push(rss);
        let load = 0.3 + 1.5 * diurnal(st) * (0.5 + rng.next());
        gauges[1].push((load * 100.0).round() / 100.0);
        let avail = 4.0e9 - 1.0e9 * (diurnal(st) - 1.0) + rng.next() * 5.0e7;
        gauges[2].push((avail / 4096.0).round() * 4096.0);
    }
    let [rss_v, load_v, avail_v] = gauges;
    out.push(Series {
        labels: labels(&[
            ("__name__", "process_resident_memory_bytes"),
            ("job", job),
            ("instance", &instance),
        ]),
        values: rss_v,
    });
    for (name, values) in [
        ("node_load1", load_v),
        ("node_memory_MemAvailable_bytes", avail_v),
    ] {
        out.push(Series {
            labels: labels(&[("__name__", name), ("job", "node"), ("instance", &node)]),
            values,
        });
    }

    // CPU seconds: two CPUs, idle takes what the other modes leave.
    for cpu in ["0", "1"] {
        for (mode, share) in CPU_MODES {
            let mut c = 1.0e5 * (1.0 + rng.next());
            let mut values = Vec::with_capacity(samples);
            for st in 0..samples {
                let busy: f64 = CPU_MODES.iter().map(|m| m.1).sum::<f64>() * diurnal(st);
                let s = if mode == "idle" {
                    1.0 - busy
                } else {
                    share * diurnal(st)
                };
                c += s * 15.0 * (0.9 + 0.2 * rng.next());
                values.push((c * 100.0).round() / 100.0);
            }
            out.push(Series {
                labels: labels(&[
                    ("__name__", "node_cpu_seconds_total"),
                    ("job", "node"),
                    ("instance", &node),
                    ("cpu", cpu),
                    ("mode", mode),
                ]),
                values,
            });
        }
    }
    for (device, bps) in [("eth0", 1.2e5), ("lo", 3.0e3)] {
        let mut c = 0.0f64;
        let mut values = Vec::with_capacity(samples);
        for st in 0..samples {
            c += (bps * diurnal(st) * 15.0 * (0.8 + 0.4 * rng.next())).round();
            values.push(c);
        }
        out.push(Series {
            labels: labels(&[
                ("__name__", "node_network_receive_bytes_total"),
                ("job", "node"),
                ("instance", &node),
                ("device", device),
            ]),
            values,
        });
    }
    debug_assert_eq!(out.len(), SERIES_PER_HOST);
    out
}

/// Pre-encoded remote_write bodies, one round per five minutes of samples.
fn encode_rounds(series: &[Series], samples: usize, start_ms: i64) -> Vec<Vec<Vec<u8>>> {
    let mut rounds = Vec::new();
    for first in (0..samples).step_by(STEPS_PER_ROUND) {
        let steps = first..(first + STEPS_PER_ROUND).min(samples);
        let round = series
            .chunks(SERIES_PER_REQUEST)
            .map(|chunk| {
                rw::encode_write_request(&rw::WriteRequest {
                    timeseries: chunk
                        .iter()
                        .map(|s| rw::TimeSeries {
                            labels: s.labels.clone(),
                            samples: steps
                                .clone()
                                .map(|st| rw::Sample {
                                    value: s.values[st],
                                    timestamp: start_ms + st as i64 * STEP_MS,
                                })
                                .collect(),
                            exemplars: vec![],
                        })
                        .collect(),
                    metadata: vec![],
                })
            })
            .collect();
        rounds.push(round);
    }
    rounds
}

/// One system under test: where its query API is.
struct Target {
    name: &'static str,
    base: String,
}

/// The parameters of one query: instant at `end`, or range over the history.
struct Window {
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Runs one query; returns the wall time until the whole body arrived and
/// the `data` of the success envelope.
fn run_query(
    client: &reqwest::blocking::Client,
    t: &Target,
    q: &str,
    range: bool,
    w: &Window,
) -> anyhow::Result<(Duration, Value)> {
    let (path, form) = if range {
        (
            "/api/v1/query_range",
            vec![
                ("query", q.to_string()),
                ("start", secs(w.start_ms)),
                ("end", secs(w.end_ms)),
                ("step", secs(w.step_ms)),
            ],
        )
    } else {
        (
            "/api/v1/query",
            vec![("query", q.to_string()), ("time", secs(w.end_ms))],
        )
    };
    let started = Instant::now();
    let resp = client
        .post(format!("{}{path}", t.base))
        .form(&form)
        .send()
        .with_context(|| format!("{} {q}", t.name))?;
    let status = resp.status();
    let body = resp.bytes()?;
    let took = started.elapsed();
    let v: Value = serde_json::from_slice(&body)
        .with_context(|| format!("{} answered {status} with non-JSON to {q}", t.name))?;
    if v["status"] != "success" {
        bail!("{} failed {q}: {} {}", t.name, v["errorType"], v["error"]);
    }
    Ok((took, v["data"].clone()))
}

/// A result as series keyed by their label set, each with its points.
type Normal = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

fn point(p: &Value) -> anyhow::Result<(i64, f64)> {
    let t = p[0].as_f64().context("timestamp is not a number")?;
    let v = p[1]
        .as_str()
        .context("value is not a string")?
        .parse::<f64>()
        .context("value does not parse")?;
    Ok(((t * 1000.0).round() as i64, v))
}

fn normalize(data: &Value) -> anyhow::Result<(String, Normal)> {
    let kind = data["resultType"].as_str().unwrap_or("").to_string();
    let mut out = Normal::new();
    match kind.as_str() {
        "scalar" => {
            out.insert(BTreeMap::new(), vec![point(&data["result"])?]);
        }
        "vector" | "matrix" => {
            for s in data["result"].as_array().context("result is not a list")? {
                let labels = s["metric"]
                    .as_object()
                    .context("metric is not an object")?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect();
                let points = if kind == "vector" {
                    vec![point(&s["value"])?]
                } else {
                    s["values"]
                        .as_array()
                        .context("values is not a list")?
                        .iter()
                        .map(point)
                        .collect::<anyhow::Result<_>>()?
                };
                if out.insert(labels, points).is_some() {
                    bail!("duplicate series in result");
                }
            }
        }
        other => bail!("unexpected result type {other:?}"),
    }
    Ok((kind, out))
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-9)
}

/// Checks `other`'s answer (from the system named `who`) equals
/// Prometheus's; returns the number of series and points.
fn same_answer(prom: &Value, other: &Value, who: &str) -> anyhow::Result<(usize, usize)> {
    let (pk, p) = normalize(prom)?;
    let (vk, v) = normalize(other)?;
    same_normal((pk, p), (vk, v), who)
}

/// [`same_answer`] for VictoriaMetrics, which keeps the metric name where
/// PromQL drops it (MetricsQL keeps `__name__` through functions that do
/// not change what the series measures, such as `avg_over_time`): when
/// Prometheus's answer carries no name and VictoriaMetrics' differs only by
/// it, the answers are the same computation, compared without the name.
/// Returns whether the name had to be dropped.
fn same_answer_vm(prom: &Value, vm: &Value) -> anyhow::Result<bool> {
    let exact = same_answer(prom, vm, "VictoriaMetrics");
    let Err(e) = exact else { return Ok(false) };
    let (pk, p) = normalize(prom)?;
    let (vk, v) = normalize(vm)?;
    if p.keys().any(|l| l.contains_key("__name__")) {
        return Err(e);
    }
    let mut unnamed = Normal::new();
    for (mut labels, points) in v {
        labels.remove("__name__");
        if unnamed.insert(labels, points).is_some() {
            return Err(e);
        }
    }
    same_normal((pk, p), (vk, unnamed), "VictoriaMetrics").map_err(|_| e)?;
    Ok(true)
}

fn same_normal(
    (pk, p): (String, Normal),
    (vk, v): (String, Normal),
    who: &str,
) -> anyhow::Result<(usize, usize)> {
    if pk != vk {
        bail!("result type: Prometheus {pk}, {who} {vk}");
    }
    if p.len() != v.len() || p.keys().zip(v.keys()).any(|(a, b)| a != b) {
        let only_p: Vec<_> = p.keys().filter(|k| !v.contains_key(*k)).take(3).collect();
        let only_v: Vec<_> = v.keys().filter(|k| !p.contains_key(*k)).take(3).collect();
        bail!(
            "series differ ({} in Prometheus, {} in {who}): only in Prometheus {only_p:?}; only in {who} {only_v:?}",
            p.len(),
            v.len()
        );
    }
    let mut points = 0;
    for ((labels, pp), vp) in p.iter().zip(v.values()) {
        if pp.len() != vp.len() {
            bail!(
                "{labels:?}: {} points in Prometheus, {} in {who}",
                pp.len(),
                vp.len()
            );
        }
        for (a, b) in pp.iter().zip(vp) {
            if a.0 != b.0 || !close(a.1, b.1) {
                bail!("{labels:?}: Prometheus {a:?}, {who} {b:?}");
            }
        }
        points += pp.len();
    }
    Ok((p.len(), points))
}

/// A scalar-valued one-element vector answer, e.g. from `sum(...)`.
fn single_value(data: &Value) -> anyhow::Result<f64> {
    let (_, n) = normalize(data)?;
    match n.values().next().and_then(|p| p.first()) {
        Some(p) if n.len() == 1 => Ok(p.1),
        _ => bail!("expected one series, got {}", n.len()),
    }
}

/// Waits until Prometheus has cut its head down to the last few hours and
/// its compactions have settled, so that none runs while queries are timed.
fn wait_prometheus_settled(prom: &Prometheus) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = (f64::NAN, Instant::now());
    loop {
        let m = prom.metrics()?;
        let span = metric_value(&m, "prometheus_tsdb_head_max_time").unwrap_or(0.0)
            - metric_value(&m, "prometheus_tsdb_head_min_time").unwrap_or(0.0);
        let compactions = metric_value(&m, "prometheus_tsdb_compactions_total").unwrap_or(0.0);
        if compactions != last.0 {
            last = (compactions, Instant::now());
        }
        // Head compaction leaves at most 1.5 block ranges (3 h) in the head;
        // the compaction loop runs every minute, so a quiet 70 s is settled.
        if span <= 3.0 * 3_600_000.0 && last.1.elapsed() > Duration::from_secs(70) {
            eprintln!(
                "Prometheus settled: head spans {:.1} h, {compactions} compactions",
                span / 3_600_000.0
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("warning: Prometheus compactions did not settle within 10 minutes");
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Waits until Vigil's compaction (a budgeted pass a minute, merging the
/// pushed history's chunks into larger ones) has nothing left to merge: the
/// stored chunk count unchanged for 70 s.
fn wait_vigil_settled(vigil: &Collector) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = (f64::NAN, Instant::now());
    loop {
        let m = reqwest::blocking::get(vigil.url("/metrics"))?.text()?;
        // A missing gauge would never compare equal (NaN) and only time out.
        let chunks = metric_value(&m, "vigil_tsdb_chunks")
            .context("Vigil's /metrics has no vigil_tsdb_chunks")?;
        if chunks != last.0 {
            last = (chunks, Instant::now());
        }
        if last.1.elapsed() > Duration::from_secs(70) {
            eprintln!("Vigil settled: {chunks} stored chunks");
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("warning: Vigil compaction did not settle within 10 minutes");
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

struct Timing {
    name: &'static str,
    expr: &'static str,
    range: bool,
    series: usize,
    points: usize,
    /// Wall times per target, in `targets` order.
    took: [Vec<Duration>; 3],
    /// Why VictoriaMetrics is not timed on this query (its answer differs).
    vm_skipped: Option<String>,
}

/// `(median, p90)` in milliseconds.
fn median_p90(d: &[Duration]) -> (f64, f64) {
    (percentile_ms(d, 0.5), percentile_ms(d, 0.9))
}

/// Nearest-rank percentile in milliseconds.
fn percentile_ms(d: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let samples = (args.hours * 3600.0 * 1000.0 / STEP_MS as f64).round() as usize;
    let hosts = args.series.div_ceil(SERIES_PER_HOST);
    eprintln!("generating {hosts} hosts × {SERIES_PER_HOST} series × {samples} samples");
    let series: Vec<Series> = (0..hosts).flat_map(|h| host_series(h, samples)).collect();
    let total_samples = (series.len() * samples) as f64;
    // The history ends at the last whole step before now.
    let end_ms = (now_ms() / STEP_MS) * STEP_MS - STEP_MS;
    let start_ms = end_ms - (samples as i64 - 1) * STEP_MS;
    let rounds = encode_rounds(&series, samples, start_ms);
    let bodies: usize = rounds.iter().map(Vec::len).sum();
    let bytes: usize = rounds.iter().flatten().map(Vec::len).sum();
    eprintln!(
        "{} series, {total_samples} samples in {bodies} requests ({:.1} MiB)",
        series.len(),
        bytes as f64 / (1024.0 * 1024.0)
    );
    let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
    for s in &series {
        if let Some(l) = s.labels.iter().find(|l| l.name == "__name__") {
            *per_name.entry(l.value.clone()).or_default() += 1;
        }
    }
    drop(series);

    let dir = tempfile::tempdir().context("tempdir")?;
    let vigil_args: Vec<&str> = match &args.vigil_config {
        Some(f) => vec!["--config", f],
        None => vec![],
    };
    let vigil = Collector::start(&dir.path().join("vigil"), &vigil_args)?;
    let prom = Prometheus::start(dir.path())?;
    let vm = VictoriaMetrics::start_with(
        dir.path(),
        &["-search.disableCache", "-search.latencyOffset=0s"],
    )?;
    let took = push_rounds(&vigil.url("/api/v1/write"), &rounds, SENDERS)?;
    eprintln!("pushed to Vigil in {:.1} s", took.as_secs_f64());
    let took = push_rounds(&prom.url("/api/v1/write"), &rounds, SENDERS)?;
    eprintln!("pushed to Prometheus in {:.1} s", took.as_secs_f64());
    let took = push_rounds(&vm.url("/api/v1/write"), &rounds, SENDERS)?;
    eprintln!("pushed to VictoriaMetrics in {:.1} s", took.as_secs_f64());
    drop(rounds);
    let stored = vm.wait_rows_stored(total_samples as u64, Duration::from_secs(300))?;
    if stored < total_samples {
        bail!("VictoriaMetrics stored {stored} rows of {total_samples}");
    }
    // Both compact what was just pushed in passes a minute apart; timing
    // starts once neither has a pass left, so no query overlaps one.
    std::thread::scope(|scope| {
        let vigil_settled = scope.spawn(|| wait_vigil_settled(&vigil));
        let prom_settled = wait_prometheus_settled(&prom);
        let vigil_settled = vigil_settled
            .join()
            .map_err(|_| anyhow::anyhow!("the Vigil settle wait panicked"))?;
        prom_settled.and(vigil_settled)
    })?;

    let targets = [
        Target {
            name: "Vigil",
            base: vigil.url(""),
        },
        Target {
            name: "Prometheus",
            base: prom.base.clone(),
        },
        Target {
            name: "VictoriaMetrics",
            base: vm.base.clone(),
        },
    ];
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let history = Window {
        start_ms,
        end_ms,
        step_ms: (end_ms - start_ms) / RANGE_STEPS,
    };

    // All must hold every sample and series before anything is compared.
    // Counted per metric name: `count_over_time` drops the name, and two
    // metrics' series would then collide.
    let day = format!("{}s", (end_ms - start_ms) / 1000 + 1);
    for (name, n_series) in &per_name {
        for (what, q, want) in [
            (
                "samples",
                format!("sum(count_over_time({name}[{day}]))"),
                (n_series * samples) as f64,
            ),
            ("series", format!("count({name})"), *n_series as f64),
        ] {
            for t in &targets {
                let (_, data) = run_query(&client, t, &q, false, &history)?;
                let got = single_value(&data)?;
                if got != want {
                    bail!(
                        "{} holds {got} {what} of {name}, {want} were pushed",
                        t.name
                    );
                }
            }
        }
    }
    eprintln!(
        "all three hold all {total_samples} samples of all {} series",
        hosts * SERIES_PER_HOST
    );

    // Same answers first; this run also warms all up.
    let mut timings = Vec::new();
    let mut vm_named = Vec::new();
    for (name, expr, range) in QUERIES {
        if args
            .only
            .as_ref()
            .is_some_and(|o| !name.contains(o.as_str()))
        {
            continue;
        }
        let (_, v) = run_query(&client, &targets[0], expr, range, &history)?;
        let (_, p) = run_query(&client, &targets[1], expr, range, &history)?;
        let (n_series, points) =
            same_answer(&p, &v, "Vigil").with_context(|| format!("answers differ for {expr}"))?;
        if n_series == 0 {
            bail!("{expr} returned nothing on both: not worth timing");
        }
        eprintln!("same answer: {expr} ({n_series} series, {points} points)");
        let vm_skipped = match run_query(&client, &targets[2], expr, range, &history)
            .and_then(|(_, m)| same_answer_vm(&p, &m))
        {
            Ok(dropped_name) => {
                if dropped_name {
                    eprintln!(
                        "same answer from VictoriaMetrics but for the metric name it keeps: {expr}"
                    );
                    vm_named.push(name);
                }
                None
            }
            Err(e) => {
                let mut why = format!("{e:#}");
                if let Some((cut, _)) = why.char_indices().nth(300) {
                    why.truncate(cut);
                    why.push('…');
                }
                eprintln!("VictoriaMetrics not timed on {expr}: {why}");
                Some(why)
            }
        };
        timings.push(Timing {
            name,
            expr,
            range,
            series: n_series,
            points,
            took: [Vec::new(), Vec::new(), Vec::new()],
            vm_skipped,
        });
    }

    if timings.is_empty() {
        bail!(
            "--only {:?} matches no query",
            args.only.unwrap_or_default()
        );
    }
    let load_before = load_average();
    for run in 0..args.runs {
        for t in &mut timings {
            // Rotate who goes first so drift in machine load falls on all.
            for k in 0..targets.len() {
                let i = (run + k) % targets.len();
                if i == 2 && t.vm_skipped.is_some() {
                    continue;
                }
                let (took, _) = run_query(&client, &targets[i], t.expr, t.range, &history)?;
                t.took[i].push(took);
            }
        }
        eprint!(".");
    }
    eprintln!();
    let load_after = load_average();

    let mut md = String::new();
    md.push_str(&format!(
        "{} series × {samples} samples at 15 s ({:.0} h, {total_samples} samples); range queries: {} points over the whole history (step {} s); {} warm runs each, rotating who goes first; load average {load_before} before, {load_after} after.\n\n",
        hosts * SERIES_PER_HOST,
        (end_ms - start_ms + STEP_MS) as f64 / 3_600_000.0,
        RANGE_STEPS + 1,
        secs(history.step_ms),
        args.runs,
    ));
    md.push_str("| query | kind | series / points | Vigil median (p90) ms | Prometheus 2.42 median (p90) ms | VictoriaMetrics 1.79 median (p90) ms | Vigil / Prometheus | Vigil / VictoriaMetrics |\n");
    md.push_str("|---|---|---|---|---|---|---|---|\n");
    let (mut log_prom, mut log_vm, mut n_vm) = (0.0, 0.0, 0usize);
    let mut notes = String::new();
    for t in &timings {
        let (vm, vp) = median_p90(&t.took[0]);
        let (pm, pp) = median_p90(&t.took[1]);
        log_prom += (vm / pm).ln();
        let (m_col, m_ratio) = match &t.vm_skipped {
            None => {
                let (mm, mp) = median_p90(&t.took[2]);
                log_vm += (vm / mm).ln();
                n_vm += 1;
                (format!("{mm:.1} ({mp:.1})"), format!("{:.2}", vm / mm))
            }
            Some(why) => {
                notes.push_str(&format!(
                    "- {}: VictoriaMetrics not timed, its answer differs: {}\n",
                    t.name,
                    why.replace('|', "\\|")
                ));
                ("—".to_string(), "— (differs)".to_string())
            }
        };
        md.push_str(&format!(
            "| {} `{}` | {} | {} / {} | {vm:.1} ({vp:.1}) | {pm:.1} ({pp:.1}) | {m_col} | {:.2} | {m_ratio} |\n",
            t.name,
            t.expr.replace('|', "\\|"),
            if t.range { "range" } else { "instant" },
            t.series,
            t.points,
            vm / pm,
        ));
    }
    let vm_mean = if n_vm > 0 {
        format!("{:.2} (over {n_vm})", (log_vm / n_vm as f64).exp())
    } else {
        "—".to_string()
    };
    md.push_str(&format!(
        "| geometric mean | | | | | | {:.2} | {vm_mean} |\n",
        (log_prom / timings.len() as f64).exp()
    ));
    for name in &vm_named {
        notes.push_str(&format!(
            "- {name}: VictoriaMetrics keeps `__name__` on the result (MetricsQL keeps the metric name through functions such as `avg_over_time`); its answer equals Prometheus's without it\n"
        ));
    }
    if !notes.is_empty() {
        md.push('\n');
        md.push_str(&notes);
    }
    print!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {out}"))?;
        eprintln!("written to {out}");
    }
    Ok(())
}
