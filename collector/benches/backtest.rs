//! `vigil backtest` at the size issue 15 asks for: 100 rules over 1,000
//! series and 7 days at a 1-minute step, read from a data directory.
//!
//! ```text
//! cargo bench -p vigil --bench backtest
//! # knobs: SERIES=1000 RULES=100 DAYS=7
//! ```
//!
//! The data (half gauges with rare spikes, half counters) is written once
//! into a temporary data directory with the store's own writer; the timed
//! part is the release `vigil backtest` binary from start to exit, so
//! opening the snapshot, range evaluation, the alert state machine and
//! printing the JSON lines all count. It prints the wall time, the
//! transitions found and the rate in series-steps per second.

use std::process::{Command, Stdio};
use std::time::Instant;

use vigil_tsdb::{Db, Options, SeriesSamples};
use vigil_wire::{Labels, Sample};

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

/// One rule of four kinds, with thresholds that real rules would have:
/// crossed rarely (spikes, a slow average drifting high), not flapping.
fn rule(j: usize) -> String {
    let t = 90 + (j % 10);
    match j % 4 {
        0 => format!(
            "      - alert: ValueHigh{j}\n        expr: bench_value > {t}\n        for: 5m\n"
        ),
        1 => format!(
            "      - alert: ValueAvgHigh{j}\n        expr: avg_over_time(bench_value[5m]) > {}\n        for: 10m\n        keep_firing_for: 5m\n",
            t - 35
        ),
        2 => format!(
            "      - alert: RateHigh{j}\n        expr: rate(bench_requests_total[5m]) > {}\n        for: 2m\n",
            5 + j % 10
        ),
        _ => format!("      - alert: JobMax{j}\n        expr: max by (job) (bench_value) > {t}\n"),
    }
}

/// User + system CPU time of the waited-for children (`cutime` and
/// `cstime` of /proc/self/stat), so a busy shared machine's wall clock
/// does not hide the command's own cost.
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; cutime and cstime are
    // the 16th and 17th fields of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Linux reports these in USER_HZ, 100 on every architecture it supports.
    (ticks(13) + ticks(14)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let series = knob("SERIES", 1000);
    let rules = knob("RULES", 100);
    let days = knob("DAYS", 7);
    let minutes = days * 24 * 60;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let now = chrono::Utc::now().timestamp_millis() / 60_000 * 60_000;
    let start = now - minutes as i64 * 60_000;

    let started = Instant::now();
    {
        let db = Db::open(
            &data.join("tsdb"),
            Options {
                retention: std::time::Duration::from_secs((days as u64 + 2) * 86_400),
                ..Options::default()
            },
        )?;
        let labels: Vec<Labels> = (0..series)
            .map(|i| {
                let name = if i % 2 == 0 {
                    "bench_value"
                } else {
                    "bench_requests_total"
                };
                Labels::from_pairs([
                    ("__name__", name.to_string()),
                    ("instance", format!("host-{i}")),
                    ("job", format!("job-{}", i % 10)),
                ])
            })
            .collect();
        let mut state: Vec<(u64, f64)> = (0..series).map(|i| (i as u64 + 1, 0.0)).collect();
        // A day at a time, every series, in time order.
        for day in 0..days {
            let mut batch = Vec::with_capacity(series);
            for (i, l) in labels.iter().enumerate() {
                let (seed, counter) = &mut state[i];
                let mut samples = Vec::with_capacity(1440);
                for m in 0..1440 {
                    *seed = xorshift(*seed);
                    let t = start + ((day * 1440 + m) as i64 + 1) * 60_000;
                    let v = if i % 2 == 0 {
                        // 40-60, with rare stretches near 100.
                        let spike = (*seed % 5000) < 3;
                        50.0 + (*seed % 2000) as f64 / 100.0 - 10.0 + if spike { 48.0 } else { 0.0 }
                    } else {
                        *counter += ((*seed % 600) as f64) / 10.0;
                        *counter
                    };
                    samples.push(Sample::new(t, v));
                }
                batch.push(SeriesSamples {
                    labels: l.clone(),
                    samples,
                });
            }
            db.append(batch, now)?;
        }
        db.flush()?;
    }
    eprintln!(
        "wrote {} series x {} minutes in {:.1}s",
        series,
        minutes,
        started.elapsed().as_secs_f64()
    );
    let mut text = String::from("groups:\n  - name: bench\n    interval: 1m\n    rules:\n");
    for j in 0..rules {
        text.push_str(&rule(j));
    }
    let rule_file = dir.path().join("bench.rules.yml");
    std::fs::write(&rule_file, text)?;

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("backtest")
        .arg("--data-dir")
        .arg(&data)
        .arg("--rule-file")
        .arg(&rule_file)
        .arg("--from")
        .arg(((start + 60_000) / 1000).to_string())
        .arg("--to")
        .arg((now / 1000).to_string())
        .stderr(Stdio::inherit())
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "vigil backtest failed");
    let lines = out.stdout.iter().filter(|b| **b == b'\n').count();
    let steps = minutes as f64;
    let cpu = children_cpu_seconds();
    println!(
        "backtest: {rules} rules x {series} series x {days} days at 1m: {elapsed:.1}s wall, \
         {cpu:.1}s CPU (user+sys), {lines} transitions, {:.1} M rule-series-steps per CPU-second",
        rules as f64 * (series as f64 / 2.0) * steps / cpu.max(1e-9) / 1e6
    );
    Ok(())
}
