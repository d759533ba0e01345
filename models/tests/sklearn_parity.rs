//! Parity with scikit-learn's `IsolationForest`.
//!
//! For several data sets, the feature matrix is written to a temporary CSV,
//! `tests/sklearn/score_samples.py` fits scikit-learn's forest on it and
//! returns `score_samples`, and our forest is fitted on the same matrix. Two
//! forests grown with different random streams never agree point for point,
//! so the test compares what must agree: the ranking of the points
//! (Spearman ρ ≥ 0.95, and within 0.02 of the ρ between two of our own
//! forests with different seeds: two scikit-learn forests with different
//! seeds agree to about ρ = 0.96 on the Gaussian data set), the level of the
//! scores (mean absolute difference), and the contamination threshold.
//!
//! Needs `python3`; installs scikit-learn with pip when it is missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use vigil_models::features::extract_univariate;
use vigil_models::rng::Rng;
use vigil_models::{ForestConfig, IsolationForest, Matrix, StandardScaler, parse_timestamp};

const N_ESTIMATORS: usize = 100;

fn ensure_sklearn() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let probe = Command::new("python3")
            .args(["-c", "import sklearn, numpy"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "python3 is required for the scikit-learn parity test and could not be run: {e}"
                )
            });
        if probe.status.success() {
            return;
        }
        let install = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "scikit-learn"])
            .status()
            .unwrap_or_else(|e| panic!("could not run pip to install scikit-learn: {e}"));
        assert!(
            install.success(),
            "`python3 -m pip install scikit-learn` failed"
        );
    });
}

/// scikit-learn's scores of `x` (paper convention, higher = more anomalous)
/// and its contamination threshold.
fn sklearn_scores(x: &Matrix, seed: u64) -> (Vec<f64>, f64) {
    ensure_sklearn();
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    for row in x.iter_rows() {
        let line: Vec<String> = row.iter().map(|v| format!("{v:e}")).collect();
        writeln!(file, "{}", line.join(",")).expect("write temp file");
    }
    file.flush().expect("flush temp file");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sklearn/score_samples.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(file.path())
        .arg(N_ESTIMATORS.to_string())
        .arg(seed.to_string())
        .output()
        .expect("run score_samples.py");
    assert!(
        out.status.success(),
        "score_samples.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut scores = Vec::new();
    let mut threshold = f64::NAN;
    for line in text.lines() {
        match line.strip_prefix("threshold ") {
            Some(t) => threshold = t.parse().expect("threshold"),
            None => scores.push(line.parse().expect("score")),
        }
    }
    assert_eq!(scores.len(), x.rows());
    (scores, threshold)
}

/// Ranks with ties averaged (1-based).
fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && xs[idx[j + 1]] == xs[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Fits both forests on `x` and checks the agreement.
fn assert_parity(name: &str, x: &Matrix) {
    let seed = 7;
    let ours = IsolationForest::fit(
        x,
        &ForestConfig {
            n_estimators: N_ESTIMATORS,
            seed,
            ..ForestConfig::default()
        },
    )
    .expect("fit");
    let our_scores = ours.score_matrix(x).expect("shape");
    // Two of our own forests with different seeds: the agreement that
    // randomness alone allows.
    let other_seed = IsolationForest::fit(
        x,
        &ForestConfig {
            n_estimators: N_ESTIMATORS,
            seed: seed + 1,
            ..ForestConfig::default()
        },
    )
    .expect("fit")
    .score_matrix(x)
    .expect("shape");
    let rho_self = spearman(&our_scores, &other_seed);
    let (theirs, their_threshold) = sklearn_scores(x, seed);
    let rho = spearman(&our_scores, &theirs);
    let mad = our_scores
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / theirs.len() as f64;
    let threshold_gap = (ours.threshold() - their_threshold).abs();
    eprintln!(
        "{name}: {} rows × {} features: Spearman ρ = {rho:.4} (ours vs ours, other seed: \
         {rho_self:.4}), mean |Δscore| = {mad:.4}, threshold {:.4} vs {:.4}",
        x.rows(),
        x.cols(),
        ours.threshold(),
        their_threshold
    );
    assert!(rho >= 0.95, "{name}: Spearman ρ = {rho:.4} < 0.95");
    // And no worse than reseeding ourselves, beyond sampling noise: what
    // differs from scikit-learn is the random stream, not the algorithm.
    assert!(
        rho >= rho_self - 0.02,
        "{name}: ρ = {rho:.4} vs {rho_self:.4} between our own seeds"
    );
    // Same normalisation, same expected path lengths: the levels agree up to
    // the randomness of 100 trees.
    assert!(mad < 0.02, "{name}: mean |Δscore| = {mad:.4}");
    assert!(
        threshold_gap < 0.02,
        "{name}: thresholds differ by {threshold_gap:.4}"
    );
}

/// Standard normal by Box–Muller from our generator.
fn normal(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.next_f64();
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

#[test]
fn gaussian_blob_with_outliers() {
    let mut rng = Rng::seed_from_u64(11);
    let mut rows: Vec<Vec<f64>> = (0..600)
        .map(|_| (0..4).map(|_| normal(&mut rng)).collect())
        .collect();
    rows.extend((0..30).map(|_| (0..4).map(|_| rng.uniform(-7.0, 7.0)).collect()));
    assert_parity(
        "gaussian blob + 30 uniform outliers",
        &Matrix::from_rows(&rows).expect("finite"),
    );
}

#[test]
fn two_clusters_and_heavy_tails() {
    let mut rng = Rng::seed_from_u64(12);
    let rows: Vec<Vec<f64>> = (0..1500)
        .map(|i| {
            let centre = if i % 3 == 0 { 5.0 } else { -2.0 };
            vec![
                centre + normal(&mut rng),
                // Exponential: a long right tail.
                -(1.0 - rng.next_f64()).ln(),
                // A discrete feature with many ties.
                (rng.below(4)) as f64,
            ]
        })
        .collect();
    assert_parity(
        "two clusters, exponential tail, ties",
        &Matrix::from_rows(&rows).expect("finite"),
    );
}

fn nab_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VIGIL_NAB_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nab"),
        PathBuf::from,
    );
    dir.is_dir().then_some(dir)
}

/// The scaled univariate features of the first 1,500 rows of a NAB file.
fn nab_features(dir: &Path, file: &str) -> Matrix {
    let text = std::fs::read_to_string(dir.join(file)).expect("read NAB file");
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1).take(1500) {
        let (t, v) = line.split_once(',').expect("timestamp,value");
        ts.push(parse_timestamp(t).expect("timestamp"));
        vs.push(v.trim().parse::<f64>().expect("value"));
    }
    let raw = extract_univariate(&ts, &vs).expect("features");
    StandardScaler::fit(&raw)
        .and_then(|s| s.transform(&raw))
        .expect("scale")
}

#[test]
fn nab_derived_features() {
    let Some(dir) = nab_dir() else {
        panic!("NAB data not found: set VIGIL_NAB_DIR or place it at ../shared/data/nab");
    };
    for file in [
        "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
        "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
        "artificialWithAnomaly/art_daily_jumpsup.csv",
    ] {
        assert_parity(file, &nab_features(&dir, file));
    }
}
