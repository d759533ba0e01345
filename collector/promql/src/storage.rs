//! The storage interface the engine reads from, and an in-memory store.

use std::collections::BTreeMap;

use vigil_wire::{Labels, Matcher, Sample, matches_all};

/// One series: its labels and samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// A storage failure, passed through to the query's error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// Anything the engine can select series from.
pub trait Queryable: Send + Sync {
    /// All series matching every matcher, with their samples in
    /// `[start_ms, end_ms]` (inclusive) in time order.
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError>;

    /// What [`Queryable::select`] answers, handed to `f` one series at a
    /// time in the same order; `f` answers whether to go on. Storage that
    /// can read series one by one overrides this so the engine's range
    /// functions hold one series' samples at a time instead of all of them.
    fn select_each(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(SeriesData) -> bool,
    ) -> Result<(), StorageError> {
        for series in self.select(matchers, start_ms, end_ms)? {
            if !f(series) {
                break;
            }
        }
        Ok(())
    }

    /// Evaluates a whole expression where the data lives, for storage that
    /// is itself a PromQL engine (a remote Prometheus-compatible query
    /// API), so rules push the work down instead of pulling raw samples.
    /// `None` (the default) lets the caller's engine evaluate it over
    /// [`Queryable::select`].
    fn instant_query(
        &self,
        _expr: &str,
        _at_ms: i64,
    ) -> Option<Result<crate::Value, StorageError>> {
        None
    }
}

/// In-memory storage used by the `.test` runner, by rule unit tests
/// (promtool format) and by other tests.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends samples to the series with these labels (creating it), keeping
    /// time order. A sample at an existing timestamp replaces the old one.
    pub fn add(&mut self, labels: Labels, samples: Vec<Sample>) {
        let entry = self.series.entry(labels).or_default();
        let in_order = match (entry.last(), samples.first()) {
            (Some(last), Some(first)) => last.timestamp_ms < first.timestamp_ms,
            _ => true,
        } && samples
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms);
        entry.extend(samples);
        if !in_order {
            // Stable sort, then keep the last write for each timestamp.
            entry.sort_by_key(|s| s.timestamp_ms);
            let mut merged: Vec<Sample> = Vec::with_capacity(entry.len());
            for s in entry.drain(..) {
                match merged.last_mut() {
                    Some(last) if last.timestamp_ms == s.timestamp_ms => *last = s,
                    _ => merged.push(s),
                }
            }
            *entry = merged;
        }
    }

    /// Removes every series.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// All series, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (&Labels, &[Sample])> {
        self.series.iter().map(|(l, s)| (l, s.as_slice()))
    }
}

impl Queryable for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        let mut out = Vec::new();
        for (labels, samples) in &self.series {
            if !matches_all(matchers, labels) {
                continue;
            }
            let lo = samples.partition_point(|s| s.timestamp_ms < start_ms);
            let hi = samples.partition_point(|s| s.timestamp_ms <= end_ms);
            if lo >= hi {
                continue;
            }
            out.push(SeriesData {
                labels: labels.clone(),
                samples: samples[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_wire::MatchOp;

    #[test]
    fn add_merges_and_select_filters_by_time() {
        let mut s = MemStorage::new();
        let l = Labels::from_pairs([("__name__", "m"), ("a", "1")]);
        s.add(l.clone(), vec![Sample::new(10, 1.0), Sample::new(30, 3.0)]);
        s.add(l.clone(), vec![Sample::new(20, 2.0), Sample::new(30, 4.0)]);
        s.add(
            Labels::from_pairs([("__name__", "m"), ("a", "2")]),
            vec![Sample::new(5, 9.0)],
        );
        let m = Matcher::new("a", MatchOp::RegexMatch, "1").expect("valid regex");
        let got = s.select(&[m], 15, 30).expect("mem storage never fails");
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples,
            vec![Sample::new(20, 2.0), Sample::new(30, 4.0)]
        );
    }
}
