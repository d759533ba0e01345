//! A small, seedable, serialisable pseudo-random number generator.
//!
//! The isolation forest must be reproducible (same seed, same trees, same
//! scores) across platforms and crate upgrades, and its state must persist
//! with a trained detector so that a restarted process retrains exactly as
//! the original would have. We therefore own the generator instead of
//! depending on `rand`'s algorithm choices: xoshiro256** (Blackman & Vigna)
//! seeded through SplitMix64, as the authors recommend.

use serde::{Deserialize, Serialize};

/// SplitMix64: used to expand one `u64` seed into a full xoshiro state and to
/// derive independent sub-seeds.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// xoshiro256**: fast, 256 bits of state, passes BigCrush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole state is derived from `seed`.
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        let mut s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        // The all-zero state is the one fixed point of xoshiro; SplitMix64
        // cannot produce four zeros in a row, but guard the invariant anyway.
        if s == [0; 4] {
            s[0] = 1;
        }
        Self { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform float in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, n)`; `n` must be positive.
    ///
    /// Lemire's multiply-and-reject method: unbiased and usually one
    /// multiplication.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "Rng::below needs a non-empty range");
        let n = n as u64;
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        let mut low = m as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as usize
    }

    /// A uniform float in `[low, high)`; returns `low` when the range is empty.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        let x = low + (high - low) * self.next_f64();
        // Rounding can land exactly on `high`; keep the half-open contract.
        if x >= high { low } else { x }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::seed_from_u64(7);
        let mut b = Rng::seed_from_u64(7);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::seed_from_u64(8);
        assert_ne!(xs[0], c.next_u64());
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::seed_from_u64(1);
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            let k = r.below(10);
            counts[k] += 1;
        }
        for c in counts {
            // Expected 10,000 each; 5 sigma is about 475.
            assert!((9_500..=10_500).contains(&c), "count {c} far from uniform");
        }
    }

    #[test]
    fn floats_are_half_open() {
        let mut r = Rng::seed_from_u64(3);
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            let y = r.uniform(-2.0, 5.0);
            assert!((-2.0..5.0).contains(&y));
        }
        assert_eq!(r.uniform(4.0, 4.0), 4.0);
    }
}
