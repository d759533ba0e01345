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
}
