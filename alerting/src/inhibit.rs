//! Inhibition: a firing source alert mutes target alerts that carry the
//! same values for the rule's `equal` labels (Alertmanager semantics: an
//! alert matching both sides of a rule cannot inhibit itself or others that
//! also match both sides).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use vigil_wire::Matcher;

use crate::alert::Alert;
use crate::config::{InhibitRuleConfig, combine_matchers};
use crate::matchers::{LabelSet, matches_all};

#[derive(Debug, Clone)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    pub fn new(c: &InhibitRuleConfig) -> Self {
        Self {
            source: combine_matchers(&c.source_match, &c.source_match_re, &c.source_matchers),
            target: combine_matchers(&c.target_match, &c.target_match_re, &c.target_matchers),
            equal: c.equal.clone(),
        }
    }
}

/// The rules plus, per rule, the alerts currently matching its source side.
#[derive(Debug, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    /// Per rule: fingerprint → (labels, ends_at) of source alerts.
    sources: Vec<HashMap<u64, (LabelSet, DateTime<Utc>)>>,
}

impl Inhibitor {
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        let sources = rules.iter().map(|_| HashMap::new()).collect();
        Self { rules, sources }
    }

    /// Records a new or updated alert.
    pub fn observe(&mut self, a: &Alert) {
        for (r, cache) in self.rules.iter().zip(self.sources.iter_mut()) {
            if matches_all(&r.source, &a.labels) {
                cache.insert(a.fingerprint, (a.labels.clone(), a.ends_at));
            }
        }
    }

    /// Forgets an alert removed from the store.
    pub fn forget(&mut self, fp: u64) {
        for cache in &mut self.sources {
            cache.remove(&fp);
        }
    }

    /// The fingerprint of an alert inhibiting `labels` at `now`, if any.
    pub fn inhibited_by(&self, labels: &LabelSet, now: DateTime<Utc>) -> Option<u64> {
        for (r, cache) in self.rules.iter().zip(self.sources.iter()) {
            if !matches_all(&r.target, labels) {
                continue;
            }
            let two_sided = matches_all(&r.source, labels);
            for (fp, (src, ends_at)) in cache {
                if *ends_at <= now {
                    continue;
                }
                let equal = r.equal.iter().all(|n| src.get(n) == labels.get(n));
                if !equal {
                    continue;
                }
                if two_sided && matches_all(&r.target, src) {
                    continue;
                }
                return Some(*fp);
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::PostableAlert;

    fn alert(pairs: &[(&str, &str)], now: DateTime<Utc>) -> Alert {
        let p = PostableAlert {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        Alert::from_postable(p, now, chrono::Duration::minutes(5)).expect("valid alert")
    }

    fn rule(yaml: &str) -> InhibitRule {
        InhibitRule::new(&serde_saphyr::from_str(yaml).expect("valid rule"))
    }

    #[test]
    fn critical_mutes_warning_with_equal_labels() {
        let now = Utc::now();
        let mut ih = Inhibitor::new(vec![rule(
            "source_matchers: ['severity=\"critical\"']\ntarget_matchers: ['severity=\"warning\"']\nequal: [alertname, instance]\n",
        )]);
        let crit = alert(
            &[
                ("alertname", "Cpu"),
                ("instance", "a"),
                ("severity", "critical"),
            ],
            now,
        );
        ih.observe(&crit);
        let warn_same = alert(
            &[
                ("alertname", "Cpu"),
                ("instance", "a"),
                ("severity", "warning"),
            ],
            now,
        );
        let warn_other = alert(
            &[
                ("alertname", "Cpu"),
                ("instance", "b"),
                ("severity", "warning"),
            ],
            now,
        );
        assert_eq!(
            ih.inhibited_by(&warn_same.labels, now),
            Some(crit.fingerprint)
        );
        assert_eq!(ih.inhibited_by(&warn_other.labels, now), None);
        assert_eq!(ih.inhibited_by(&crit.labels, now), None);
        // Once the source resolves, the target is released.
        let later = now + chrono::Duration::minutes(6);
        assert_eq!(ih.inhibited_by(&warn_same.labels, later), None);
    }

    #[test]
    fn legacy_syntax_and_two_sided_exclusion() {
        let now = Utc::now();
        let mut ih = Inhibitor::new(vec![rule(
            "source_match: {team: a}\ntarget_match_re: {team: \"a|b\"}\n",
        )]);
        let a = alert(&[("team", "a"), ("x", "1")], now);
        ih.observe(&a);
        // Matches both sides: cannot be inhibited by another two-sided alert.
        let a2 = alert(&[("team", "a"), ("x", "2")], now);
        assert_eq!(ih.inhibited_by(&a2.labels, now), None);
        let b = alert(&[("team", "b")], now);
        assert_eq!(ih.inhibited_by(&b.labels, now), Some(a.fingerprint));
    }
}
