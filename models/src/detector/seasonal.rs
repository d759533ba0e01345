//! Seasonal memory: what a series looked like at the same time yesterday and
//! last week, for the detector's seasonal features.
//!
//! A daily or weekly pattern is the most common structure in operational
//! series, and the plain features cannot express "this value is normal at
//! 14:00 but not at 03:00" or "the daily peak did not happen". The memory
//! keeps the mean value of each 5-minute bucket for the last week and a bit
//! (a ring of 2,017 buckets per series, so its size does not depend on the
//! scrape interval), and the features are the differences between the new
//! value and the bucket one day and one week earlier. A bucket with no data
//! (the memory is younger than the lag, or the series had a gap) yields 0,
//! "as usual", so the features start neutral and take effect once history
//! allows.

use serde::{Deserialize, Serialize};

/// Width of a bucket.
pub const BUCKET_MS: i64 = 5 * 60 * 1000;
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Buckets kept: one week plus one, so the bucket a week back is still there
/// while the current one fills.
const SLOTS: usize = (WEEK_MS / BUCKET_MS) as usize + 1;

/// Names of the seasonal features of one series, in row order.
pub const SEASONAL_FEATURES: [&str; 2] = ["vs_yesterday", "vs_last_week"];

/// The bucket means of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonalMemory {
    /// Per slot: the bucket number it holds (`ts.div_euclid(BUCKET_MS)`), or
    /// `i64::MIN` when empty.
    ids: Vec<i64>,
    sums: Vec<f64>,
    counts: Vec<u32>,
}

impl Default for SeasonalMemory {
    fn default() -> Self {
        Self {
            ids: vec![i64::MIN; SLOTS],
            sums: vec![0.0; SLOTS],
            counts: vec![0; SLOTS],
        }
    }
}

impl SeasonalMemory {
    fn slot(id: i64) -> usize {
        // `rem_euclid` of a positive modulus is in `0..SLOTS`.
        id.rem_euclid(SLOTS as i64) as usize
    }

    /// Mean of the bucket holding `ts_ms`, if it has data.
    fn mean_at(&self, ts_ms: i64) -> Option<f64> {
        let id = ts_ms.div_euclid(BUCKET_MS);
        let s = Self::slot(id);
        (self.ids[s] == id && self.counts[s] > 0).then(|| self.sums[s] / f64::from(self.counts[s]))
    }

    /// Writes the seasonal features of `value` at `ts_ms` to `out`, then
    /// records the value. Lags are a day or more, so the value never informs
    /// its own features. Returns, per feature, whether the lagged bucket had
    /// data (the feature is 0 where it had not).
    pub fn push(&mut self, ts_ms: i64, value: f64, out: &mut Vec<f64>) -> [bool; 2] {
        let mut available = [false; 2];
        for (k, lag) in [DAY_MS, WEEK_MS].into_iter().enumerate() {
            let lagged = self.mean_at(ts_ms.saturating_sub(lag));
            available[k] = lagged.is_some();
            out.push(lagged.map_or(0.0, |m| value - m));
        }
        let id = ts_ms.div_euclid(BUCKET_MS);
        let s = Self::slot(id);
        if self.ids[s] != id {
            self.ids[s] = id;
            self.sums[s] = 0.0;
            self.counts[s] = 0;
        }
        self.sums[s] += value;
        self.counts[s] = self.counts[s].saturating_add(1);
        available
    }

    /// Whether the persisted vectors have the expected length.
    pub fn is_consistent(&self) -> bool {
        self.ids.len() == SLOTS && self.sums.len() == SLOTS && self.counts.len() == SLOTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_read_the_bucket_a_day_and_a_week_back() {
        let mut m = SeasonalMemory::default();
        let mut out = Vec::new();
        // Two points in one bucket eight days ago, one a day ago.
        assert_eq!(m.push(-8 * DAY_MS + 10, 4.0, &mut out), [false, false]);
        m.push(-8 * DAY_MS + 20, 6.0, &mut out);
        assert_eq!(out, vec![0.0; 4], "no history yet: neutral");
        m.push(-DAY_MS + 60_000, 9.0, &mut out);
        out.clear();
        // Now: yesterday's bucket holds 9; last week's bucket (7 days ago)
        // is empty — eight days ago is not a week ago.
        assert_eq!(m.push(60_000, 10.0, &mut out), [true, false]);
        assert_eq!(out, vec![1.0, 0.0]);
    }

    #[test]
    fn week_lag_and_slot_reuse() {
        let mut m = SeasonalMemory::default();
        let mut out = Vec::new();
        m.push(0, 2.0, &mut out);
        m.push(0, 4.0, &mut out);
        out.clear();
        m.push(WEEK_MS + 1000, 10.0, &mut out);
        assert_eq!(out, vec![0.0, 7.0]);
        // A week and a bucket later the slot of time 0 was reused: nothing
        // stale is read two weeks back.
        out.clear();
        m.push(2 * WEEK_MS + 1000, 1.0, &mut out);
        assert_eq!(out, vec![0.0, -9.0]);
        out.clear();
        m.push(3 * WEEK_MS + 2 * BUCKET_MS, 1.0, &mut out);
        assert_eq!(out, vec![0.0, 0.0]);
        assert!(m.is_consistent());
    }
}
