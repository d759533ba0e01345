//! Ingestion benchmark: the same node-exporter-like workload pushed over
//! HTTP remote_write to `vigil serve` and to Prometheus 2.42
//! (`--web.enable-remote-write-receiver`) in one run. Prints one table:
//! samples/s accepted, bytes on disk per sample after compaction, peak RSS,
//! and the ratios.
//!
//! Run: `cargo run --release -p vigil-e2e --bin bench-ingest -- [SERIES] [SAMPLES_PER_SERIES]`
//! (defaults 10000 and 800: 8 M samples over 3 h 20 min at 15 s, long enough
//! for Prometheus to cut and compact its first 2 h block).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use vigil_e2e::bench::{
    Prometheus, dir_size, metric_value, peak_rss_bytes, push_concurrent, xorshift,
};
use vigil_e2e::{Collector, free_port, now_ms};
use vigil_wire::remote_write as rw;

const STEP_MS: i64 = 15_000;
const SENDERS: usize = 4;
const SERIES_PER_REQUEST: usize = 500;
const STEPS_PER_REQUEST: usize = 10;

/// One synthetic series: labels and a generator of realistic values.
struct SynthSeries {
    labels: Vec<rw::Label>,
    kind: Kind,
    seed: u64,
}

enum Kind {
    Counter { rate: f64 },
    Gauge { base: f64, amplitude: f64 },
    Constant(f64),
}

impl SynthSeries {
    fn value(&self, step: usize) -> f64 {
        let noise = (xorshift(self.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1000)
            as f64
            / 1000.0;
        match self.kind {
            // Counters advance by a rate with jitter, like CPU seconds.
            Kind::Counter { rate } => {
                (((step as f64) * rate * 15.0 + noise * rate) * 100.0).round() / 100.0
            }
            Kind::Gauge { base, amplitude } => {
                (base + amplitude * ((step as f64) / 40.0).sin() + noise * amplitude * 0.1).round()
            }
            Kind::Constant(v) => v,
        }
    }
}

fn workload(n_series: usize) -> Vec<SynthSeries> {
    let mut out = Vec::with_capacity(n_series);
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    let mut i = 0usize;
    while out.len() < n_series {
        let host = format!("host-{:04}:9100", i / 100);
        let label = |pairs: &[(&str, String)]| -> Vec<rw::Label> {
            let mut v: Vec<rw::Label> = pairs
                .iter()
                .map(|(n, v)| rw::Label {
                    name: n.to_string(),
                    value: v.clone(),
                })
                .collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        };
        let k = i % 100;
        let (labels, kind) = if k < 64 {
            (
                label(&[
                    ("__name__", "node_cpu_seconds_total".into()),
                    ("cpu", (k / 8).to_string()),
                    ("mode", modes[k % 8].into()),
                    ("instance", host.clone()),
                    ("job", "node".into()),
                ]),
                Kind::Counter {
                    rate: if k.is_multiple_of(8) {
                        0.9
                    } else {
                        0.02 * ((k % 8) as f64)
                    },
                },
            )
        } else if k < 80 {
            (
                label(&[
                    ("__name__", "node_network_receive_bytes_total".into()),
                    ("device", format!("eth{}", k - 64)),
                    ("instance", host.clone()),
                    ("job", "node".into()),
                ]),
                Kind::Counter { rate: 12_500.0 },
            )
        } else if k < 95 {
            (
                label(&[
                    ("__name__", "node_memory_bytes".into()),
                    ("kind", format!("k{}", k - 80)),
                    ("instance", host.clone()),
                    ("job", "node".into()),
                ]),
                Kind::Gauge {
                    base: 8e9,
                    amplitude: 1e8,
                },
            )
        } else {
            (
                label(&[
                    ("__name__", "node_filesystem_size_bytes".into()),
                    ("mountpoint", format!("/mnt/{}", k - 95)),
                    ("instance", host.clone()),
                    ("job", "node".into()),
                ]),
                Kind::Constant(5e11),
            )
        };
        out.push(SynthSeries {
            labels,
            kind,
            seed: xorshift(i as u64 + 1),
        });
        i += 1;
    }
    out
}

/// Pre-encoded request bodies per sender, in time order per series.
fn encode_requests(series: &[SynthSeries], samples: usize, start_ms: i64) -> Vec<Vec<Vec<u8>>> {
    let mut per_sender: Vec<Vec<Vec<u8>>> = vec![Vec::new(); SENDERS];
    let mut step = 0;
    while step < samples {
        let steps = (step..(step + STEPS_PER_REQUEST).min(samples)).collect::<Vec<_>>();
        for (chunk_idx, chunk) in series.chunks(SERIES_PER_REQUEST).enumerate() {
            let req = rw::WriteRequest {
                timeseries: chunk
                    .iter()
                    .map(|s| rw::TimeSeries {
                        labels: s.labels.clone(),
                        samples: steps
                            .iter()
                            .map(|&st| rw::Sample {
                                value: s.value(st),
                                timestamp: start_ms + st as i64 * STEP_MS,
                            })
                            .collect(),
                        exemplars: vec![],
                    })
                    .collect(),
                metadata: vec![],
            };
            per_sender[chunk_idx % SENDERS].push(rw::encode_write_request(&req));
        }
        step += STEPS_PER_REQUEST;
    }
    per_sender
}

struct Figures {
    samples_per_sec: f64,
    bytes_per_sample_chunks: f64,
    bytes_per_sample_disk: f64,
    peak_rss: u64,
}

fn bench_vigil(bodies: &Arc<Vec<Vec<Vec<u8>>>>, total: u64, dir: &Path) -> anyhow::Result<Figures> {
    let port = free_port();
    let data = dir.join("vigil");
    let mut vigil = Collector::start_on(&data, port, &[])?;
    let took = push_concurrent(&vigil.url("/api/v1/write"), bodies)?;
    let rss = peak_rss_bytes(vigil.proc.child.id());
    vigil.proc.terminate(Duration::from_secs(120))?;
    // Reopen to read the compacted figures after the shutdown flush.
    let mut vigil = Collector::start_on(&data, port, &[])?;
    let metrics = reqwest::blocking::get(vigil.url("/metrics"))?.text()?;
    let chunk_bytes = metric_value(&metrics, "vigil_tsdb_chunk_bytes").unwrap_or(0.0);
    let chunk_samples = metric_value(&metrics, "vigil_tsdb_chunk_samples").unwrap_or(0.0);
    vigil.proc.terminate(Duration::from_secs(60))?;
    let disk = dir_size(&data, &[]);
    Ok(Figures {
        samples_per_sec: total as f64 / took.as_secs_f64(),
        bytes_per_sample_chunks: if chunk_samples > 0.0 {
            chunk_bytes / chunk_samples
        } else {
            f64::NAN
        },
        bytes_per_sample_disk: disk as f64 / total as f64,
        peak_rss: rss,
    })
}

fn bench_prometheus(
    bodies: &Arc<Vec<Vec<Vec<u8>>>>,
    total: u64,
    dir: &Path,
) -> anyhow::Result<Figures> {
    let mut prom = Prometheus::start(dir)?;
    let took = push_concurrent(&prom.url("/api/v1/write"), bodies)?;
    // Prometheus cuts a 2 h block once its head spans 3 h; wait for it.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let m = prom.metrics()?;
        if metric_value(&m, "prometheus_tsdb_compactions_total").unwrap_or(0.0) >= 1.0 {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("warning: Prometheus did not compact within 4 minutes");
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let rss = peak_rss_bytes(prom.proc.child.id());
    prom.proc.terminate(Duration::from_secs(120))?;
    let data = &prom.data;
    // Blocks: chunks and index; samples from each block's meta.json.
    let (mut chunk_bytes, mut block_bytes, mut block_samples) = (0u64, 0u64, 0u64);
    for e in std::fs::read_dir(data)?.flatten() {
        let meta = e.path().join("meta.json");
        if let Ok(text) = std::fs::read_to_string(&meta) {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            block_samples += v["stats"]["numSamples"].as_u64().unwrap_or(0);
            chunk_bytes += dir_size(&e.path().join("chunks"), &[]);
            block_bytes += dir_size(&e.path(), &[]);
        }
    }
    let disk = dir_size(data, &[]);
    Ok(Figures {
        samples_per_sec: total as f64 / took.as_secs_f64(),
        bytes_per_sample_chunks: if block_samples > 0 {
            chunk_bytes as f64 / block_samples as f64
        } else {
            f64::NAN
        },
        bytes_per_sample_disk: if block_samples > 0 {
            block_bytes as f64 / block_samples as f64
        } else {
            disk as f64 / total as f64
        },
        peak_rss: rss,
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n_series: usize = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let samples: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(800);
    if !Path::new(vigil_e2e::bench::PROMETHEUS_BIN).exists() {
        anyhow::bail!("/usr/bin/prometheus is missing: apt-get install prometheus");
    }
    let total = (n_series * samples) as u64;
    eprintln!("generating {n_series} series × {samples} samples = {total} samples");
    let start_ms = (now_ms() / STEP_MS) * STEP_MS - samples as i64 * STEP_MS;
    let series = workload(n_series);
    let bodies = Arc::new(encode_requests(&series, samples, start_ms));
    let requests: usize = bodies.iter().map(Vec::len).sum();
    eprintln!("{requests} requests pre-encoded; pushing to Vigil");
    let dir = tempfile::tempdir().context("tempdir")?;
    let v = bench_vigil(&bodies, total, dir.path())?;
    // BENCH_KEEP_VIGIL=DIR keeps a copy of Vigil's data directory for
    // inspection (e.g. `sqlite3 DIR/tsdb/vigil-tsdb.sqlite` with dbstat).
    if let Some(keep) = std::env::var_os("BENCH_KEEP_VIGIL") {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(dir.path().join("vigil"))
            .arg(&keep)
            .status()
            .context("copying Vigil's data directory")?;
        if !status.success() {
            anyhow::bail!("cp -a of Vigil's data directory failed");
        }
    }
    eprintln!("pushing to Prometheus");
    let p = bench_prometheus(&bodies, total, dir.path())?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "| {n_series} series × {samples} samples ({total} samples) | Vigil | Prometheus 2.42 | Vigil / Prometheus |"
    );
    println!("|---|---|---|---|");
    println!(
        "| ingestion (samples/s, higher is better) | {:.0} | {:.0} | {:.2} |",
        v.samples_per_sec,
        p.samples_per_sec,
        v.samples_per_sec / p.samples_per_sec
    );
    println!(
        "| bytes/sample in chunks | {:.3} | {:.3} | {:.2} |",
        v.bytes_per_sample_chunks,
        p.bytes_per_sample_chunks,
        v.bytes_per_sample_chunks / p.bytes_per_sample_chunks
    );
    println!(
        "| bytes/sample on disk (with index) | {:.3} | {:.3} | {:.2} |",
        v.bytes_per_sample_disk,
        p.bytes_per_sample_disk,
        v.bytes_per_sample_disk / p.bytes_per_sample_disk
    );
    println!(
        "| peak RSS (MiB) | {:.1} | {:.1} | {:.2} |",
        mib(v.peak_rss),
        mib(p.peak_rss),
        v.peak_rss as f64 / p.peak_rss as f64
    );
    Ok(())
}
