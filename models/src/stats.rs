//! Small descriptive statistics shared by the forest, the scaler and the
//! detector: moments, quantiles (NumPy's default linear interpolation, so
//! thresholds match scikit-learn's) and percentile ranks.

/// Mean and population standard deviation; `(0, 0)` for an empty input.
pub fn mean_std(xs: impl IntoIterator<Item = f64>) -> (f64, f64) {
    // Welford's update: one pass, numerically stable.
    let (mut n, mut mean, mut m2) = (0usize, 0.0f64, 0.0f64);
    for x in xs {
        n += 1;
        let d = x - mean;
        mean += d / n as f64;
        m2 += d * (x - mean);
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    (mean, (m2 / n as f64).max(0.0).sqrt())
}

/// The `q`-th percentile (0–100) with linear interpolation between closest
/// ranks (NumPy's default). Reorders `xs`; NaN for an empty slice.
pub fn percentile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_unstable_by(f64::total_cmp);
    percentile_sorted(xs, q)
}

/// [`percentile`] of an already ascending slice.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = (q.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// The percentile rank (0–100) of `x` among `xs`: the share of values below
/// it, counting ties as half (the "mean" kind of SciPy's `percentileofscore`).
/// 50 for an empty history, as there is no evidence either way.
pub fn percentile_rank(xs: impl IntoIterator<Item = f64>, x: f64) -> f64 {
    // Branch-free counts through `fold` (internal iteration, so a
    // `VecDeque` is walked as its two slices): on the detector's hot path
    // this runs over the whole score history for every point, and whether
    // a history value is below the new score is a coin flip for a branch
    // predictor.
    let (n, below, equal) = xs
        .into_iter()
        .fold((0usize, 0usize, 0usize), |(n, b, e), v| {
            (n + 1, b + usize::from(v < x), e + usize::from(v == x))
        });
    if n == 0 {
        return 50.0;
    }
    100.0 * (below as f64 + 0.5 * equal as f64) / n as f64
}

/// Median and median absolute deviation of `xs` (reordered in place).
pub fn median_mad(xs: &mut [f64]) -> (f64, f64) {
    let median = percentile(xs, 50.0);
    for x in xs.iter_mut() {
        *x = (*x - median).abs();
    }
    let mad = percentile(xs, 50.0);
    (median, mad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments() {
        let (m, s) = mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((m - 5.0).abs() < 1e-12);
        assert!((s - 2.0).abs() < 1e-12);
        assert_eq!(mean_std([]), (0.0, 0.0));
    }

    #[test]
    fn percentiles_match_numpy() {
        // np.percentile([1, 2, 3, 4], [0, 25, 50, 90, 100])
        let mut xs = [4.0, 2.0, 1.0, 3.0];
        assert_eq!(percentile(&mut xs, 0.0), 1.0);
        assert!((percentile(&mut xs, 25.0) - 1.75).abs() < 1e-12);
        assert!((percentile(&mut xs, 50.0) - 2.5).abs() < 1e-12);
        assert!((percentile(&mut xs, 90.0) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&mut xs, 100.0), 4.0);
        assert!(percentile(&mut [], 50.0).is_nan());
    }

    #[test]
    fn ranks_and_mad() {
        assert_eq!(percentile_rank([1.0, 2.0, 3.0, 4.0], 3.0), 62.5);
        assert_eq!(percentile_rank([1.0, 2.0], 10.0), 100.0);
        assert_eq!(percentile_rank([], 1.0), 50.0);
        let mut xs = [1.0, 1.0, 2.0, 2.0, 4.0, 6.0, 9.0];
        assert_eq!(median_mad(&mut xs), (2.0, 1.0));
    }
}
