//! Silences: the v2 API shapes, validation, the create/update/expire rules
//! of Alertmanager, and matching against alerts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_wire::{MatchOp, Matcher};

use crate::alert::{format_go_time, opt_time};
use crate::matchers::{LabelSet, matches_all};

/// A matcher in the v2 API's JSON form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiMatcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    #[serde(rename = "isEqual", default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl ApiMatcher {
    pub fn to_matcher(&self) -> Result<Matcher, String> {
        if !vigil_wire::labels::is_valid_label_name(&self.name) {
            return Err(format!("invalid label name {:?}", self.name));
        }
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::RegexMatch,
            (true, false) => MatchOp::RegexNoMatch,
        };
        Matcher::new(self.name.clone(), op, self.value.clone()).map_err(|e| e.to_string())
    }
}

/// The body of `POST /api/v2/silences`.
#[derive(Debug, Clone, Deserialize)]
pub struct PostableSilence {
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<ApiMatcher>,
    #[serde(rename = "startsAt", with = "opt_time", default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(rename = "endsAt", with = "opt_time", default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "createdBy", default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<ApiMatcher>,
    #[serde(with = "crate::alert::go_time")]
    pub starts_at: DateTime<Utc>,
    #[serde(with = "crate::alert::go_time")]
    pub ends_at: DateTime<Utc>,
    #[serde(with = "crate::alert::go_time")]
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

impl Silence {
    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if self.ends_at <= now {
            SilenceState::Expired
        } else if self.starts_at > now {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// The v2 API's `gettableSilence`.
    pub fn to_json(&self, now: DateTime<Utc>) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "status": {"state": self.state(now).as_str()},
            "updatedAt": format_go_time(&self.updated_at),
            "comment": self.comment,
            "createdBy": self.created_by,
            "endsAt": format_go_time(&self.ends_at),
            "matchers": self.matchers,
            "startsAt": format_go_time(&self.starts_at),
        })
    }
}

/// Errors a silence request can hit; the API maps them to 400/404.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Invalid(String),
    #[error("silence {0} not found")]
    NotFound(String),
}

/// All silences, with compiled matchers.
#[derive(Debug, Default)]
pub struct Silences {
    by_id: HashMap<String, (Silence, Vec<Matcher>)>,
}

impl Silences {
    pub fn load(list: Vec<Silence>) -> Self {
        let mut s = Self::default();
        for sil in list {
            if let Ok(ms) = sil
                .matchers
                .iter()
                .map(ApiMatcher::to_matcher)
                .collect::<Result<Vec<_>, _>>()
            {
                s.by_id.insert(sil.id.clone(), (sil, ms));
            }
        }
        s
    }

    /// Merges a silence from a cluster peer: kept when this member has no
    /// silence with its ID or holds an older version ([`supersedes`]).
    /// Returns whether anything changed. Idempotent and order-independent,
    /// so members converge whatever order gossip delivers versions in.
    pub fn merge(&mut self, incoming: Silence) -> bool {
        if let Some((current, _)) = self.by_id.get(&incoming.id)
            && !supersedes(&incoming, current)
        {
            return false;
        }
        let Ok(ms) = incoming
            .matchers
            .iter()
            .map(ApiMatcher::to_matcher)
            .collect::<Result<Vec<_>, _>>()
        else {
            return false;
        };
        self.by_id.insert(incoming.id.clone(), (incoming, ms));
        true
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id).map(|(s, _)| s)
    }

    pub fn list(&self) -> impl Iterator<Item = &Silence> {
        self.by_id.values().map(|(s, _)| s)
    }

    /// IDs of active silences muting these labels.
    pub fn silenced_by(&self, labels: &LabelSet, now: DateTime<Utc>) -> Vec<String> {
        let mut ids: Vec<String> = self
            .by_id
            .values()
            .filter(|(s, ms)| s.state(now) == SilenceState::Active && matches_all(ms, labels))
            .map(|(s, _)| s.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Creates or updates a silence, returning the stored silences that
    /// changed (an update that cannot be done in place expires the old one
    /// and creates a new one, as Alertmanager does).
    pub fn upsert(
        &mut self,
        p: PostableSilence,
        now: DateTime<Utc>,
    ) -> Result<Vec<Silence>, SilenceError> {
        let invalid = SilenceError::Invalid;
        if p.matchers.is_empty() {
            return Err(invalid("at least one matcher required".into()));
        }
        let ms = p
            .matchers
            .iter()
            .map(ApiMatcher::to_matcher)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        if ms.iter().all(|m| m.matches_value("")) {
            return Err(invalid(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        let starts_at = p
            .starts_at
            .ok_or_else(|| invalid("invalid zero start timestamp".into()))?;
        let ends_at = p
            .ends_at
            .ok_or_else(|| invalid("invalid zero end timestamp".into()))?;
        if ends_at < starts_at {
            return Err(invalid("end time must not be before start time".into()));
        }
        let mut changed = Vec::new();
        if let Some(id) = p.id.as_deref().filter(|id| !id.is_empty()) {
            let Some((old, _)) = self.by_id.get(id).cloned() else {
                return Err(SilenceError::NotFound(id.to_string()));
            };
            let state = old.state(now);
            // Alertmanager updates in place only when the matchers are the
            // same and the change does not move an active silence's start.
            let in_place = old.matchers == p.matchers
                && match state {
                    SilenceState::Expired => false,
                    SilenceState::Active => starts_at == old.starts_at && ends_at > now,
                    SilenceState::Pending => starts_at >= now,
                };
            if in_place {
                let mut s = old.clone();
                s.ends_at = ends_at;
                s.starts_at = starts_at;
                s.comment = p.comment;
                s.created_by = p.created_by;
                s.updated_at = now;
                self.by_id.insert(s.id.clone(), (s.clone(), ms));
                changed.push(s);
                return Ok(changed);
            }
            if state != SilenceState::Expired {
                changed.push(self.expire(id, now)?);
            }
        }
        if ends_at <= now {
            return Err(invalid("end time can't be in the past".into()));
        }
        let s = Silence {
            id: new_uuid(),
            matchers: p.matchers,
            starts_at: starts_at.max(now),
            ends_at,
            updated_at: now,
            created_by: p.created_by,
            comment: p.comment,
        };
        self.by_id.insert(s.id.clone(), (s.clone(), ms));
        changed.push(s);
        Ok(changed)
    }

    /// Expires a silence now. A pending one ends before it began.
    pub fn expire(&mut self, id: &str, now: DateTime<Utc>) -> Result<Silence, SilenceError> {
        let (s, _) = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        match s.state(now) {
            SilenceState::Expired => {
                return Err(SilenceError::Invalid("silence already expired".into()));
            }
            SilenceState::Pending => {
                s.starts_at = now;
                s.ends_at = now;
            }
            SilenceState::Active => s.ends_at = now,
        }
        s.updated_at = now;
        Ok(s.clone())
    }

    /// Drops silences expired longer than `retention` ago; returns their IDs.
    pub fn gc(&mut self, now: DateTime<Utc>, retention: chrono::Duration) -> Vec<String> {
        let dead: Vec<String> = self
            .by_id
            .values()
            .filter(|(s, _)| s.ends_at + retention < now)
            .map(|(s, _)| s.id.clone())
            .collect();
        for id in &dead {
            self.by_id.remove(id);
        }
        dead
    }

    pub fn count_by_state(&self, now: DateTime<Utc>) -> [(SilenceState, usize); 3] {
        let mut c = [
            (SilenceState::Active, 0),
            (SilenceState::Pending, 0),
            (SilenceState::Expired, 0),
        ];
        for (s, _) in self.by_id.values() {
            let st = s.state(now);
            if let Some(slot) = c.iter_mut().find(|(k, _)| *k == st) {
                slot.1 += 1;
            }
        }
        c
    }
}

/// Whether `incoming` replaces `current` (same ID): the later update wins;
/// equal update times are broken by content so every member picks the
/// same one.
pub fn supersedes(incoming: &Silence, current: &Silence) -> bool {
    match incoming.updated_at.cmp(&current.updated_at) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            serde_json::to_string(incoming).unwrap_or_default()
                > serde_json::to_string(current).unwrap_or_default()
        }
    }
}

/// A random (version 4) UUID, the form Alertmanager gives silence IDs.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(
        matchers: &[(&str, &str, bool, bool)],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> PostableSilence {
        PostableSilence {
            id: None,
            matchers: matchers
                .iter()
                .map(|(n, v, r, e)| ApiMatcher {
                    name: n.to_string(),
                    value: v.to_string(),
                    is_regex: *r,
                    is_equal: *e,
                })
                .collect(),
            starts_at: Some(start),
            ends_at: Some(end),
            created_by: "me".into(),
            comment: "test".into(),
        }
    }

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn silences_match_expire_and_reject_bad_input() {
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        let mut s = Silences::default();
        let created = s
            .upsert(
                post(
                    &[
                        ("alertname", "X", false, true),
                        ("sev", "crit|warn", true, true),
                    ],
                    now,
                    now + hour,
                ),
                now,
            )
            .expect("valid silence");
        let id = created[0].id.clone();
        assert_eq!(id.len(), 36);
        assert_eq!(
            s.silenced_by(&ls(&[("alertname", "X"), ("sev", "warn")]), now),
            vec![id.clone()]
        );
        assert!(
            s.silenced_by(&ls(&[("alertname", "X"), ("sev", "info")]), now)
                .is_empty()
        );
        // Pending silences do not mute yet.
        s.upsert(
            post(
                &[("alertname", "Y", false, true)],
                now + hour,
                now + hour * 2,
            ),
            now,
        )
        .expect("pending");
        assert!(s.silenced_by(&ls(&[("alertname", "Y")]), now).is_empty());
        s.expire(&id, now).expect("expire");
        assert!(
            s.silenced_by(&ls(&[("alertname", "X"), ("sev", "warn")]), now)
                .is_empty()
        );
        assert!(matches!(s.expire(&id, now), Err(SilenceError::Invalid(_))));
        assert!(s.upsert(post(&[], now, now + hour), now).is_err());
        assert!(
            s.upsert(post(&[("a", ".*", true, true)], now, now + hour), now)
                .is_err()
        );
        assert!(
            s.upsert(post(&[("a", "b", false, true)], now, now - hour), now)
                .is_err()
        );
    }

    #[test]
    fn update_in_place_or_replace() {
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        let mut s = Silences::default();
        let id = s
            .upsert(post(&[("a", "b", false, true)], now, now + hour), now)
            .expect("create")[0]
            .id
            .clone();
        let mut p = post(&[("a", "b", false, true)], now, now + hour * 2);
        p.id = Some(id.clone());
        let changed = s.upsert(p, now).expect("extend");
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].id, id);
        let mut p = post(&[("a", "c", false, true)], now, now + hour);
        p.id = Some(id.clone());
        let changed = s.upsert(p, now).expect("replace");
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0].state(now), SilenceState::Expired);
        assert_ne!(changed[1].id, id);
    }

    #[test]
    fn merge_keeps_the_newest_version_of_each_silence() {
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        let mut a = Silences::default();
        let created = a
            .upsert(post(&[("a", "b", false, true)], now, now + hour), now)
            .expect("create")[0]
            .clone();
        let mut b = Silences::default();
        assert!(b.merge(created.clone()), "new to b");
        assert!(!b.merge(created.clone()), "idempotent");
        assert_eq!(
            b.silenced_by(&ls(&[("a", "b")]), now),
            vec![created.id.clone()]
        );
        // Expired on a later: b takes the expiry, and never goes back.
        let later = now + chrono::Duration::seconds(5);
        let expired = a.expire(&created.id, later).expect("expire");
        assert!(b.merge(expired.clone()));
        assert!(!b.merge(created.clone()), "an older version never wins");
        assert_eq!(b.get(&created.id), Some(&expired));
        assert!(b.silenced_by(&ls(&[("a", "b")]), later).is_empty());
        // A silence whose matchers do not compile is refused.
        let mut bad = expired.clone();
        bad.id = "x".into();
        bad.matchers[0].name = "not a label".into();
        assert!(!b.merge(bad));
        // Same update time, different content: one rule for every member.
        let mut twin = expired.clone();
        twin.comment = "other".into();
        assert_ne!(supersedes(&twin, &expired), supersedes(&expired, &twin));
    }
}
