//! Ingestion benchmark: the same workload pushed over HTTP remote_write to
//! `vigil serve`, to Prometheus 2.42 (`--web.enable-remote-write-receiver`)
//! and to VictoriaMetrics 1.79 in one run. Prints one table: samples/s
//! accepted, bytes on disk per sample, peak RSS, and the ratios.
//!
//! Run: `cargo run --release -p vigil-e2e --bin bench-ingest -- [SERIES] [SAMPLES_PER_SERIES] [--values rounded|full] [--no-prometheus]`
//! (defaults 10000 and 800: 8 M samples over 3 h 20 min at 15 s, long enough
//! for Prometheus to cut and compact its first 2 h block).
//!
//! `--values rounded` (default): counters and gauges carry two decimals, as
//! real CPU seconds, byte counters and load averages do. `--values full`:
//! full-precision random noise on every counter and gauge (53 random bits
//! per value; VictoriaMetrics keeps about 12 significant digits of those,
//! Vigil every bit, so the densities are not comparable there).
//!
//! Real exporter data: `--record-corpus FILE [--minutes 15]` starts the
//! node, PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) exporters
//! from Debian's packages, scrapes each every second as Prometheus would
//! (adding `job`, `instance` and `up`) and writes every scrape to FILE;
//! `--corpus FILE` replays it (timestamps shifted to end a minute ago, one
//! sender per exporter, scrapes in order) instead of the synthetic series.
//!
//! `--rounds N` (default 1) benchmarks Vigil and VictoriaMetrics N times
//! each, alternating which goes first, and reports each figure's median and
//! the per-round ratios: on a shared, noisy machine one round's ratio says
//! little. Prometheus runs once.
//!
//! `--push URL` only pushes the workload to an already running receiver's
//! remote_write URL and prints the rate: for profiling a `vigil serve`
//! started by hand under `valgrind --tool=callgrind` or `perf record`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use vigil_e2e::bench::{
    Prometheus, VictoriaMetrics, cpu_seconds, dir_size, metric_value, peak_rss_bytes,
    push_concurrent, xorshift,
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

/// How much precision the synthetic values carry.
#[derive(Clone, Copy, PartialEq)]
enum Values {
    /// Two decimals, as real counters and gauges.
    Rounded,
    /// Full-precision noise in every counter and gauge.
    Full,
}

impl SynthSeries {
    fn value(&self, step: usize, values: Values) -> f64 {
        let r = xorshift(self.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let noise = match values {
            Values::Rounded => (r % 1000) as f64 / 1000.0,
            Values::Full => (r >> 11) as f64 / (1u64 << 53) as f64,
        };
        let v = match self.kind {
            // Counters advance by a rate with jitter, like CPU seconds.
            Kind::Counter { rate } => (step as f64) * rate * 15.0 + noise * rate,
            Kind::Gauge { base, amplitude } => {
                base + amplitude * ((step as f64) / 40.0).sin() + noise * amplitude * 0.1
            }
            Kind::Constant(v) => return v,
        };
        match values {
            Values::Rounded => (v * 100.0).round() / 100.0,
            Values::Full => v,
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
fn encode_requests(
    series: &[SynthSeries],
    samples: usize,
    start_ms: i64,
    values: Values,
) -> Vec<Vec<Vec<u8>>> {
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
                                value: s.value(st, values),
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
    /// Samples the peer counts as stored (to check nothing was dropped).
    stored_samples: f64,
    bytes_per_sample_chunks: f64,
    bytes_per_sample_disk: f64,
    peak_rss: u64,
    /// CPU seconds the receiver used for the push, per million samples.
    cpu_per_msample: f64,
}

fn bench_vigil(bodies: &Arc<Vec<Vec<Vec<u8>>>>, total: u64, dir: &Path) -> anyhow::Result<Figures> {
    let port = free_port();
    let data = dir.join("vigil");
    let mut vigil = Collector::start_on(&data, port, &[])?;
    let cpu_before = cpu_seconds(vigil.proc.child.id());
    let took = push_concurrent(&vigil.url("/api/v1/write"), bodies)?;
    let cpu = cpu_seconds(vigil.proc.child.id()) - cpu_before;
    let rss = peak_rss_bytes(vigil.proc.child.id());
    vigil.proc.terminate(Duration::from_secs(120))?;
    // Reopen to read the compacted figures after the shutdown flush.
    let mut vigil = Collector::start_on(&data, port, &[])?;
    let metrics = reqwest::blocking::get(vigil.url("/metrics"))?.text()?;
    let chunk_bytes = metric_value(&metrics, "vigil_tsdb_chunk_bytes").unwrap_or(0.0);
    let chunk_samples = metric_value(&metrics, "vigil_tsdb_chunk_samples").unwrap_or(0.0);
    vigil.proc.terminate(Duration::from_secs(60))?;
    // The store's directory: database file (series, chunks, index) and
    // SQLite's WAL file, which the shutdown flush truncates.
    let disk = dir_size(&data.join("tsdb"), &[]);
    Ok(Figures {
        samples_per_sec: total as f64 / took.as_secs_f64(),
        stored_samples: chunk_samples,
        bytes_per_sample_chunks: if chunk_samples > 0.0 {
            chunk_bytes / chunk_samples
        } else {
            f64::NAN
        },
        bytes_per_sample_disk: disk as f64 / total as f64,
        peak_rss: rss,
        cpu_per_msample: cpu / (total as f64 / 1e6),
    })
}

fn bench_prometheus(
    bodies: &Arc<Vec<Vec<Vec<u8>>>>,
    total: u64,
    dir: &Path,
) -> anyhow::Result<Figures> {
    let mut prom = Prometheus::start(dir)?;
    let cpu_before = cpu_seconds(prom.proc.child.id());
    let took = push_concurrent(&prom.url("/api/v1/write"), bodies)?;
    let cpu = cpu_seconds(prom.proc.child.id()) - cpu_before;
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
    Ok(Figures {
        samples_per_sec: total as f64 / took.as_secs_f64(),
        stored_samples: block_samples as f64,
        bytes_per_sample_chunks: if block_samples > 0 {
            chunk_bytes as f64 / block_samples as f64
        } else {
            f64::NAN
        },
        // Only blocks are comparable (the head lives in its wal): with no
        // block, there is no figure.
        bytes_per_sample_disk: if block_samples > 0 {
            block_bytes as f64 / block_samples as f64
        } else {
            f64::NAN
        },
        peak_rss: rss,
        cpu_per_msample: cpu / (total as f64 / 1e6),
    })
}

fn bench_victoria_metrics(
    bodies: &Arc<Vec<Vec<Vec<u8>>>>,
    total: u64,
    dir: &Path,
) -> anyhow::Result<Figures> {
    let mut vm = VictoriaMetrics::start(dir)?;
    let cpu_before = cpu_seconds(vm.proc.child.id());
    let took = push_concurrent(&vm.url("/api/v1/write"), bodies)?;
    // VictoriaMetrics answers before rows are stored; its counter says
    // when all of them are, and the CPU they cost counts up to there.
    let stored = vm.wait_rows_stored(total, Duration::from_secs(120))?;
    let cpu = cpu_seconds(vm.proc.child.id()) - cpu_before;
    let rss = peak_rss_bytes(vm.proc.child.id());
    // SIGTERM flushes in-memory parts to disk before exiting.
    vm.proc.terminate(Duration::from_secs(120))?;
    let disk = vm.stored_bytes();
    Ok(Figures {
        samples_per_sec: total as f64 / took.as_secs_f64(),
        stored_samples: stored,
        bytes_per_sample_chunks: f64::NAN,
        bytes_per_sample_disk: disk as f64 / total as f64,
        peak_rss: rss,
        cpu_per_msample: cpu / (total as f64 / 1e6),
    })
}

/// The corpus file: one record per scrape, `u32` little-endian length then
/// a snappy-compressed remote_write body holding that scrape's samples, and
/// a `u8` exporter index (0 node, 1 PostgreSQL, 2 Redis) before each record.
const EXPORTERS: [&str; 3] = ["node", "postgres", "redis"];

fn record_corpus(path: &Path, minutes: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    use vigil_e2e::{Proc, wait_ready};
    let bins = [
        "/usr/bin/prometheus-node-exporter",
        "/usr/bin/prometheus-postgres-exporter",
        "/usr/bin/prometheus-redis-exporter",
    ];
    for b in bins {
        if !Path::new(b).exists() {
            anyhow::bail!(
                "{b} is missing: apt-get install prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter (tests/run.sh does)"
            );
        }
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _node = Proc::spawn(
        "node_exporter",
        Command::new(bins[0])
            .arg(format!("--web.listen-address=127.0.0.1:{}", ports[0]))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let _pg = Proc::spawn(
        "postgres_exporter",
        Command::new(bins[1])
            .arg(format!("--web.listen-address=127.0.0.1:{}", ports[1]))
            .env(
                "DATA_SOURCE_NAME",
                "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let _redis = Proc::spawn(
        "redis_exporter",
        Command::new(bins[2])
            .arg(format!("-web.listen-address=127.0.0.1:{}", ports[2]))
            .arg("-redis.addr=redis://127.0.0.1:6379")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    for p in &ports {
        wait_ready(
            &format!("http://127.0.0.1:{p}/metrics"),
            Duration::from_secs(30),
        )?;
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let limits = vigil_wire::labels::LabelLimits::default();
    let started = Instant::now();
    let scrapes = minutes * 60;
    let mut samples = 0usize;
    for i in 0..scrapes {
        // Every second on the second after the start, as Prometheus spreads
        // its scrapes over fixed offsets.
        let due = started + Duration::from_secs(i);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for (k, port) in ports.iter().enumerate() {
            let instance = format!("127.0.0.1:{port}");
            let ts = now_ms();
            let t0 = Instant::now();
            let body = client
                .get(format!("http://{instance}/metrics"))
                .send()
                .and_then(|r| r.text());
            let took = t0.elapsed().as_secs_f64();
            let mut series: Vec<rw::TimeSeries> = Vec::new();
            let mut up = 0.0;
            if let Ok(text) = body
                && let Ok(exp) = vigil_wire::exposition::parse(&text, &limits)
            {
                up = 1.0;
                for s in exp.samples {
                    let mut labels: Vec<rw::Label> = s
                        .labels
                        .iter()
                        .filter(|l| l.name != "job" && l.name != "instance")
                        .map(|l| rw::Label {
                            name: l.name.clone(),
                            value: l.value.clone(),
                        })
                        .collect();
                    labels.push(rw::Label {
                        name: "job".into(),
                        value: EXPORTERS[k].into(),
                    });
                    labels.push(rw::Label {
                        name: "instance".into(),
                        value: instance.clone(),
                    });
                    labels.sort_by(|a, b| a.name.cmp(&b.name));
                    series.push(rw::TimeSeries {
                        labels,
                        samples: vec![rw::Sample {
                            value: s.value,
                            timestamp: s.timestamp_ms.unwrap_or(ts),
                        }],
                        exemplars: vec![],
                    });
                }
            }
            let n_scraped = series.len() as f64;
            for (name, v) in [
                ("up", up),
                ("scrape_duration_seconds", took),
                ("scrape_samples_scraped", n_scraped),
            ] {
                series.push(rw::TimeSeries {
                    labels: vec![
                        rw::Label {
                            name: "__name__".into(),
                            value: name.into(),
                        },
                        rw::Label {
                            name: "instance".into(),
                            value: instance.clone(),
                        },
                        rw::Label {
                            name: "job".into(),
                            value: EXPORTERS[k].into(),
                        },
                    ],
                    samples: vec![rw::Sample {
                        value: v,
                        timestamp: ts,
                    }],
                    exemplars: vec![],
                });
            }
            samples += series.len();
            let body = rw::encode_write_request(&rw::WriteRequest {
                timeseries: series,
                metadata: vec![],
            });
            out.write_all(&[k as u8])?;
            out.write_all(&(body.len() as u32).to_le_bytes())?;
            out.write_all(&body)?;
        }
        if i % 60 == 59 {
            eprintln!("{} s recorded, {samples} samples", i + 1);
        }
    }
    out.flush()?;
    eprintln!(
        "corpus {}: {scrapes} scrapes of 3 exporters, {samples} samples",
        path.display()
    );
    Ok(())
}

/// Reads a corpus and re-encodes it with timestamps shifted to end a minute
/// ago: one sender per exporter, its scrapes in order. Returns the bodies
/// and the number of samples.
fn load_corpus(path: &Path) -> anyhow::Result<(Vec<Vec<Vec<u8>>>, u64)> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reqs: Vec<(usize, rw::WriteRequest)> = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let k = usize::from(raw[pos]);
        let len_bytes: [u8; 4] = raw
            .get(pos + 1..pos + 5)
            .and_then(|b| b.try_into().ok())
            .context("corpus record header cut short")?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let body = raw
            .get(pos + 5..pos + 5 + len)
            .context("corpus record cut short")?;
        pos += 5 + len;
        let req = rw::decode_write_request(body, 512 << 20)
            .map_err(|e| anyhow::anyhow!("corpus record at byte {pos}: {e}"))?;
        anyhow::ensure!(k < EXPORTERS.len(), "corpus exporter index {k}");
        reqs.push((k, req));
    }
    let newest = reqs
        .iter()
        .flat_map(|(_, r)| r.timeseries.iter().flat_map(|s| s.samples.iter()))
        .map(|s| s.timestamp)
        .max()
        .context("empty corpus")?;
    let shift = now_ms() - 60_000 - newest;
    let mut per_sender = vec![Vec::new(); EXPORTERS.len()];
    let mut total = 0u64;
    for (k, mut req) in reqs {
        for ts in &mut req.timeseries {
            for s in &mut ts.samples {
                s.timestamp += shift;
                total += 1;
            }
        }
        per_sender[k].push(rw::encode_write_request(&req));
    }
    Ok((per_sender, total))
}

fn arg_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(path) = arg_value(&args, "--record-corpus") {
        let minutes = arg_value(&args, "--minutes")
            .map(|m| m.parse())
            .transpose()?
            .unwrap_or(15);
        return record_corpus(Path::new(&path), minutes);
    }
    let flags_with_value = ["--values", "--corpus", "--push", "--rounds"];
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            let after_flag = *i > 0 && flags_with_value.contains(&args[i - 1].as_str());
            !a.starts_with("--") && !after_flag
        })
        .map(|(_, a)| a)
        .collect();
    let n_series: usize = positional
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let samples: usize = positional
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(800);
    let values = match arg_value(&args, "--values").as_deref() {
        None | Some("rounded") => Values::Rounded,
        Some("full") => Values::Full,
        Some(other) => anyhow::bail!("--values {other}: expected rounded or full"),
    };
    let with_prometheus = !args.iter().any(|a| a == "--no-prometheus");
    if with_prometheus && !Path::new(vigil_e2e::bench::PROMETHEUS_BIN).exists() {
        anyhow::bail!("/usr/bin/prometheus is missing: apt-get install prometheus");
    }
    let corpus = arg_value(&args, "--corpus");
    let (bodies, total, workload_name) = match &corpus {
        Some(path) => {
            let (bodies, total) = load_corpus(Path::new(path))?;
            (bodies, total, format!("exporter corpus ({total} samples)"))
        }
        None => {
            let total = (n_series * samples) as u64;
            eprintln!("generating {n_series} series × {samples} samples = {total} samples");
            let start_ms = (now_ms() / STEP_MS) * STEP_MS - samples as i64 * STEP_MS;
            let series = workload(n_series);
            let kind = match values {
                Values::Rounded => "2 decimals",
                Values::Full => "full precision",
            };
            (
                encode_requests(&series, samples, start_ms, values),
                total,
                format!("{n_series} series × {samples} samples, {kind} ({total} samples)"),
            )
        }
    };
    let bodies = Arc::new(bodies);
    if let Some(url) = arg_value(&args, "--push") {
        let took = push_concurrent(&url, &bodies)?;
        println!(
            "{workload_name}: pushed in {:.2} s, {:.0} samples/s",
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64()
        );
        return Ok(());
    }
    let requests: usize = bodies.iter().map(Vec::len).sum();
    let rounds: usize = arg_value(&args, "--rounds")
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(1)
        .max(1);
    eprintln!("{requests} requests pre-encoded; {rounds} round(s)");
    let dir = tempfile::tempdir().context("tempdir")?;
    // On a shared machine, load that comes and goes favours whichever
    // receiver it spares: rounds alternate which one goes first, and the
    // table shows each figure's median over the rounds.
    let (mut vigil_rounds, mut vm_rounds) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for vigil_turn in [round % 2 == 0, round % 2 == 1] {
            if vigil_turn {
                eprintln!("round {}: pushing to Vigil", round + 1);
                vigil_rounds.push(bench_vigil(&bodies, total, dir.path())?);
                // BENCH_KEEP_VIGIL=DIR keeps a copy of Vigil's data directory
                // for inspection (e.g. `sqlite3 DIR/tsdb/vigil-tsdb.sqlite`
                // with dbstat).
                if let Some(keep) = std::env::var_os("BENCH_KEEP_VIGIL")
                    && round == 0
                {
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
                std::fs::remove_dir_all(dir.path().join("vigil")).ok();
            } else {
                eprintln!("round {}: pushing to VictoriaMetrics", round + 1);
                vm_rounds.push(bench_victoria_metrics(&bodies, total, dir.path())?);
                std::fs::remove_dir_all(dir.path().join("vm")).ok();
            }
        }
    }
    let per_round = |f: fn(&Figures) -> f64| -> String {
        vigil_rounds
            .iter()
            .zip(&vm_rounds)
            .map(|(v, m)| format!("{:.2}", f(v) / f(m)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Each receiver's own rate per round too, so a low ratio shows whose
    // round it was.
    let rates = |rs: &[Figures]| -> String {
        rs.iter()
            .map(|f| format!("{:.2}", f.samples_per_sec / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let round_ratios = (rounds > 1).then(|| {
        (
            per_round(|f| f.samples_per_sec),
            per_round(|f| f.peak_rss as f64),
            rates(&vigil_rounds),
            rates(&vm_rounds),
        )
    });
    let v = median_figures(&vigil_rounds);
    let m = median_figures(&vm_rounds);
    let p = if with_prometheus {
        eprintln!("pushing to Prometheus");
        Some(bench_prometheus(&bodies, total, dir.path())?)
    } else {
        None
    };
    // Prometheus's count covers its blocks only (the head is not counted).
    for (name, f) in [("Vigil", Some(&v)), ("VictoriaMetrics", Some(&m))] {
        if let Some(f) = f
            && f.stored_samples.is_finite()
            && f.stored_samples > 0.0
            && (f.stored_samples - total as f64).abs() > 0.5
        {
            eprintln!(
                "note: {name} counts {} stored samples of {total} sent",
                f.stored_samples
            );
        }
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let na = |x: f64| {
        if x.is_finite() {
            format!("{x:.3}")
        } else {
            "n/a".into()
        }
    };
    let ratio = |a: f64, b: f64| {
        if a.is_finite() && b.is_finite() && b != 0.0 {
            format!("{:.2}", a / b)
        } else {
            "n/a".into()
        }
    };
    let pf = |f: fn(&Figures) -> f64| p.as_ref().map_or(f64::NAN, f);
    println!(
        "| {workload_name} | Vigil | VictoriaMetrics 1.79 | Prometheus 2.42 | Vigil / VictoriaMetrics | Vigil / Prometheus |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| ingestion (samples/s, higher is better) | {:.0} | {:.0} | {} | {} | {} |",
        v.samples_per_sec,
        m.samples_per_sec,
        p.as_ref()
            .map_or("n/a".into(), |p| format!("{:.0}", p.samples_per_sec)),
        ratio(v.samples_per_sec, m.samples_per_sec),
        ratio(v.samples_per_sec, pf(|f| f.samples_per_sec)),
    );
    println!(
        "| bytes/sample in chunks | {} | n/a | {} | n/a | {} |",
        na(v.bytes_per_sample_chunks),
        na(pf(|f| f.bytes_per_sample_chunks)),
        ratio(v.bytes_per_sample_chunks, pf(|f| f.bytes_per_sample_chunks)),
    );
    // A row of a figure all three receivers have.
    let row = |name: &str, f: fn(&Figures) -> f64| {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            na(f(&v)),
            na(f(&m)),
            na(pf(f)),
            ratio(f(&v), f(&m)),
            ratio(f(&v), pf(f)),
        );
    };
    row(
        "bytes/sample on disk (Vigil `tsdb/`; VM `data/`+`indexdb/`; Prometheus blocks)",
        |f| f.bytes_per_sample_disk,
    );
    println!(
        "| peak RSS (MiB) | {:.1} | {:.1} | {} | {} | {} |",
        mib(v.peak_rss),
        mib(m.peak_rss),
        p.as_ref()
            .map_or("n/a".into(), |p| format!("{:.1}", mib(p.peak_rss))),
        ratio(v.peak_rss as f64, m.peak_rss as f64),
        ratio(v.peak_rss as f64, pf(|f| f.peak_rss as f64)),
    );
    row(
        "receiver CPU seconds per million samples (lower is better)",
        |f| f.cpu_per_msample,
    );
    if let Some((ingest, rss, vigil_rates, vm_rates)) = round_ratios {
        println!();
        println!(
            "Vigil / VictoriaMetrics per round (the table shows medians over {rounds} rounds): ingestion {ingest}; peak RSS {rss}"
        );
        println!(
            "Ingestion per round, million samples/s: Vigil {vigil_rates}; VictoriaMetrics {vm_rates}"
        );
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Each figure's median over the rounds of one receiver.
fn median_figures(rounds: &[Figures]) -> Figures {
    let of = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect());
    Figures {
        samples_per_sec: of(|f| f.samples_per_sec),
        stored_samples: of(|f| f.stored_samples),
        bytes_per_sample_chunks: of(|f| f.bytes_per_sample_chunks),
        bytes_per_sample_disk: of(|f| f.bytes_per_sample_disk),
        peak_rss: of(|f| f.peak_rss as f64) as u64,
        cpu_per_msample: of(|f| f.cpu_per_msample),
    }
}
