//! Bounded label values: the top N tenants (by cost), agents and tools (by
//! calls) keep their own label value; the rest share `other`.
//!
//! A name's label is decided when its data arrives, from its cumulative
//! weight (cost in USD, or calls) since the agent started:
//!
//! - while fewer than N names are named, a new name is named at once;
//! - otherwise it takes the place of the smallest named name once its
//!   weight exceeds that one's by more than [`HYSTERESIS`] (so two names of
//!   about the same weight do not swap back and forth);
//! - names in the pinned list are always named, outside the N.
//!
//! Counters stay monotonic through moves, as Prometheus requires: a named
//! name's series only ever grow; when it is demoted its series are taken
//! out of the exposition and parked (with their values), and its further
//! data goes to `other`, which also only grows. Promoted again, its series
//! come back from the parked values. So every unit is counted exactly once,
//! in the series whose label it had when it arrived, and `sum without
//! (tenant)` is the exact total at any time.
//!
//! Weights are tracked for at most [`MAX_TRACKED`] names (memory, not
//! series): past that, a new name replaces the smallest unnamed one and
//! inherits its weight (the Space-Saving algorithm of Metwally, Agrawal and
//! El Abbadi, 2005), which never misses a name heavier than the smallest
//! tracked one. An evicted name's parked series are dropped: if it comes
//! back and is named again, its series restart from zero, which Prometheus
//! reads as a counter reset (`rate`/`increase` stay correct).

use std::collections::{HashMap, HashSet};

use super::{Aggregator, Parked};

/// The label value of everything not named.
pub const OTHER: &str = "other";
/// A name replaces the smallest named one when heavier by more than this
/// fraction.
pub const HYSTERESIS: f64 = 0.10;
/// Most names whose weight is tracked.
pub const MAX_TRACKED: usize = 10_000;

/// One bounded label.
#[derive(Debug)]
pub struct TopN {
    label: &'static str,
    /// The families carrying the label, whose series move on demotion.
    families: &'static [&'static str],
    limit: usize,
    pinned: HashSet<String>,
    weights: HashMap<String, f64>,
    named: HashSet<String>,
    parked: HashMap<String, Vec<Parked>>,
    max_tracked: usize,
}

impl TopN {
    pub fn new(
        label: &'static str,
        families: &'static [&'static str],
        limit: usize,
        pinned: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            label,
            families,
            limit,
            pinned: pinned.into_iter().collect(),
            weights: HashMap::new(),
            named: HashSet::new(),
            parked: HashMap::new(),
            max_tracked: MAX_TRACKED,
        }
    }

    /// Adds `weight` to `name` and returns the label value its data gets
    /// now: the name itself, or [`OTHER`].
    pub fn label_for(&mut self, name: &str, weight: f64, agg: &mut Aggregator) -> String {
        if self.pinned.contains(name) {
            return name.to_string();
        }
        let w = self.add_weight(name, weight.max(0.0));
        if self.named.contains(name) {
            return name.to_string();
        }
        if self.named.len() < self.limit {
            self.promote(name, agg);
            return name.to_string();
        }
        let smallest = self
            .named
            .iter()
            .map(|n| (n, self.weights.get(n).copied().unwrap_or(0.0)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(n, w)| (n.clone(), w));
        match smallest {
            Some((small, sw)) if w > sw * (1.0 + HYSTERESIS) && w > sw => {
                self.demote(&small, agg);
                self.promote(name, agg);
                name.to_string()
            }
            _ => OTHER.to_string(),
        }
    }

    /// Names currently named (pinned ones aside).
    pub fn named(&self) -> impl Iterator<Item = &str> {
        self.named.iter().map(String::as_str)
    }

    fn add_weight(&mut self, name: &str, weight: f64) -> f64 {
        if let Some(w) = self.weights.get_mut(name) {
            *w += weight;
            return *w;
        }
        let mut start = 0.0;
        if self.weights.len() >= self.max_tracked {
            // Space-Saving: the smallest unnamed name makes room and the
            // newcomer inherits its weight.
            let victim = self
                .weights
                .iter()
                .filter(|(n, _)| !self.named.contains(*n))
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(n, w)| (n.clone(), *w));
            if let Some((victim, vw)) = victim {
                self.weights.remove(&victim);
                self.parked.remove(&victim);
                start = vw;
            }
        }
        self.weights.insert(name.to_string(), start + weight);
        start + weight
    }

    fn demote(&mut self, name: &str, agg: &mut Aggregator) {
        self.named.remove(name);
        let mut parked = Vec::new();
        for family in self.families {
            parked.extend(agg.take_series(family, self.label, name));
        }
        if !parked.is_empty() {
            self.parked.insert(name.to_string(), parked);
        }
    }

    fn promote(&mut self, name: &str, agg: &mut Aggregator) {
        self.named.insert(name.to_string());
        if let Some(parked) = self.parked.remove(name) {
            agg.restore_series(parked);
        }
    }
}

#[cfg(test)]
mod tests {
    use vigil_wire::Labels;
    use vigil_wire::remote_write::MetricType;

    use super::*;

    const FAMILIES: &[&str] = &["cost_total"];

    fn add(agg: &mut Aggregator, top: &mut TopN, tenant: &str, cost: f64) -> String {
        let label = top.label_for(tenant, cost, agg);
        agg.value(
            "cost_total",
            "",
            MetricType::Counter,
            "",
            Labels::from_pairs([("tenant", label.as_str())]),
            cost,
            true,
        )
        .expect("series");
        label
    }

    fn exposed(agg: &Aggregator) -> HashMap<String, f64> {
        agg.families()
            .iter()
            .flat_map(|f| f.series.iter())
            .map(|s| (s.labels.get("tenant").unwrap_or("").to_string(), s.value))
            .collect()
    }

    #[test]
    fn top_tenants_keep_their_name_and_moves_keep_counters_monotonic() {
        let mut agg = Aggregator::new(100);
        let mut top = TopN::new("tenant", FAMILIES, 2, ["pinned".to_string()]);
        assert_eq!(add(&mut agg, &mut top, "a", 5.0), "a");
        assert_eq!(add(&mut agg, &mut top, "b", 3.0), "b");
        // Full: c is smaller than b, so it is other.
        assert_eq!(add(&mut agg, &mut top, "c", 1.0), OTHER);
        assert_eq!(add(&mut agg, &mut top, "pinned", 0.5), "pinned");
        // c grows to 3.2: not more than 10% over b's 3, still other.
        assert_eq!(add(&mut agg, &mut top, "c", 2.2), OTHER);
        // c reaches 4: takes b's place; b's series is parked.
        assert_eq!(add(&mut agg, &mut top, "c", 0.8), "c");
        let e = exposed(&agg);
        assert_eq!(e.get("b"), None, "a demoted tenant's series is parked");
        assert_eq!(e.get("c"), Some(&0.8), "only what came after promotion");
        assert_eq!(e.get(OTHER), Some(&3.2));
        let total: f64 = e.values().sum::<f64>() + 3.0;
        assert!((total - 12.5).abs() < 1e-12, "every dollar counted once");
        // b comes back at 7, over the smallest named (c, 4): c is parked
        // and b's parked series resumes at 3.
        assert_eq!(add(&mut agg, &mut top, "b", 4.0), "b");
        let e = exposed(&agg);
        assert_eq!(e.get("b"), Some(&7.0), "resumed from the parked value");
        assert_eq!(e.get("a"), Some(&5.0));
        assert_eq!(e.get("c"), None);
        assert_eq!(e.get(OTHER), Some(&3.2), "other never decreases");
        let total: f64 = e.values().sum::<f64>() + 0.8;
        assert!((total - 16.5).abs() < 1e-12);
    }

    #[test]
    fn tracking_is_bounded_and_keeps_heavy_hitters() {
        let mut agg = Aggregator::new(100);
        let mut top = TopN::new("tenant", FAMILIES, 1, []);
        top.max_tracked = 3;
        assert_eq!(add(&mut agg, &mut top, "big", 10.0), "big");
        for i in 0..50 {
            add(&mut agg, &mut top, &format!("t{i}"), 0.01);
        }
        assert!(top.weights.len() <= 3);
        assert_eq!(top.named().collect::<Vec<_>>(), vec!["big"]);
    }
}
