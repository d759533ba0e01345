//! Leave-one-out cross-validation of the detector's defaults on the NAB
//! tuning series.
//!
//! Every candidate configuration of a small grid is run once per seed on
//! every file. For each split, the candidate with the best NAB standard
//! score on the other files (normalised over those files, averaged over the
//! seeds) is chosen and the held-out file is graded with it. The
//! cross-validated score puts the held-out grades of all splits together
//! (normalised over the corpus, as NAB does); it estimates how well the
//! *procedure* of choosing defaults on these series carries to a series it
//! has not seen. The in-sample score is that of the candidate chosen on all
//! files, graded on the same files: the optimistic number.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use vigil_models::DetectorConfig;
use vigil_models::nab::{self, FileScore, STANDARD};

use super::{Flags, Result, Series, run_vigil};

/// One labelled file: name, series, NAB windows.
pub type Labelled = (String, Series, Vec<(i64, i64)>);

/// Seeds of the forest; the spread across them is reported.
const SEEDS: [u64; 3] = [7, 42, 123];

/// `score_z` of every candidate: 4 lost to 5 at nearly every setting in the
/// earlier runs, and one value keeps the run within minutes on a shared
/// machine.
const SCORE_Z: f64 = 5.0;

/// The grid: each axis a mechanism (or a sensitivity) with a few round
/// values; kept small so the whole run takes minutes on a shared machine.
fn grid() -> Vec<(String, DetectorConfig)> {
    let mut out = Vec::new();
    // Seasonal features off; on; on with the seasonal gate (which needs
    // them). Re-baselining is left out: it lost at every setting in the
    // two earlier runs of this grid (see the README). Narrowing the grid
    // on those full-corpus runs leaks a little information from all files
    // into every split.
    for (seasonal, seasonal_gate) in [(false, 0.0), (true, 0.0), (true, 3.0)] {
        for (confirm_n, confirm_m) in [(1, 1), (2, 3)] {
            for min_score_percentile in [99.5, 99.9] {
                for recurrence in [0.0, 0.1, 0.25] {
                    let cfg = DetectorConfig {
                        seasonal,
                        seasonal_gate,
                        confirm_n,
                        confirm_m,
                        score_z: SCORE_Z,
                        min_score_percentile,
                        recurrence,
                        rebaseline_after: 0,
                        ..DetectorConfig::default()
                    };
                    let name = format!(
                        "seasonal={} gate={seasonal_gate} confirm={confirm_n}/{confirm_m} z={SCORE_Z} pct={min_score_percentile} recurrence={recurrence}",
                        u8::from(seasonal)
                    );
                    out.push((name, cfg));
                }
            }
        }
    }
    out
}

/// Corpus-normalised score of `files` (indices) under one candidate/seed.
fn corpus_score(scores: &[FileScore], files: impl Iterator<Item = usize>) -> f64 {
    let mut total = FileScore::default();
    for f in files {
        total.accumulate(&scores[f]);
    }
    total.normalized()
}

fn mean_min_max(xs: &[f64]) -> (f64, f64, f64) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, min, max)
}

/// Runs the cross-validation and prints its tables.
pub fn run(corpus: &[Labelled], flags: Flags, threads: usize) -> Result<()> {
    let candidates = grid();
    let n_files = corpus.len();
    // scores[candidate][seed][file]
    let jobs: Vec<(usize, usize)> = (0..candidates.len())
        .flat_map(|c| (0..SEEDS.len()).map(move |s| (c, s)))
        .collect();
    let results: Mutex<Vec<Vec<Vec<FileScore>>>> =
        Mutex::new(vec![vec![Vec::new(); SEEDS.len()]; candidates.len()]);
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(c, s)) = jobs.get(j) else { break };
                    let cfg = DetectorConfig {
                        seed: SEEDS[s],
                        ..candidates[c].1.clone()
                    };
                    let graded: std::result::Result<Vec<FileScore>, String> = corpus
                        .iter()
                        .map(|(_, series, windows)| {
                            let alerts =
                                run_vigil(series, &cfg, flags, false).map_err(|e| e.to_string())?;
                            nab::score_file(&series.timestamps, &alerts, windows, STANDARD)
                                .map_err(|e| e.to_string())
                        })
                        .collect();
                    match graded {
                        Ok(g) => {
                            if let Ok(mut r) = results.lock() {
                                r[c][s] = g;
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                *f = Some(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().map_err(|_| "worker panicked")? {
        return Err(e.into());
    }
    let scores = results.into_inner().map_err(|_| "worker panicked")?;
    let elapsed = started.elapsed().as_secs_f64();

    // Mean over seeds of a candidate's corpus score on a set of files.
    let mean_score = |c: usize, files: &dyn Fn(usize) -> bool| {
        SEEDS
            .iter()
            .enumerate()
            .map(|(s, _)| corpus_score(&scores[c][s], (0..n_files).filter(|&f| files(f))))
            .sum::<f64>()
            / SEEDS.len() as f64
    };
    let best = |files: &dyn Fn(usize) -> bool| {
        (0..candidates.len())
            .map(|c| (c, mean_score(c, files)))
            .fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b })
    };

    // In-sample: chosen and graded on all files.
    let (chosen_all, _) = best(&|_| true);
    // Cross-validated: per split, chosen on the others, graded on the one.
    let choices: Vec<usize> = (0..n_files).map(|h| best(&|f| f != h).0).collect();
    let per_seed = |pick: &dyn Fn(usize) -> usize| -> Vec<f64> {
        (0..SEEDS.len())
            .map(|s| {
                let mut total = FileScore::default();
                for f in 0..n_files {
                    total.accumulate(&scores[pick(f)][s][f]);
                }
                total.normalized()
            })
            .collect()
    };
    let cv = per_seed(&|f| choices[f]);
    let in_sample = per_seed(&|_| chosen_all);
    // The old detector's configuration among the candidates, for reference.
    let (cv_mean, cv_min, cv_max) = mean_min_max(&cv);
    let (in_mean, in_min, in_max) = mean_min_max(&in_sample);

    println!(
        "NAB standard profile, leave-one-out over {n_files} files, {} candidates × {} seeds (seeds {:?}), graded flags: {}, {:.0} s",
        candidates.len(),
        SEEDS.len(),
        SEEDS,
        if flags == Flags::Alert {
            "alerts"
        } else {
            "anomalies"
        },
        elapsed
    );
    println!();
    println!("| | mean over seeds | min | max | per seed |");
    println!("|---|---|---|---|---|");
    println!(
        "| cross-validated | {cv_mean:.1} | {cv_min:.1} | {cv_max:.1} | {} |",
        cv.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| in-sample (chosen on all {n_files}) | {in_mean:.1} | {in_min:.1} | {in_max:.1} | {} |",
        in_sample
            .iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "Chosen on all files (the defaults): {}",
        candidates[chosen_all].0
    );
    println!();
    println!(
        "| held-out file | candidate chosen on the other {} | windows | FP | held-out score (mean over seeds) | in-sample windows | FP | score |",
        n_files - 1
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (f, (file, _, _)) in corpus.iter().enumerate() {
        let cell = |c: usize| {
            let s = &scores[c][1][f];
            let mean = (0..SEEDS.len())
                .map(|s| scores[c][s][f].normalized())
                .sum::<f64>()
                / SEEDS.len() as f64;
            format!(
                "{}/{} | {} | {mean:.1}",
                s.detected, s.windows, s.false_positives
            )
        };
        println!(
            "| {file} | {} | {} | {} |",
            candidates[choices[f]].0,
            cell(choices[f]),
            cell(chosen_all)
        );
    }
    println!();
    println!("(windows and FP for seed {}.)", SEEDS[1]);
    println!();
    println!("Every candidate, in-sample (mean over seeds, all files):");
    println!();
    println!("| candidate | score | min seed | max seed |");
    println!("|---|---|---|---|");
    for (c, (name, _)) in candidates.iter().enumerate() {
        let per: Vec<f64> = (0..SEEDS.len())
            .map(|s| corpus_score(&scores[c][s], 0..n_files))
            .collect();
        let (m, lo, hi) = mean_min_max(&per);
        println!("| {name} | {m:.1} | {lo:.1} | {hi:.1} |");
    }
    Ok(())
}
