//! Incidents: every alert episode (one fingerprint from its first firing to
//! its resolution) kept with what happened to it: the notifications sent
//! for it and their outcome, acknowledgements, escalations and notes.
//!
//! The book is held in memory and persisted row by row (`incidents` table of
//! `alerting.db`, one JSON body per incident). Every change is an
//! idempotent "apply" operation keyed by stable ids (the incident id is the
//! fingerprint and the episode's start; acks and notes carry their own id;
//! notifications are keyed by their outbox id; escalations by their rule),
//! so the same change applied twice, or received from a peer later, leaves
//! the incident as applying it once.

pub mod api;
pub mod service;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::matchers::{LabelSet, fingerprint_hex};
use crate::outbox::OutboxEntry;
use crate::store::Write;

/// Notification records kept per incident; older ones are dropped (and
/// counted in `notifications_dropped`) so a flapping receiver cannot grow
/// one row without bound.
pub const MAX_NOTIFICATIONS: usize = 500;

/// Group keys of escalation notifications start with this.
pub const ESCALATION_GROUP_PREFIX: &str = "vigil-escalation/";

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    pub author: String,
    pub comment: String,
    #[serde(with = "crate::alert::go_time")]
    pub at: DateTime<Utc>,
}

/// An ack or a note: applied once by id, kept in time order.
trait Entry {
    fn id(&self) -> &str;
    fn at(&self) -> DateTime<Utc>;
}

impl Entry for Ack {
    fn id(&self) -> &str {
        &self.id
    }
    fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

impl Entry for Note {
    fn id(&self) -> &str {
        &self.id
    }
    fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// Adds `item` unless one with its id is there; keeps the list ordered by
/// time, then id (the same order on every cluster member). Whether it
/// was added.
fn insert_once<T: Entry>(list: &mut Vec<T>, item: T) -> bool {
    if list.iter().any(|x| x.id() == item.id()) {
        return false;
    }
    list.push(item);
    list.sort_by(|a, b| a.at().cmp(&b.at()).then_with(|| a.id().cmp(b.id())));
    true
}

/// One note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub author: String,
    pub text: String,
    #[serde(with = "crate::alert::go_time")]
    pub at: DateTime<Utc>,
}

/// One escalation: the rule (its key, see [`crate::escalation`]) sent the
/// alert to its receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRecord {
    pub rule: String,
    pub receiver: String,
    /// How long after the start the rule escalates (`15m`).
    pub after: String,
    #[serde(with = "crate::alert::go_time")]
    pub at: DateTime<Utc>,
}

/// The outcome of one notification that carried the incident's alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// The outbox id of the notification.
    pub id: u64,
    pub receiver: String,
    /// `webhook[0]`, `email[1]`, ...
    pub integration: String,
    #[serde(with = "crate::alert::go_time")]
    pub at: DateTime<Utc>,
    /// Delivered (`true`) or given up on (`false`).
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    pub attempts: u32,
    /// The alert's status in that notification (`firing`, `resolved`).
    pub status: String,
    /// Sent by an escalation rule rather than by the routing tree.
    #[serde(default)]
    pub escalation: bool,
}

/// One alert episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub fingerprint: u64,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    #[serde(with = "crate::alert::go_time")]
    pub starts_at: DateTime<Utc>,
    /// `None` while the episode is open.
    #[serde(default, with = "crate::alert::opt_time")]
    pub ends_at: Option<DateTime<Utc>>,
    /// The highest value the alert carried (Vigil's own rule and anomaly
    /// alerts carry their expression's value; alerts posted to the v2 API
    /// carry none, and the peak stays `None`).
    #[serde(default)]
    pub peak_value: Option<f64>,
    #[serde(default)]
    pub notifications: Vec<NotificationRecord>,
    #[serde(default)]
    pub notifications_dropped: u64,
    #[serde(default)]
    pub acks: Vec<Ack>,
    #[serde(default)]
    pub escalations: Vec<EscalationRecord>,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(with = "crate::alert::go_time")]
    pub updated_at: DateTime<Utc>,
}

impl Incident {
    /// The stable id of the episode of `fp` that started at `start`.
    pub fn id_for(fp: u64, start: DateTime<Utc>) -> String {
        format!("{}-{}", fingerprint_hex(fp), start.timestamp_millis())
    }

    fn new(alert: &Alert, value: Option<f64>, now: DateTime<Utc>) -> Incident {
        Incident {
            id: Self::id_for(alert.fingerprint, alert.starts_at),
            fingerprint: alert.fingerprint,
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at: alert.starts_at,
            ends_at: None,
            peak_value: value.filter(|v| v.is_finite()),
            notifications: Vec::new(),
            notifications_dropped: 0,
            acks: Vec::new(),
            escalations: Vec::new(),
            notes: Vec::new(),
            updated_at: now,
        }
    }

    pub fn is_open(&self) -> bool {
        self.ends_at.is_none()
    }

    pub fn acked(&self) -> bool {
        !self.acks.is_empty()
    }

    fn observe_value(&mut self, value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite())
            && self.peak_value.is_none_or(|p| v > p)
        {
            self.peak_value = Some(v);
        }
    }
}

/// What the dispatcher needs to know about an acknowledged episode.
#[derive(Debug, Clone, PartialEq)]
pub struct AckView {
    /// The episode is still open (the ack stops repeats only then).
    pub open: bool,
    pub author: String,
    pub comment: String,
    pub at: DateTime<Utc>,
}

/// An open incident as the escalation check sees it.
#[derive(Debug, Clone)]
pub struct OpenIncident {
    pub id: String,
    pub fingerprint: u64,
    pub starts_at: DateTime<Utc>,
    pub acked: bool,
    pub escalated: Vec<String>,
}

/// Why an ack or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncidentError {
    #[error("no alert with fingerprint {0}")]
    UnknownAlert(String),
    #[error("alert {0} is resolved; only a firing alert can be acknowledged")]
    Resolved(String),
    #[error("no incident {0}")]
    UnknownIncident(String),
    #[error("{0}")]
    Invalid(String),
    #[error("alerting store: {0}")]
    Store(String),
}

/// Which incidents a listing wants.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// `Some(true)`: open only; `Some(false)`: closed only.
    pub open: Option<bool>,
    /// Incidents active at some point in `[from, to]`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub matchers: Vec<vigil_wire::Matcher>,
    pub limit: usize,
}

/// Every incident, indexed by id and fingerprint.
#[derive(Debug, Default)]
pub struct IncidentBook {
    by_id: HashMap<String, Incident>,
    /// Ids per fingerprint, oldest start first.
    by_fp: HashMap<u64, Vec<String>>,
}

fn put(i: &Incident) -> Write {
    Write::PutIncident(Box::new(i.clone()))
}

impl IncidentBook {
    pub fn load(list: Vec<Incident>) -> Self {
        let mut b = IncidentBook::default();
        for i in list {
            b.insert(i);
        }
        b
    }

    fn insert(&mut self, i: Incident) {
        let ids = self.by_fp.entry(i.fingerprint).or_default();
        if !ids.contains(&i.id) {
            ids.push(i.id.clone());
            let by_id = &self.by_id;
            ids.sort_by_key(|id| by_id.get(id).map(|x| x.starts_at).unwrap_or(i.starts_at));
        }
        self.by_id.insert(i.id.clone(), i);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// (open, closed) incidents.
    pub fn counts(&self) -> (usize, usize) {
        let open = self.by_id.values().filter(|i| i.is_open()).count();
        (open, self.by_id.len() - open)
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.by_id.get(id)
    }

    /// The newest incident of a fingerprint.
    pub fn latest(&self, fp: u64) -> Option<&Incident> {
        self.by_fp
            .get(&fp)
            .and_then(|ids| ids.last())
            .and_then(|id| self.by_id.get(id))
    }

    /// The incident of `fp` whose episode started within `tolerance` of
    /// `start`: the same episode as a cluster peer saw it (each member
    /// evaluates the rules itself, so starts differ by an evaluation).
    pub fn episode_near(
        &self,
        fp: u64,
        start: DateTime<Utc>,
        tolerance: chrono::Duration,
    ) -> Option<&Incident> {
        self.by_fp
            .get(&fp)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
            .filter(|i| (i.starts_at - start).abs() <= tolerance)
            .min_by_key(|i| (i.starts_at - start).abs())
    }

    fn open_id(&self, fp: u64) -> Option<String> {
        self.latest(fp)
            .filter(|i| i.is_open())
            .map(|i| i.id.clone())
    }

    /// Records an alert update. `new_episode` says the alert was unknown
    /// or resolved before this update (so a firing update starts a new
    /// incident); `value` is the value the alert carried, if any.
    pub fn observe(
        &mut self,
        alert: &Alert,
        new_episode: bool,
        value: Option<f64>,
        now: DateTime<Utc>,
    ) -> Vec<Write> {
        let mut writes = Vec::new();
        let open = self.open_id(alert.fingerprint);
        if alert.resolved_at(now) {
            // Only an episode that is known ends; a resolved alert for
            // nothing open (Prometheus re-sends resolutions) adds nothing.
            if let Some(id) = open
                && let Some(i) = self.by_id.get_mut(&id)
            {
                i.observe_value(value);
                i.annotations = alert.annotations.clone();
                i.ends_at = Some(alert.ends_at.max(i.starts_at));
                i.updated_at = now;
                writes.push(put(i));
            }
            return writes;
        }
        if let Some(id) = &open {
            let same = self
                .by_id
                .get(id)
                .is_some_and(|i| !new_episode || i.starts_at >= alert.starts_at);
            if same {
                if let Some(i) = self.by_id.get_mut(id) {
                    i.observe_value(value);
                    let changed = i.annotations != alert.annotations;
                    i.annotations = alert.annotations.clone();
                    if changed || value.is_some() {
                        i.updated_at = now;
                        writes.push(put(i));
                    }
                }
                return writes;
            }
            // The alert resolved and fired again before the old episode
            // was closed: close it where the new one starts.
            if let Some(i) = self.by_id.get_mut(id) {
                i.ends_at = Some(alert.starts_at.max(i.starts_at));
                i.updated_at = now;
                writes.push(put(i));
            }
        }
        let fresh = Incident::new(alert, value, now);
        match self.by_id.get_mut(&fresh.id) {
            // The same episode seen again (same fingerprint and start):
            // reopen rather than duplicate.
            Some(i) => {
                i.ends_at = None;
                i.observe_value(value);
                i.updated_at = now;
                writes.push(put(i));
            }
            None => {
                writes.push(put(&fresh));
                self.insert(fresh);
            }
        }
        writes
    }

    /// Ends an open incident at `at`.
    pub fn close(&mut self, id: &str, at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Write> {
        let i = self.by_id.get_mut(id)?;
        if !i.is_open() {
            return None;
        }
        i.ends_at = Some(at.max(i.starts_at));
        i.updated_at = now;
        Some(put(i))
    }

    /// The open incident of a firing alert, created if missing.
    fn open_for(&mut self, alert: &Alert, now: DateTime<Utc>) -> (String, Vec<Write>) {
        if let Some(id) = self.open_id(alert.fingerprint) {
            return (id, Vec::new());
        }
        let writes = self.observe(alert, true, None, now);
        let id = self
            .open_id(alert.fingerprint)
            .unwrap_or_else(|| Incident::id_for(alert.fingerprint, alert.starts_at));
        (id, writes)
    }

    /// Acknowledges the current episode of a firing alert.
    pub fn ack(
        &mut self,
        alert: &Alert,
        ack: Ack,
        now: DateTime<Utc>,
    ) -> Result<(String, Vec<Write>), IncidentError> {
        if alert.resolved_at(now) {
            return Err(IncidentError::Resolved(fingerprint_hex(alert.fingerprint)));
        }
        let (id, mut writes) = self.open_for(alert, now);
        writes.extend(self.apply_ack(&id, ack, now)?);
        Ok((id, writes))
    }

    /// Adds an ack to an incident unless one with its id is there already.
    pub fn apply_ack(
        &mut self,
        id: &str,
        ack: Ack,
        now: DateTime<Utc>,
    ) -> Result<Option<Write>, IncidentError> {
        let i = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| IncidentError::UnknownIncident(id.to_string()))?;
        if !insert_once(&mut i.acks, ack) {
            return Ok(None);
        }
        i.updated_at = now;
        Ok(Some(put(i)))
    }

    /// Adds a note unless one with its id is there already.
    pub fn apply_note(
        &mut self,
        id: &str,
        note: Note,
        now: DateTime<Utc>,
    ) -> Result<Option<Write>, IncidentError> {
        let i = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| IncidentError::UnknownIncident(id.to_string()))?;
        if !insert_once(&mut i.notes, note) {
            return Ok(None);
        }
        i.updated_at = now;
        Ok(Some(put(i)))
    }

    /// Records an escalation unless its rule escalated this incident already.
    pub fn apply_escalation(
        &mut self,
        id: &str,
        rec: EscalationRecord,
        now: DateTime<Utc>,
    ) -> Option<Write> {
        let i = self.by_id.get_mut(id)?;
        if i.escalations.iter().any(|e| e.rule == rec.rule) {
            return None;
        }
        i.escalations.push(rec);
        i.updated_at = now;
        Some(put(i))
    }

    /// The incident an alert of a notification belongs to: the episode of
    /// its fingerprint that had started by the alert's start, else the
    /// newest one.
    fn for_notified_alert(&self, fp: u64, starts_at: DateTime<Utc>) -> Option<String> {
        let ids = self.by_fp.get(&fp)?;
        ids.iter()
            .rev()
            .find(|id| {
                self.by_id
                    .get(*id)
                    .is_some_and(|i| i.starts_at <= starts_at)
            })
            .or_else(|| ids.last())
            .cloned()
    }

    /// Records the outcome of a notification (ok, or given up on) on the
    /// incident of every alert it carried.
    pub fn record_delivery(
        &mut self,
        entry: &OutboxEntry,
        ok: bool,
        error: Option<&str>,
        attempts: u32,
        now: DateTime<Utc>,
    ) -> Vec<Write> {
        let mut writes = Vec::new();
        let escalation = entry.data.group_key.starts_with(ESCALATION_GROUP_PREFIX);
        for a in &entry.data.alerts {
            let Ok(fp) = u64::from_str_radix(&a.fingerprint, 16) else {
                continue;
            };
            let Some(id) = self.for_notified_alert(fp, a.starts_at) else {
                continue;
            };
            let Some(i) = self.by_id.get_mut(&id) else {
                continue;
            };
            if i.notifications.iter().any(|n| n.id == entry.id) {
                continue;
            }
            i.notifications.push(NotificationRecord {
                id: entry.id,
                receiver: entry.receiver.clone(),
                integration: entry.integration.to_string(),
                at: now,
                ok,
                error: error.map(String::from),
                attempts,
                status: a.status.clone(),
                escalation,
            });
            if i.notifications.len() > MAX_NOTIFICATIONS {
                let extra = i.notifications.len() - MAX_NOTIFICATIONS;
                i.notifications.drain(..extra);
                i.notifications_dropped += extra as u64;
            }
            i.updated_at = now;
            writes.push(put(i));
        }
        writes
    }

    /// The highest outbox id recorded on any incident.
    pub fn max_notification_id(&self) -> u64 {
        self.by_id
            .values()
            .flat_map(|i| i.notifications.iter().map(|n| n.id))
            .max()
            .unwrap_or(0)
    }

    /// Per fingerprint, the last ack of its newest incident (if acked).
    pub fn ack_views(&self) -> HashMap<u64, AckView> {
        self.by_fp
            .keys()
            .filter_map(|fp| {
                let i = self.latest(*fp)?;
                let a = i.acks.last()?;
                Some((
                    *fp,
                    AckView {
                        open: i.is_open(),
                        author: a.author.clone(),
                        comment: a.comment.clone(),
                        at: a.at,
                    },
                ))
            })
            .collect()
    }

    /// The open incidents, for the escalation and closing checks.
    pub fn open(&self) -> Vec<OpenIncident> {
        self.by_id
            .values()
            .filter(|i| i.is_open())
            .map(|i| OpenIncident {
                id: i.id.clone(),
                fingerprint: i.fingerprint,
                starts_at: i.starts_at,
                acked: i.acked(),
                escalated: i.escalations.iter().map(|e| e.rule.clone()).collect(),
            })
            .collect()
    }

    /// Removes incidents that ended more than `retention` ago.
    pub fn gc(&mut self, now: DateTime<Utc>, retention: chrono::Duration) -> Vec<Write> {
        let old: Vec<(String, u64)> = self
            .by_id
            .values()
            .filter(|i| i.ends_at.is_some_and(|e| e + retention < now))
            .map(|i| (i.id.clone(), i.fingerprint))
            .collect();
        let mut writes = Vec::new();
        for (id, fp) in old {
            self.by_id.remove(&id);
            if let Some(ids) = self.by_fp.get_mut(&fp) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.by_fp.remove(&fp);
                }
            }
            writes.push(Write::DeleteIncident(id));
        }
        writes
    }

    /// Incidents passing `f`, newest start first, at most `f.limit`.
    pub fn list(&self, f: &IncidentFilter) -> Vec<&Incident> {
        let mut out: Vec<&Incident> = self
            .by_id
            .values()
            .filter(|i| f.open.is_none_or(|o| o == i.is_open()))
            .filter(|i| f.to.is_none_or(|to| i.starts_at <= to))
            .filter(|i| {
                f.from
                    .is_none_or(|from| i.ends_at.is_none_or(|e| e >= from))
            })
            .filter(|i| crate::matchers::matches_all(&f.matchers, &i.labels))
            .collect();
        out.sort_by(|a, b| b.starts_at.cmp(&a.starts_at).then_with(|| a.id.cmp(&b.id)));
        out.truncate(f.limit);
        out
    }
}

/// A random id for an ack or a note (128 bits, hex).
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests;
