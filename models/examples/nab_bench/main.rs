//! NAB benchmark of the streaming detector, with a scikit-learn baseline.
//!
//! ```text
//! cargo run -p vigil-models --release --example nab_bench [-- OPTIONS]
//!   --config JSON      detector configuration (default: DetectorConfig defaults)
//!   --no-baseline      skip the scikit-learn baseline
//!   --verbose          print each alert
//!   --flags anomaly    grade every anomalous point (`is_anomaly`, what
//!                      `vigil anomaly score` prints) instead of alerts
//!   --cv               leave-one-out cross-validation of the defaults (see
//!                      `cv.rs`); with --threads N (default 1)
//! ```
//!
//! The data directory is `$VIGIL_NAB_DIR`, else `../shared/data/nab` next to
//! the repository. Every file named in `combined_windows.json` is streamed
//! through a fresh detector; its alerts (anomalies that are not suppressed)
//! are graded with NAB's standard profile. The baselines stream the same
//! features through scikit-learn's `IsolationForest` with the same window,
//! retrain schedule, contamination and suppression
//! (`models/tests/sklearn/nab_baseline.py`), deciding either with
//! `predict` (the contamination threshold) or with Vigil's decision rule
//! applied to scikit-learn's scores. Output is a markdown table.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vigil_models::features::extract_univariate;
use vigil_models::nab::{self, FileScore, STANDARD};
use vigil_models::{DetectorConfig, StreamingDetector, parse_timestamp};

mod cv;

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// Which of a score's flags the benchmark grades.
#[derive(Clone, Copy, PartialEq)]
enum Flags {
    /// `should_alert()`: anomalous and not suppressed (what pages).
    Alert,
    /// `is_anomaly`: every anomalous point, suppressed or not.
    Anomaly,
}

struct Series {
    timestamps: Vec<i64>,
    values: Vec<f64>,
}

fn nab_dir() -> PathBuf {
    std::env::var_os("VIGIL_NAB_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nab"),
        PathBuf::from,
    )
}

fn read_series(path: &Path) -> Result<Series> {
    let reader = BufReader::new(fs::File::open(path)?);
    let mut s = Series {
        timestamps: Vec::new(),
        values: Vec::new(),
    };
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let (t, v) = line
            .split_once(',')
            .ok_or_else(|| format!("{}:{}: expected timestamp,value", path.display(), i + 1))?;
        s.timestamps.push(
            parse_timestamp(t)
                .ok_or_else(|| format!("{}:{}: bad timestamp", path.display(), i + 1))?,
        );
        s.values.push(v.trim().parse()?);
    }
    Ok(s)
}

fn run_vigil(
    series: &Series,
    cfg: &DetectorConfig,
    flags: Flags,
    verbose: bool,
) -> Result<Vec<bool>> {
    let mut det = StreamingDetector::new(cfg.clone())?;
    let mut alerts = Vec::with_capacity(series.values.len());
    for (&t, &v) in series.timestamps.iter().zip(&series.values) {
        let alert = match det.push(t, v)? {
            Some(s)
                if (flags == Flags::Alert && s.should_alert())
                    || (flags == Flags::Anomaly && s.is_anomaly) =>
            {
                if verbose {
                    let d = s.details.as_ref();
                    println!(
                        "  alert at {t}: value {v} score {:.3} z {:.1} {} {:?}",
                        s.score,
                        s.score_z.unwrap_or(f64::NAN),
                        s.severity.as_str(),
                        d.map(|d| (&d.top_feature, d.top_feature_z))
                    );
                }
                true
            }
            _ => false,
        };
        alerts.push(alert);
    }
    Ok(alerts)
}

/// Alert flags of the two scikit-learn baselines: `predict` (contamination
/// threshold) and Vigil's decision rule on scikit-learn's scores.
fn run_baseline(
    series: &Series,
    cfg: &DetectorConfig,
    scratch: &Path,
) -> Result<(Vec<bool>, Vec<bool>)> {
    let x = extract_univariate(&series.timestamps, &series.values)?;
    let mut f = std::io::BufWriter::new(fs::File::create(scratch)?);
    write!(f, "timestamp_ms")?;
    for j in 0..x.cols() {
        write!(f, ",f{j}")?;
    }
    writeln!(f)?;
    for (t, row) in series.timestamps.iter().zip(x.iter_rows()) {
        write!(f, "{t}")?;
        for v in row {
            write!(f, ",{v:e}")?;
        }
        writeln!(f)?;
    }
    f.flush()?;
    drop(f);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sklearn/nab_baseline.py");
    let contamination = serde_json::to_value(cfg.contamination)?
        .to_string()
        .replace('"', "");
    let out = Command::new("python3")
        .arg(script)
        .arg(scratch)
        .args(["--min-points", &cfg.min_points.to_string()])
        .args(["--window", &cfg.window.to_string()])
        .args(["--retrain-every", &cfg.retrain_every.to_string()])
        .args(["--contamination", &contamination])
        .args(["--n-estimators", &cfg.n_estimators.to_string()])
        .args(["--seed", &cfg.seed.to_string()])
        .args(["--suppression-ms", &cfg.suppression.as_millis().to_string()])
        .args(["--score-z", &cfg.score_z.to_string()])
        .args([
            "--min-score-percentile",
            &cfg.min_score_percentile.to_string(),
        ])
        .output()?;
    if !out.status.success() {
        return Err(format!("baseline failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let (mut predict, mut ruled) = (Vec::new(), Vec::new());
    for line in String::from_utf8(out.stdout)?.lines() {
        let (p, r) = line
            .split_once(',')
            .ok_or("baseline printed a malformed line")?;
        predict.push(p.trim() == "1");
        ruled.push(r.trim() == "1");
    }
    if predict.len() != series.values.len() {
        return Err(format!(
            "baseline returned {} rows of flags for {} rows",
            predict.len(),
            series.values.len()
        )
        .into());
    }
    Ok((predict, ruled))
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

fn short_cells(s: &FileScore) -> String {
    format!(
        "{}/{} | {} | {:.1}",
        s.detected,
        s.windows,
        s.false_positives,
        s.normalized()
    )
}

fn cells(s: &FileScore) -> String {
    let delays_h: Vec<f64> = s.delays_ms.iter().map(|d| *d as f64 / 3.6e6).collect();
    format!(
        "{}/{} | {} | {:.1} h ({:.0}%) | {:.2} | {:.1}",
        s.detected,
        s.windows,
        s.false_positives,
        mean(&delays_h),
        100.0 * mean(&s.relative_delays),
        s.raw,
        s.normalized()
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = DetectorConfig::default();
    let mut baseline = true;
    let mut verbose = false;
    let mut run_cv = false;
    let mut threads = 1usize;
    let mut flags = Flags::Alert;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => cfg = DetectorConfig::from_json(it.next().ok_or("--config needs JSON")?)?,
            "--no-baseline" => baseline = false,
            "--verbose" => verbose = true,
            "--cv" => run_cv = true,
            "--threads" => threads = it.next().ok_or("--threads needs a number")?.parse()?,
            "--flags" => {
                flags = match it.next().map(String::as_str) {
                    Some("anomaly") => Flags::Anomaly,
                    Some("alert") => Flags::Alert,
                    _ => return Err("--flags takes alert or anomaly".into()),
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let dir = nab_dir();
    let windows = nab::parse_windows(&fs::read_to_string(dir.join("combined_windows.json"))?)?;
    if run_cv {
        let mut corpus = Vec::new();
        for (file, file_windows) in &windows {
            let path = dir.join(file);
            if path.exists() {
                corpus.push((file.clone(), read_series(&path)?, file_windows.clone()));
            }
        }
        return cv::run(&corpus, flags, threads.max(1));
    }
    let scratch =
        std::env::temp_dir().join(format!("vigil-nab-features-{}.csv", std::process::id()));
    type Baselines = Option<(FileScore, FileScore)>;
    let mut rows: BTreeMap<String, (FileScore, Baselines)> = BTreeMap::new();
    let mut ours_total = FileScore::default();
    let (mut predict_total, mut ruled_total) = (FileScore::default(), FileScore::default());
    let (mut ours_time, mut points) = (0.0, 0usize);
    for (file, file_windows) in &windows {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        let series = read_series(&path)?;
        if verbose {
            println!("{file}");
        }
        let started = Instant::now();
        let alerts = run_vigil(&series, &cfg, flags, verbose)?;
        ours_time += started.elapsed().as_secs_f64();
        points += series.values.len();
        let ours = nab::score_file(&series.timestamps, &alerts, file_windows, STANDARD)?;
        ours_total.accumulate(&ours);
        let base = if baseline {
            let (predict, ruled) = run_baseline(&series, &cfg, &scratch)?;
            let p = nab::score_file(&series.timestamps, &predict, file_windows, STANDARD)?;
            let r = nab::score_file(&series.timestamps, &ruled, file_windows, STANDARD)?;
            predict_total.accumulate(&p);
            ruled_total.accumulate(&r);
            Some((p, r))
        } else {
            None
        };
        rows.insert(file.clone(), (ours, base));
    }
    let _ = fs::remove_file(&scratch);

    println!(
        "NAB standard profile, {} files, {points} points; detector config: {}",
        rows.len(),
        serde_json::to_string(&cfg)?
    );
    println!();
    println!(
        "| file | Vigil windows | FP | mean delay (share of window) | raw | score \
         | sklearn `predict` windows | FP | score | sklearn + Vigil's rule windows | FP | score |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let none = "- | - | -".to_string();
    for (file, (ours, base)) in &rows {
        let b = base.as_ref().map_or_else(
            || format!("{none} | {none}"),
            |(p, r)| format!("{} | {}", short_cells(p), short_cells(r)),
        );
        println!("| {file} | {} | {b} |", cells(ours));
    }
    let b = if baseline {
        format!(
            "{} | {}",
            short_cells(&predict_total),
            short_cells(&ruled_total)
        )
    } else {
        format!("{none} | {none}")
    };
    println!("| **overall** | {} | {b} |", cells(&ours_total));
    println!();
    println!(
        "Overall NAB standard score (normalised over the corpus): Vigil {:.1}{}",
        ours_total.normalized(),
        if baseline {
            format!(
                ", scikit-learn `predict` {:.1}, scikit-learn scores + Vigil's decision rule {:.1}",
                predict_total.normalized(),
                ruled_total.normalized()
            )
        } else {
            String::new()
        }
    );
    println!(
        "Vigil streaming cost: {:.1} µs per point (including retrains)",
        1e6 * ours_time / points.max(1) as f64
    );
    Ok(())
}
