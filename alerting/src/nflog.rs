//! The notification log: what was last notified per (receiver,
//! integration, group), so a flush only notifies when the set of firing or
//! resolved alerts changed or the repeat interval passed (Alertmanager's
//! `DedupStage`). Entries are persisted with the outbox row they produced,
//! so a restart neither forgets nor repeats a notification.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::RepeatBackoff;

/// Identifies one integration of a receiver, e.g. `webhook[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntegrationId {
    pub kind: String,
    pub index: usize,
}

impl std::fmt::Display for IntegrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.kind, self.index)
    }
}

/// Key of a log entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NflogKey {
    pub receiver: String,
    pub integration: IntegrationId,
    pub group_key: String,
}

impl NflogKey {
    /// The key as stored in SQLite.
    pub fn storage_key(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}",
            self.receiver, self.integration, self.group_key
        )
    }
}

/// What was notified last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NflogEntry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    #[serde(with = "crate::alert::go_time")]
    pub timestamp: DateTime<Utc>,
    /// Consecutive unchanged repeats (for the escalating repeat extension).
    #[serde(default)]
    pub repeats: u32,
}

/// Whether a peer's `incoming` entry replaces `current` (same key): the
/// newer notification wins; equal times are broken by content so every
/// member keeps the same entry.
pub fn supersedes(incoming: &NflogEntry, current: &NflogEntry) -> bool {
    match incoming.timestamp.cmp(&current.timestamp) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            (&incoming.firing, &incoming.resolved, incoming.repeats)
                > (&current.firing, &current.resolved, current.repeats)
        }
    }
}

/// Why a flush notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Skip,
    /// The alert set changed (or first notification).
    Changed,
    /// Nothing changed but the repeat interval passed.
    Repeat,
}

/// The repeat interval after `repeats` unchanged repeats.
pub fn effective_repeat(base: Duration, backoff: Option<&RepeatBackoff>, repeats: u32) -> Duration {
    match backoff {
        None => base,
        Some(b) => {
            let factor = b.factor.max(1.0).powi(repeats.min(64) as i32);
            let cap = b.max.0.max(base).as_secs_f64();
            Duration::from_secs_f64((base.as_secs_f64() * factor).min(cap))
        }
    }
}

/// Alertmanager's `needsUpdate`.
pub fn needs_update(
    entry: Option<&NflogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now: DateTime<Utc>,
) -> Decision {
    let Some(e) = entry else {
        return if firing.is_empty() {
            Decision::Skip
        } else {
            Decision::Changed
        };
    };
    if !firing.is_subset(&e.firing) {
        return Decision::Changed;
    }
    if firing.is_empty() {
        // All resolved: notify (irrespective of send_resolved) so the log
        // forgets the firing set, unless nothing was ever sent as firing.
        return if e.firing.is_empty() {
            Decision::Skip
        } else {
            Decision::Changed
        };
    }
    if send_resolved && !resolved.is_subset(&e.resolved) {
        return Decision::Changed;
    }
    let repeat = chrono::Duration::from_std(repeat).unwrap_or(chrono::Duration::MAX);
    if e.timestamp + repeat <= now {
        Decision::Repeat
    } else {
        Decision::Skip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn dedup_rules() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            needs_update(None, &set(&[]), &set(&[1]), true, hour, now),
            Decision::Skip
        );
        assert_eq!(
            needs_update(None, &set(&[1]), &set(&[]), true, hour, now),
            Decision::Changed
        );
        let e = NflogEntry {
            firing: set(&[1, 2]),
            resolved: set(&[]),
            timestamp: now,
            repeats: 0,
        };
        assert_eq!(
            needs_update(Some(&e), &set(&[1, 2]), &set(&[]), true, hour, now),
            Decision::Skip
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[1]), &set(&[]), false, hour, now),
            Decision::Skip
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[1]), &set(&[2]), true, hour, now),
            Decision::Changed
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[1, 3]), &set(&[]), true, hour, now),
            Decision::Changed
        );
        assert_eq!(
            needs_update(Some(&e), &set(&[]), &set(&[1, 2]), false, hour, now),
            Decision::Changed
        );
        let later = now + chrono::Duration::hours(2);
        assert_eq!(
            needs_update(Some(&e), &set(&[1, 2]), &set(&[]), true, hour, later),
            Decision::Repeat
        );
    }

    #[test]
    fn escalating_repeat_is_capped() {
        let b = RepeatBackoff {
            factor: 2.0,
            max: crate::config::PromDuration(Duration::from_secs(3600)),
        };
        let base = Duration::from_secs(600);
        assert_eq!(effective_repeat(base, Some(&b), 0), base);
        assert_eq!(
            effective_repeat(base, Some(&b), 1),
            Duration::from_secs(1200)
        );
        assert_eq!(
            effective_repeat(base, Some(&b), 5),
            Duration::from_secs(3600)
        );
        assert_eq!(effective_repeat(base, None, 5), base);
    }

    fn entry(ts: i64, firing: &[u64], repeats: u32) -> NflogEntry {
        NflogEntry {
            firing: set(firing),
            resolved: set(&[]),
            timestamp: DateTime::from_timestamp(ts, 0).expect("valid time"),
            repeats,
        }
    }

    /// Merges `incoming` into `current` as a member does.
    fn merge(current: &mut Option<NflogEntry>, incoming: &NflogEntry) -> bool {
        match current {
            Some(c) if !supersedes(incoming, c) => false,
            _ => {
                *current = Some(incoming.clone());
                true
            }
        }
    }

    #[test]
    fn newest_entry_wins_and_merging_twice_changes_nothing() {
        let old = entry(100, &[1], 0);
        let new = entry(200, &[1, 2], 0);
        let mut cur = Some(old.clone());
        assert!(merge(&mut cur, &new));
        assert!(!merge(&mut cur, &new), "idempotent");
        assert!(!merge(&mut cur, &old), "an older entry never wins");
        assert_eq!(cur, Some(new));
        // Equal times: content decides, the same way everywhere.
        let a = entry(300, &[1], 0);
        let b = entry(300, &[2], 0);
        assert!(supersedes(&b, &a) != supersedes(&a, &b));
    }

    proptest::proptest! {
        /// Any order of the same entries ends in the same state.
        #[test]
        fn merges_converge_in_any_order(
            raw in proptest::collection::vec((0i64..5, 0u64..3, 0u32..2), 1..8),
            seed in 0u64..1000,
        ) {
            let entries: Vec<NflogEntry> =
                raw.iter().map(|(t, f, r)| entry(*t, &[*f], *r)).collect();
            let mut forward = None;
            for e in &entries {
                merge(&mut forward, e);
            }
            let mut shuffled = entries.clone();
            // A deterministic permutation from the seed.
            let n = shuffled.len();
            for i in 0..n {
                shuffled.swap(i, (seed as usize + i * 7) % n);
            }
            let mut other = None;
            for e in shuffled.iter().chain(entries.iter()) {
                merge(&mut other, e);
            }
            proptest::prop_assert_eq!(forward, other);
        }
    }
}
