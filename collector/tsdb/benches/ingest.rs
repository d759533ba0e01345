//! Ingest micro-benchmark on a node-exporter-like synthetic workload.
//!
//! `cargo bench -p vigil-tsdb --bench ingest` (env: `HOSTS`, default 20, at
//! 500 series each; `SCRAPES`, default 240 = 1 h at 15 s; `JITTER_MS`,
//! default 2: scrape timestamps wander by up to ± this; `THREADS`, default
//! 4 concurrent writers). Prints append throughput, bytes per sample in
//! chunks and on disk, query time and peak memory.

use std::sync::Arc;
use std::time::Instant;

use vigil_tsdb::{Db, Options, SeriesSamples};
use vigil_wire::{Labels, Matcher, Sample};

const SERIES_PER_HOST: usize = 500;
const INTERVAL_MS: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny deterministic PRNG (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// CPU seconds: 2-decimal floats growing by about `rate` per scrape.
    CpuCounter(f64),
    /// Byte/packet counters: integers growing by about `rate` per scrape (0 = idle device).
    IntCounter(u64),
    /// Memory-like gauges: integer random walk in 4 KiB pages.
    PageGauge,
    /// Sizes, boot time, info metrics: never change.
    Constant,
    /// Load averages and ratios: 2-decimal random walk.
    FloatGauge,
}

struct Series {
    labels: Labels,
    kind: Kind,
    value: f64,
}

fn host_series(host: usize, rng: &mut Rng) -> Vec<Series> {
    let inst = format!("host{host:03}:9100");
    let mut out = Vec::with_capacity(SERIES_PER_HOST);
    let mut push = |name: &str, extra: &[(&str, String)], kind: Kind, value: f64| {
        let mut pairs = vec![
            ("__name__".to_string(), name.to_string()),
            ("instance".to_string(), inst.clone()),
            ("job".to_string(), "node".to_string()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        out.push(Series {
            labels: Labels::from_pairs(pairs),
            kind,
            value,
        });
    };
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    for cpu in 0..8 {
        for (m, mode) in modes.iter().enumerate() {
            let rate = [13.5, 1.0, 0.4, 0.05, 0.0, 0.02, 0.0, 0.01][m];
            push(
                "node_cpu_seconds_total",
                &[("cpu", cpu.to_string()), ("mode", mode.to_string())],
                Kind::CpuCounter(rate),
                (rng.below(10_000_000) as f64) / 100.0,
            );
        }
    }
    for d in 0..150 {
        let rate = [0, 0, 0, 1, 12, 300, 4096 * 25, 1_500_000][d % 8];
        push(
            "node_network_receive_bytes_total",
            &[("device", format!("eth{d}"))],
            Kind::IntCounter(rate),
            rng.below(1 << 40) as f64,
        );
    }
    for g in 0..100 {
        push(
            "node_memory_bytes",
            &[("field", format!("f{g}"))],
            Kind::PageGauge,
            (rng.below(1 << 22) * 4096) as f64,
        );
    }
    for c in 0..150 {
        push(
            "node_filesystem_size_bytes",
            &[("mountpoint", format!("/m{c}"))],
            Kind::Constant,
            (rng.below(1 << 30) * 4096) as f64,
        );
    }
    for f in 0..(SERIES_PER_HOST - 64 - 150 - 100 - 150) {
        push(
            "node_load",
            &[("window", format!("w{f}"))],
            Kind::FloatGauge,
            rng.below(800) as f64 / 100.0,
        );
    }
    out
}

fn step(s: &mut Series, rng: &mut Rng) {
    s.value = match s.kind {
        Kind::CpuCounter(rate) => {
            let jitter = (rng.below(21) as f64 - 10.0) / 100.0 * rate;
            ((s.value + rate + jitter) * 100.0).round() / 100.0
        }
        Kind::IntCounter(0) => s.value,
        Kind::IntCounter(rate) => s.value + (rate / 2 + rng.below(rate + 1)) as f64,
        Kind::PageGauge => {
            if rng.below(3) == 0 {
                s.value
            } else {
                (s.value + (rng.below(200) as f64 - 100.0) * 4096.0).max(0.0)
            }
        }
        Kind::Constant => s.value,
        Kind::FloatGauge => {
            ((s.value + (rng.below(11) as f64 - 5.0) / 100.0).max(0.0) * 100.0).round() / 100.0
        }
    };
}

/// User + system CPU seconds this process has used (from /proc, 100 Hz ticks).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Writes every sample as OpenMetrics text, grouped by metric family as the
/// format requires, so Prometheus can store the identical data.
fn write_openmetrics(path: &str, mut series: Vec<(Labels, Vec<Sample>)>) {
    use std::io::Write;
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series.sort_by(|a, b| a.0.metric_name().cmp(&b.0.metric_name()));
    let file = std::fs::File::create(path).expect("create dump");
    let mut w = std::io::BufWriter::new(file);
    for (labels, samples) in &series {
        let name = labels.metric_name().unwrap_or("");
        let rest: Vec<String> = labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| format!("{}=\"{}\"", l.name, l.value))
            .collect();
        let rest = rest.join(",");
        for s in samples {
            let t = s.timestamp_ms;
            writeln!(
                w,
                "{name}{{{rest}}} {} {}.{:03}",
                s.value,
                t / 1000,
                t % 1000
            )
            .expect("write dump");
        }
    }
    writeln!(w, "# EOF").expect("write dump");
}

/// `(bytes in used pages, bytes in free pages)` of the database file.
fn page_usage(path: &std::path::Path) -> (u64, u64) {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let q = |p: &str| -> u64 {
        conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0))
            .expect("pragma") as u64
    };
    let (pages, free, size) = (q("page_count"), q("freelist_count"), q("page_size"));
    ((pages - free) * size, free * size)
}

fn main() {
    let hosts = env("HOSTS", 20) as usize;
    let scrapes = env("SCRAPES", 240) as i64;
    let jitter = env("JITTER_MS", 2) as i64;
    let threads = env("THREADS", 4) as usize;
    let dump_path = std::env::var("OPENMETRICS_OUT").ok();
    let dumping = dump_path.is_some();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));

    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let handles: Vec<_> = (0..threads)
        .map(|th| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (th as u64 + 1));
                let mine: Vec<usize> = (0..hosts).filter(|h| h % threads == th).collect();
                let mut all: Vec<Vec<Series>> =
                    mine.iter().map(|&h| host_series(h, &mut rng)).collect();
                let mut samples = 0u64;
                let mut dump: Vec<(Labels, Vec<Sample>)> = Vec::new();
                if dumping {
                    dump = all
                        .iter()
                        .flatten()
                        .map(|s| (s.labels.clone(), Vec::new()))
                        .collect();
                }
                for i in 0..scrapes {
                    for (k, series) in all.iter_mut().enumerate() {
                        // One scrape of one host: one timestamp, jittered.
                        let offset = (mine[k] as i64 * 397) % INTERVAL_MS;
                        let j = if jitter > 0 {
                            rng.below(2 * jitter as u64 + 1) as i64 - jitter
                        } else {
                            0
                        };
                        let t = T0 + i * INTERVAL_MS + offset + j;
                        let batch: Vec<SeriesSamples> = series
                            .iter_mut()
                            .map(|s| {
                                step(s, &mut rng);
                                SeriesSamples {
                                    labels: s.labels.clone(),
                                    samples: vec![Sample::new(t, s.value)],
                                }
                            })
                            .collect();
                        if dumping {
                            // Every host has SERIES_PER_HOST series, flattened in order.
                            let base = k * SERIES_PER_HOST;
                            for (n, b) in batch.iter().enumerate() {
                                dump[base + n].1.extend_from_slice(&b.samples);
                            }
                        }
                        let out = db.append(batch, t).expect("append");
                        samples += out.accepted;
                    }
                }
                (samples, dump)
            })
        })
        .collect();
    let mut total = 0u64;
    let mut dumped: Vec<(Labels, Vec<Sample>)> = Vec::new();
    for h in handles {
        let (n, d) = h.join().expect("writer thread");
        total += n;
        dumped.extend(d);
    }
    let append_secs = started.elapsed().as_secs_f64();
    let append_cpu = cpu_seconds() - cpu_started;
    let before_flush = db.stats();

    let flush_started = Instant::now();
    db.flush().expect("flush");
    let flush_secs = flush_started.elapsed().as_secs_f64();
    let stats = db.stats();

    let q = Instant::now();
    let got = db
        .select(
            &[Matcher::equal("__name__", "node_cpu_seconds_total")],
            T0,
            T0 + scrapes * INTERVAL_MS,
        )
        .expect("select");
    let q_samples: usize = got.iter().map(|s| s.samples.len()).sum();
    let q_secs = q.elapsed().as_secs_f64();

    println!(
        "workload: {hosts} hosts x {SERIES_PER_HOST} series x {scrapes} scrapes, jitter ±{jitter} ms, {threads} writer threads"
    );
    println!("samples appended:   {total}");
    println!(
        "append throughput:  {:.0} samples/s ({append_secs:.2} s)",
        total as f64 / append_secs
    );
    println!(
        "append CPU time:    {append_cpu:.2} s user+sys, {:.0} samples per CPU-second (includes generating the data; robust on a busy machine)",
        total as f64 / append_cpu.max(0.01)
    );
    println!(
        "commits:            {} ({:.0} samples/commit, mean {:.2} ms)",
        before_flush.commits_total,
        total as f64 / before_flush.commits_total.max(1) as f64,
        1000.0 * before_flush.commit_seconds_sum / before_flush.commits_total.max(1) as f64
    );
    println!(
        "chunks:             {} chunks, {} samples, {:.3} bytes/sample",
        stats.chunk_count,
        stats.chunk_samples,
        stats.chunk_bytes as f64 / stats.chunk_samples.max(1) as f64
    );
    println!(
        "database file:      {} bytes, {:.3} bytes/sample (with index, series, free pages)",
        stats.db_file_bytes,
        stats.db_file_bytes as f64 / stats.chunk_samples.max(1) as f64
    );
    let db_path = db.path().to_path_buf();
    let (used, free) = page_usage(&db_path);
    let wal_file = std::fs::metadata(format!("{}-wal", db_path.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  of which:          {used} bytes in used pages ({:.3} bytes/sample), {free} bytes in free pages, {wal_file} bytes SQLite WAL file",
        used as f64 / stats.chunk_samples.max(1) as f64
    );
    println!("flush:              {flush_secs:.2} s");
    println!(
        "select cpu series:  {} series, {q_samples} samples in {:.1} ms",
        got.len(),
        q_secs * 1000.0
    );
    println!("peak RSS:           {} MiB", peak_rss_kib() / 1024);
    if let Some(path) = dump_path {
        write_openmetrics(&path, dumped);
        println!(
            "wrote the same samples as OpenMetrics to {path} (for promtool tsdb create-blocks-from openmetrics)"
        );
    }
}
