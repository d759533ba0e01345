//! The speed bench's fit + score, once, for counting instructions and for
//! checking that a change leaves every score bit-identical.
//!
//! ```text
//! cargo build -p vigil-models --release --example forest_count
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out target/release/examples/forest_count
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep -E 'forest_count::(main|matrix)'
//! ```
//!
//! Fit + score is `main` minus `matrix` (making the inputs). Instruction
//! counts are reproducible on a shared machine where times are not, and
//! scoring is bound by instruction issue, so they are the first measure
//! of a change to the walk. (The speed bench itself cannot run under
//! valgrind: its thread CPU clock goes through the vDSO.) The checksum
//! folds the bits of every score and of the threshold: a change that keeps
//! the results bit-identical keeps it.

use std::error::Error as StdError;
use std::time::Instant;

use vigil_models::rng::Rng;
use vigil_models::{ForestConfig, IsolationForest, Matrix};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// Same inputs as the speed bench: 11 columns, standard normal, every
/// hundredth row shifted by 6.
const FEATURES: usize = 11;

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

fn main() -> Result<()> {
    let train = matrix(10_000, 1)?;
    let score = matrix(100_000, 2)?;
    let t0 = Instant::now();
    let forest = IsolationForest::fit(&train, &ForestConfig::default())?;
    let scores = forest.score_matrix(&score)?;
    let elapsed = t0.elapsed();
    let checksum = scores
        .iter()
        .chain([forest.threshold()].iter())
        .fold(0u64, |h, s| h.wrapping_mul(31).wrapping_add(s.to_bits()));
    println!(
        "fit + score {:.1} ms (wall clock), checksum {checksum:016x}",
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
