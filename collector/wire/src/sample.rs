//! Samples and Prometheus's stale marker.

use serde::{Deserialize, Serialize};

/// The exact bit pattern Prometheus uses to mark a series stale. It is a NaN,
/// so it must be compared by bits, never by value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The stale-marker NaN.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True when `v` is the stale marker (not merely any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample: milliseconds since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(timestamp_ms: i64, value: f64) -> Self {
        Self {
            timestamp_ms,
            value,
        }
    }

    /// Bitwise equality, so NaN samples (and the stale marker) compare as
    /// stored rather than by IEEE rules.
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.timestamp_ms == other.timestamp_ms && self.value.to_bits() == other.value.to_bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(stale_nan().is_nan());
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert!(Sample::new(1, stale_nan()).bit_eq(&Sample::new(1, stale_nan())));
        assert!(!Sample::new(1, stale_nan()).bit_eq(&Sample::new(1, f64::NAN)));
    }
}
