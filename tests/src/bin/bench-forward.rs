//! Forwarding benchmark: how fast `vigil serve` drains its remote_write
//! queue into a real receiver with one shard and with several.
//!
//! For each receiver (single-node VictoriaMetrics 1.79 and Prometheus 2.42
//! with `--web.enable-remote-write-receiver`, both from Debian) and each
//! shard count, a fresh Vigil forwarding to a receiver that is not running
//! yet accepts the whole workload (it queues on disk); then the receiver
//! starts and the time until Vigil's queue is empty
//! (`vigil_remote_storage_samples_pending` 0) is the drain time. The
//! receiver's own count of the samples is checked against the workload, so
//! a fast but lossy run cannot pass. Prints one Markdown table.
//!
//! Run: `cargo run --release -p vigil-e2e --bin bench-forward -- [SERIES] [SAMPLES_PER_SERIES] [SHARDS,...]`
//! (defaults 2000, 200 and `1,4,8`: 400 000 samples, 2 000 per request).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use vigil_e2e::bench::{PROMETHEUS_BIN, push_rounds};
use vigil_e2e::{Collector, Proc, free_port, now_ms, wait_ready};
use vigil_wire::remote_write as rw;

const VICTORIA_METRICS_BIN: &str = "/usr/bin/victoria-metrics";
const STEP_MS: i64 = 15_000;
const SERIES_PER_REQUEST: usize = 500;
const SENDERS: usize = 2;

#[derive(Clone, Copy)]
enum Receiver {
    VictoriaMetrics,
    Prometheus,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::VictoriaMetrics => "VictoriaMetrics 1.79",
            Receiver::Prometheus => "Prometheus 2.42",
        }
    }

    fn start(self, dir: &Path, port: u16) -> anyhow::Result<Proc> {
        let (proc, ready) = match self {
            Receiver::VictoriaMetrics => (
                Proc::spawn(
                    "victoria-metrics",
                    Command::new(VICTORIA_METRICS_BIN)
                        .arg(format!("-storageDataPath={}", dir.join("vm").display()))
                        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                        .arg("-retentionPeriod=1y")
                        .arg("-search.latencyOffset=0s")
                        .arg("-search.disableCache")
                        .arg("-loggerLevel=ERROR")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                )?,
                "/health",
            ),
            Receiver::Prometheus => {
                let cfg = dir.join("prometheus.yml");
                std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n")?;
                (
                    Proc::spawn(
                        "prometheus",
                        Command::new(PROMETHEUS_BIN)
                            .arg(format!("--config.file={}", cfg.display()))
                            .arg(format!(
                                "--storage.tsdb.path={}",
                                dir.join("prom").display()
                            ))
                            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                            .arg("--web.enable-remote-write-receiver")
                            .arg("--log.level=error")
                            .stdout(Stdio::null())
                            .stderr(Stdio::null()),
                    )?,
                    "/-/ready",
                )
            }
        };
        wait_ready(
            &format!("http://127.0.0.1:{port}{ready}"),
            Duration::from_secs(60),
        )?;
        Ok(proc)
    }
}

/// Requests in time order (rounds of one step for every series), so every
/// series reaches Vigil, and then the receiver, in order.
fn workload(series: usize, samples: usize, start_ms: i64) -> Vec<Vec<Vec<u8>>> {
    (0..samples)
        .map(|step| {
            (0..series)
                .collect::<Vec<_>>()
                .chunks(SERIES_PER_REQUEST)
                .map(|chunk| {
                    rw::encode_write_request(&rw::WriteRequest {
                        timeseries: chunk
                            .iter()
                            .map(|&i| rw::TimeSeries {
                                labels: vec![
                                    label("__name__", "bench_forward_value"),
                                    label("instance", &format!("host-{:03}", i / 20)),
                                    label("series", &i.to_string()),
                                ],
                                samples: vec![rw::Sample {
                                    value: (i * samples + step) as f64,
                                    timestamp: start_ms + step as i64 * STEP_MS,
                                }],
                                exemplars: vec![],
                            })
                            .collect(),
                        metadata: vec![],
                    })
                })
                .collect()
        })
        .collect()
}

fn label(name: &str, value: &str) -> rw::Label {
    rw::Label {
        name: name.into(),
        value: value.into(),
    }
}

/// Sum of every line of Vigil's `/metrics` named `name` (any labels).
fn vigil_metric(vigil: &Collector, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::blocking::get(vigil.url("/metrics"))?.text()?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn receiver_count(base: &str) -> anyhow::Result<f64> {
    let v: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", "sum(count_over_time(bench_forward_value[1d]))")])
        .send()?
        .json()?;
    Ok(v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0))
}

struct Run {
    drain: Duration,
    shards_seen: f64,
}

fn run(
    receiver: Receiver,
    shards: usize,
    bodies: &[Vec<Vec<u8>>],
    total: u64,
    dir: &Path,
) -> anyhow::Result<Run> {
    let rport = free_port();
    let base = format!("http://127.0.0.1:{rport}");
    let cfg = dir.join("vigil.yml");
    std::fs::write(
        &cfg,
        format!(
            "remote_write:\n  - url: {base}/api/v1/write\n    name: bench\n    queue_config:\n      \
             max_samples_per_send: 2000\n      min_shards: {shards}\n      max_shards: {shards}\n      \
             batch_send_deadline: 100ms\n      min_backoff: 20ms\n      max_backoff: 100ms\n      \
             max_bytes: 4GiB\n"
        ),
    )?;
    let cfg_arg = cfg.to_str().context("utf-8 path")?;
    let vigil = Collector::start(&dir.join("vigil"), &["--config", cfg_arg])?;
    push_rounds(&vigil.url("/api/v1/write"), bodies, SENDERS)?;
    let queued = vigil_metric(&vigil, "vigil_remote_storage_samples_pending")?;
    if (queued as u64) < total {
        bail!("only {queued} of {total} samples queued before the receiver started");
    }
    let _receiver = receiver.start(dir, rport)?;
    let started = Instant::now();
    let mut shards_seen: f64 = 0.0;
    loop {
        shards_seen = shards_seen.max(vigil_metric(&vigil, "vigil_remote_storage_shards")?);
        if vigil_metric(&vigil, "vigil_remote_storage_samples_pending")? == 0.0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the queue did not drain within 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let drain = started.elapsed();
    let failed = vigil_metric(&vigil, "vigil_remote_storage_samples_failed_total")?;
    if failed > 0.0 {
        bail!("{} refused {failed} samples", receiver.name());
    }
    // The receiver holds every sample (polled: searchable within seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = receiver_count(&base)?;
        if n as u64 == total {
            break;
        }
        if Instant::now() > deadline {
            bail!("{} holds {n} of {total} samples", receiver.name());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(Run { drain, shards_seen })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let series: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let samples: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let shard_counts: Vec<usize> = args
        .get(3)
        .map(String::as_str)
        .unwrap_or("1,4,8")
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    for bin in [VICTORIA_METRICS_BIN, PROMETHEUS_BIN] {
        if !Path::new(bin).exists() {
            bail!("{bin} is missing: apt-get install victoria-metrics prometheus");
        }
    }
    let total = (series * samples) as u64;
    let start_ms = (now_ms() / STEP_MS) * STEP_MS - samples as i64 * STEP_MS;
    eprintln!("workload: {series} series × {samples} samples = {total} samples");
    let bodies = workload(series, samples, start_ms);

    println!("| receiver | shards | samples | drain time (s) | samples/s forwarded | vs 1 shard |");
    println!("|---|---|---|---|---|---|");
    for receiver in [Receiver::VictoriaMetrics, Receiver::Prometheus] {
        let mut one: Option<f64> = None;
        for &shards in &shard_counts {
            let dir = tempfile::tempdir()?;
            eprintln!("{}: {shards} shard(s)", receiver.name());
            let r = run(receiver, shards, &bodies, total, dir.path())?;
            let rate = total as f64 / r.drain.as_secs_f64();
            let base = *one.get_or_insert(rate);
            println!(
                "| {} | {shards} (seen {}) | {total} | {:.2} | {:.0} | {:.2} |",
                receiver.name(),
                r.shards_seen,
                r.drain.as_secs_f64(),
                rate,
                rate / base
            );
        }
    }
    println!(
        "\nload average at the end: {}",
        vigil_e2e::bench::load_average()
    );
    Ok(())
}
