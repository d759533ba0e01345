//! Speed and memory of the isolation forest against scikit-learn, and the
//! streaming detector's per-point cost.
//!
//! ```text
//! cargo run -p vigil-models --release --example speed_bench [-- --no-sklearn]
//! ```
//!
//! Trains on 10,000 × 11 and scores 100,000 × 11 — the width of the
//! detector's univariate row with its seasonal features (standard normal, 1% shifted
//! outliers), 100 trees, ψ = 256, contamination 0.1, one thread on both
//! sides; best of 5 runs. scikit-learn runs in a child process
//! (`models/tests/sklearn/speed.py`) on the same matrices, written to CSV
//! first (loading is not timed). Memory: our model's arena size and the
//! growth of this process's peak RSS during fit + score, against Python's
//! traced allocations during fit + score (tracemalloc sees NumPy buffers)
//! and its peak RSS. Single-point latency: the trained forest scores rows
//! one call each (scikit-learn: `score_samples` on a one-row array). Then
//! the streaming detector (default configuration) consumes 20,000 points of
//! a noisy daily cycle: CPU time per point with the default retrain
//! schedule, without retraining (the collector's hot path for a new sample:
//! features, scaling, scoring, decision), and for one retrain.
//!
//! Times are CPU time of the measuring thread (both sides), because the
//! machine is shared and wall-clock time would mostly measure the other
//! processes.

use std::error::Error as StdError;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use vigil_models::rng::Rng;
use vigil_models::{DetectorConfig, ForestConfig, IsolationForest, Matrix, StreamingDetector};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// The detector's univariate row: seven series features, two calendar
/// features, two seasonal features.
const FEATURES: usize = 11;
const TRAIN_ROWS: usize = 10_000;
const SCORE_ROWS: usize = 100_000;
const REPEATS: usize = 5;
const STREAM_POINTS: usize = 20_000;
/// Rows scored one call at a time for the single-point latency (scikit-learn
/// is about a millisecond per call, so it gets fewer).
const SINGLE_ROWS: usize = 100_000;
const SINGLE_ROWS_SKLEARN: usize = 1_000;

fn normal(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.next_f64();
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn matrix(rows: usize, seed: u64) -> Result<Matrix> {
    let mut rng = Rng::seed_from_u64(seed);
    let mut data = Vec::with_capacity(rows * FEATURES);
    for i in 0..rows {
        let shift = if i % 100 == 0 { 6.0 } else { 0.0 };
        for _ in 0..FEATURES {
            data.push(normal(&mut rng) + shift);
        }
    }
    Ok(Matrix::new(rows, FEATURES, data)?)
}

fn write_csv(path: &Path, x: &Matrix) -> Result<()> {
    let mut f = BufWriter::new(fs::File::create(path)?);
    for row in x.iter_rows() {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:e}")).collect();
        writeln!(f, "{}", cells.join(","))?;
    }
    f.flush()?;
    Ok(())
}

/// A `kB` field of /proc/self/status, in bytes (0 where unavailable).
fn proc_status_bytes(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time consumed by this thread so far, in seconds.
///
/// The machine this runs on is shared, so wall-clock time mostly measures
/// the neighbours; the thread's CPU clock does not. (It is the clock
/// Python's `time.thread_time()` reads on the scikit-learn side;
/// `/proc/thread-self/schedstat` would only advance in scheduler ticks.)
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

fn main() -> Result<()> {
    let with_sklearn = !std::env::args().any(|a| a == "--no-sklearn");
    let train = matrix(TRAIN_ROWS, 1)?;
    let score = matrix(SCORE_ROWS, 2)?;
    let cfg = ForestConfig::default();

    let rss_before = proc_status_bytes("VmHWM:");
    let (mut fit_s, mut score_s) = (f64::INFINITY, f64::INFINITY);
    let mut model_bytes = 0;
    let mut checksum = 0.0;
    for r in 0..REPEATS {
        let t0 = cpu_seconds();
        let forest = IsolationForest::fit(
            &train,
            &ForestConfig {
                seed: r as u64,
                ..cfg.clone()
            },
        )?;
        let t1 = cpu_seconds();
        let scores = forest.score_matrix(&score)?;
        let t2 = cpu_seconds();
        fit_s = fit_s.min(t1 - t0);
        score_s = score_s.min(t2 - t1);
        model_bytes = forest.heap_bytes();
        // Keep the scores observable so the work cannot be optimised away.
        checksum += scores.iter().sum::<f64>();
    }
    let rss_growth = proc_status_bytes("VmHWM:").saturating_sub(rss_before);
    let rss_peak = proc_status_bytes("VmHWM:");
    let forest = IsolationForest::fit(&train, &cfg)?;
    // One point at a time, as a caller with a single new row scores it:
    // the plain path (bit-identical to the batch) and the extrapolated one
    // the streaming detector uses.
    let (single_s, single_ext_s) = {
        let mask = vec![true; FEATURES];
        let (mut a, mut b) = (0.0, 0.0);
        let t0 = cpu_seconds();
        for row in score.iter_rows().take(SINGLE_ROWS) {
            a += forest.score(row)?;
        }
        let t1 = cpu_seconds();
        for row in score.iter_rows().take(SINGLE_ROWS) {
            b += forest.score_extrapolated(row, &mask)?;
        }
        let t2 = cpu_seconds();
        checksum += a + b;
        (
            (t1 - t0) / SINGLE_ROWS as f64,
            (t2 - t1) / SINGLE_ROWS as f64,
        )
    };

    let sk = if with_sklearn {
        let dir = std::env::temp_dir().join(format!("vigil-speed-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let (tp, sp) = (dir.join("train.csv"), dir.join("score.csv"));
        write_csv(&tp, &train)?;
        write_csv(&sp, &score)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sklearn/speed.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(&tp)
            .arg(&sp)
            .arg(cfg.n_estimators.to_string())
            .arg(REPEATS.to_string())
            .arg(SINGLE_ROWS_SKLEARN.to_string())
            .env("OMP_NUM_THREADS", "1")
            .env("OPENBLAS_NUM_THREADS", "1")
            .output()?;
        let _ = fs::remove_dir_all(&dir);
        if !out.status.success() {
            return Err(
                format!("speed.py failed: {}", String::from_utf8_lossy(&out.stderr)).into(),
            );
        }
        let text = String::from_utf8(out.stdout)?;
        let get = |key: &str| -> Result<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse::<f64>()))
                .ok_or_else(|| format!("speed.py printed no {key}"))?
                .map_err(Into::into)
        };
        Some((
            get("fit_s")?,
            get("score_s")?,
            get("traced_peak_bytes")?,
            get("maxrss_bytes")?,
            get("single_s")?,
        ))
    } else {
        None
    };

    // Streaming: a daily cycle at 5-minute steps with noise and rare spikes.
    let series: Vec<(i64, f64)> = {
        let mut rng = Rng::seed_from_u64(3);
        (0..STREAM_POINTS as i64)
            .map(|i| {
                let day = (i as f64) * std::f64::consts::TAU / 288.0;
                let spike = if rng.below(2000) == 0 { 40.0 } else { 0.0 };
                (
                    1_700_000_000_000 + i * 300_000,
                    50.0 + 20.0 * day.sin() + 2.0 * normal(&mut rng) + spike,
                )
            })
            .collect()
    };
    let stream = |cfg: DetectorConfig| -> Result<(f64, usize, usize)> {
        let mut det = StreamingDetector::new(cfg)?;
        let (mut scored, mut alerts) = (0, 0);
        let t0 = cpu_seconds();
        for &(t, v) in &series {
            if let Some(s) = det.push(t, v)? {
                scored += 1;
                alerts += usize::from(s.should_alert());
            }
        }
        Ok((cpu_seconds() - t0, scored, alerts))
    };
    let defaults = DetectorConfig::default();
    let retrain_every = defaults.retrain_every;
    let (amortised_s, scored, alerts) = stream(defaults.clone())?;
    // The same stream with retraining switched off after the first model:
    // the cost of scoring alone.
    let (steady_s, steady_scored, _) = stream(DetectorConfig {
        retrain_every: usize::MAX,
        ..defaults
    })?;
    // The cost of one retrain on a full window, measured directly.
    let retrain_us = {
        let mut det = StreamingDetector::new(DetectorConfig {
            retrain_every: 1,
            ..DetectorConfig::default()
        })?;
        for &(t, v) in &series[..1000] {
            det.push(t, v)?;
        }
        let t0 = cpu_seconds();
        for &(t, v) in &series[1000..1100] {
            det.push(t, v)?;
        }
        (cpu_seconds() - t0) * 1e6 / 100.0
    };

    println!(
        "Isolation forest: train {TRAIN_ROWS} × {FEATURES}, score {SCORE_ROWS} × {FEATURES}, 100 trees, ψ = 256, 1 thread, best of {REPEATS} (checksum {checksum:.3})"
    );
    println!();
    println!("| | Vigil (Rust) | scikit-learn | speed-up |");
    println!("|---|---|---|---|");
    match sk {
        Some((sk_fit, sk_score, sk_traced, sk_rss, sk_single)) => {
            println!(
                "| fit (incl. contamination threshold) | {:.1} ms | {:.1} ms | {:.1}× |",
                fit_s * 1e3,
                sk_fit * 1e3,
                sk_fit / fit_s
            );
            println!(
                "| score 100,000 rows | {:.1} ms | {:.1} ms | {:.1}× |",
                score_s * 1e3,
                sk_score * 1e3,
                sk_score / score_s
            );
            println!(
                "| fit + score | {:.1} ms | {:.1} ms | {:.1}× |",
                (fit_s + score_s) * 1e3,
                (sk_fit + sk_score) * 1e3,
                (sk_fit + sk_score) / (fit_s + score_s)
            );
            println!(
                "| score one point (one call per row) | {:.2} µs | {:.1} µs | {:.0}× |",
                single_s * 1e6,
                sk_single * 1e6,
                sk_single / single_s
            );
            println!(
                "| score one point, extrapolating (the detector's scoring) | {:.2} µs | - | |",
                single_ext_s * 1e6
            );
            println!("| model size | {} | - | |", mib(model_bytes as f64));
            println!(
                "| memory during fit + score | {} (peak RSS growth) | {} (traced allocations) | |",
                mib(rss_growth as f64),
                mib(sk_traced)
            );
            println!(
                "| process peak RSS | {} | {} | |",
                mib(rss_peak as f64),
                mib(sk_rss)
            );
        }
        None => {
            println!("| fit | {:.1} ms | - | |", fit_s * 1e3);
            println!("| score 100,000 rows | {:.1} ms | - | |", score_s * 1e3);
            println!(
                "| score one point (one call per row) | {:.2} µs | - | |",
                single_s * 1e6
            );
            println!(
                "| score one point, extrapolating (the detector's scoring) | {:.2} µs | - | |",
                single_ext_s * 1e6
            );
            println!("| model size | {} | - | |", mib(model_bytes as f64));
            println!("| process peak RSS | {} | - | |", mib(rss_peak as f64));
        }
    }
    println!();
    println!(
        "Streaming detector (default config), {STREAM_POINTS} points of a noisy daily cycle, {scored} scored, {alerts} alerts; CPU time per point:"
    );
    println!();
    println!("| | µs per point |");
    println!("|---|---|");
    println!(
        "| amortised, with a retrain every {retrain_every} points | {:.1} |",
        amortised_s * 1e6 / scored as f64
    );
    println!(
        "| hot path: one new point (features, scaling, forest score, decision), no retrain | {:.1} |",
        steady_s * 1e6 / steady_scored as f64
    );
    println!("| one retrain on a full 1,000-point window (+ scoring) | {retrain_us:.0} |");
    Ok(())
}
