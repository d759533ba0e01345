//! Sharing alerting state with the peers of a cluster (`vigil-cluster`).
//!
//! Four kinds of state are replicated, each with a merge that is
//! idempotent and convergent, so gossip may deliver versions in any order
//! and any number of times:
//!
//! | kind | key | value | merge |
//! |---|---|---|---|
//! | `silence` | silence ID | the stored silence (JSON) | newest `updated_at`, then content |
//! | `nflog` | 32 hex digits of SHA-256 of the log key | `[key, entry]` as stored | newest `timestamp`, then content |
//! | `ack` | ack ID | fingerprint, episode start, the ack | added once by ID to the same episode |
//! | `note` | note ID | fingerprint, episode start, the note | added once by ID to the same episode |
//!
//! Acks and notes find their incident by fingerprint and an episode start
//! within [`EPISODE_TOLERANCE`] of the sender's (each member evaluates the
//! rules itself, so its episode starts an evaluation or two apart). An ack
//! for an alert this member does not hold yet is applied by a later full
//! merge (every push-pull interval), so a peer's ack stops this member's
//! repeats too.
//!
//! Entries older than the retention are refused, so a peer that has not
//! yet garbage-collected one cannot bring it back. Accepted values are
//! written to `alerting.db` (the local store stays the source of truth
//! across restarts) and published again from this member.
//!
//! Adding a kind (acknowledgements, incidents): a `Replicated` type here
//! whose `merge` applies the store's idempotent operation and answers
//! `Changed` only when it changed something, one line in [`kinds`], and a
//! [`Alerting::publish`] call where the state changes locally.

use std::sync::{Arc, Weak};

use chrono::Utc;
use sha2::{Digest, Sha256};
use vigil_cluster::{Merge, Replicated};

use crate::Alerting;
use crate::nflog::{NflogEntry, NflogKey};
use crate::silence::Silence;
use crate::store::Write;

/// Kind name of silences.
pub const SILENCE: &str = "silence";
/// Kind name of notification log entries.
pub const NFLOG: &str = "nflog";

/// Kind name of acknowledgements.
pub const ACK: &str = "ack";
/// Kind name of incident notes.
pub const NOTE: &str = "note";
/// How far apart two members' starts of one episode may be.
pub const EPISODE_TOLERANCE: chrono::Duration = chrono::Duration::minutes(5);

/// The replicated kinds, bound to one alerting instance.
pub fn kinds(a: &Arc<Alerting>) -> Vec<Arc<dyn Replicated>> {
    vec![
        Arc::new(SilenceKind(Arc::downgrade(a))),
        Arc::new(NflogKind(Arc::downgrade(a))),
        Arc::new(AckKind(Arc::downgrade(a))),
        Arc::new(NoteKind(Arc::downgrade(a))),
    ]
}

/// An ack or a note as gossiped: the episode it belongs to and the item.
#[derive(serde::Serialize, serde::Deserialize)]
struct EpisodeItem<T> {
    fingerprint: u64,
    #[serde(with = "crate::alert::go_time")]
    episode_start: chrono::DateTime<Utc>,
    item: T,
}

struct AckKind(Weak<Alerting>);

impl Replicated for AckKind {
    fn kind(&self) -> &'static str {
        ACK
    }

    fn merge(&self, key: &str, value: &str) -> Merge {
        let Some(a) = self.0.upgrade() else {
            return Merge::Unchanged;
        };
        match serde_json::from_str::<EpisodeItem<crate::incident::Ack>>(value) {
            Ok(e) if e.item.id == key => a.merge_ack(e),
            Ok(_) => Merge::Unchanged,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable acknowledgement from a peer");
                Merge::Unchanged
            }
        }
    }
}

struct NoteKind(Weak<Alerting>);

impl Replicated for NoteKind {
    fn kind(&self) -> &'static str {
        NOTE
    }

    fn merge(&self, key: &str, value: &str) -> Merge {
        let Some(a) = self.0.upgrade() else {
            return Merge::Unchanged;
        };
        match serde_json::from_str::<EpisodeItem<crate::incident::Note>>(value) {
            Ok(e) if e.item.id == key => a.merge_note(e),
            Ok(_) => Merge::Unchanged,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable incident note from a peer");
                Merge::Unchanged
            }
        }
    }
}

/// The gossip key of a log entry (log keys hold arbitrary group keys).
pub fn nflog_key(k: &NflogKey) -> String {
    let h = Sha256::digest(k.storage_key().as_bytes());
    hex::encode(&h[..16])
}

struct SilenceKind(Weak<Alerting>);

impl Replicated for SilenceKind {
    fn kind(&self) -> &'static str {
        SILENCE
    }

    fn merge(&self, key: &str, value: &str) -> Merge {
        let Some(a) = self.0.upgrade() else {
            return Merge::Unchanged;
        };
        match serde_json::from_str::<Silence>(value) {
            Ok(s) if s.id == key => a.merge_silence(s),
            Ok(_) => Merge::Unchanged,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable silence from a peer");
                Merge::Unchanged
            }
        }
    }
}

struct NflogKind(Weak<Alerting>);

impl Replicated for NflogKind {
    fn kind(&self) -> &'static str {
        NFLOG
    }

    fn merge(&self, key: &str, value: &str) -> Merge {
        let Some(a) = self.0.upgrade() else {
            return Merge::Unchanged;
        };
        match serde_json::from_str::<(NflogKey, NflogEntry)>(value) {
            Ok((k, e)) if nflog_key(&k) == key => a.merge_nflog(k, e),
            Ok(_) => Merge::Unchanged,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable notification log entry from a peer");
                Merge::Unchanged
            }
        }
    }
}

impl Alerting {
    /// Merges a peer's silence (see [`crate::silence::supersedes`]).
    pub(crate) fn merge_silence(&self, s: Silence) -> Merge {
        let now = Utc::now();
        if s.ends_at + self.retention() < now {
            return Merge::Unchanged;
        }
        if !self.state.lock().silences.merge(s.clone()) {
            return Merge::Unchanged;
        }
        tracing::debug!(id = %s.id, "silence merged from a peer");
        self.store.write_later(vec![Write::PutSilence(Box::new(s))]);
        // An expiry may release alerts; a new silence mutes the next flush.
        self.wake.notify_one();
        Merge::Changed
    }

    /// Merges a peer's notification log entry (see
    /// [`crate::nflog::supersedes`]).
    pub(crate) fn merge_nflog(&self, k: NflogKey, e: NflogEntry) -> Merge {
        let now = Utc::now();
        if e.timestamp + self.retention() < now {
            return Merge::Unchanged;
        }
        {
            let mut st = self.state.lock();
            if let Some(cur) = st.nflog.get(&k)
                && !crate::nflog::supersedes(&e, cur)
            {
                return Merge::Unchanged;
            }
            st.nflog.insert(k.clone(), e.clone());
        }
        tracing::debug!(receiver = %k.receiver, group = %k.group_key, "notification log entry merged from a peer");
        self.store.write_later(vec![Write::PutNflog(k, e)]);
        Merge::Changed
    }

    /// Merges a peer's acknowledgement into the same episode here: its
    /// incident, or the alert's open episode when this member has not
    /// recorded one yet. Nothing happens for an alert not held (yet) or
    /// resolved here.
    fn merge_ack(&self, e: EpisodeItem<crate::incident::Ack>) -> Merge {
        let now = Utc::now();
        let alert = self.state.lock().alerts.get(&e.fingerprint).cloned();
        let writes = {
            let mut book = self.incidents.lock();
            match book.episode_near(e.fingerprint, e.episode_start, EPISODE_TOLERANCE) {
                Some(i) if i.acks.iter().any(|a| a.id == e.item.id) => return Merge::Unchanged,
                Some(i) => {
                    let id = i.id.clone();
                    book.apply_ack(&id, e.item, now)
                        .ok()
                        .flatten()
                        .into_iter()
                        .collect()
                }
                None => match alert {
                    Some(alert)
                        if !alert.resolved_at(now)
                            && (alert.starts_at - e.episode_start).abs() <= EPISODE_TOLERANCE =>
                    {
                        match book.ack(&alert, e.item, now) {
                            Ok((_, w)) => w,
                            Err(_) => return Merge::Unchanged,
                        }
                    }
                    _ => return Merge::Unchanged,
                },
            }
        };
        if writes.is_empty() {
            return Merge::Unchanged;
        }
        tracing::debug!(
            fingerprint = e.fingerprint,
            "acknowledgement merged from a peer"
        );
        self.store.write_later(writes);
        Merge::Changed
    }

    /// Merges a peer's note into the same episode here.
    fn merge_note(&self, e: EpisodeItem<crate::incident::Note>) -> Merge {
        let now = Utc::now();
        let writes: Vec<Write> = {
            let mut book = self.incidents.lock();
            match book.episode_near(e.fingerprint, e.episode_start, EPISODE_TOLERANCE) {
                Some(i) if i.notes.iter().any(|n| n.id == e.item.id) => return Merge::Unchanged,
                Some(i) => {
                    let id = i.id.clone();
                    book.apply_note(&id, e.item, now)
                        .ok()
                        .flatten()
                        .into_iter()
                        .collect()
                }
                None => return Merge::Unchanged,
            }
        };
        if writes.is_empty() {
            return Merge::Unchanged;
        }
        self.store.write_later(writes);
        Merge::Changed
    }

    /// Shares an acknowledgement or a note made on this member.
    pub(crate) fn publish_episode_item<T: serde::Serialize>(
        &self,
        kind: &str,
        id: &str,
        fingerprint: u64,
        episode_start: chrono::DateTime<Utc>,
        item: &T,
    ) {
        let Some(c) = self.cluster.get() else {
            return;
        };
        let e = EpisodeItem {
            fingerprint,
            episode_start,
            item,
        };
        if let Ok(v) = serde_json::to_string(&e) {
            c.publish(kind, id, v);
        }
    }

    /// Shares a silence this member created or changed.
    pub(crate) fn publish_silence(&self, s: &Silence) {
        if let (Some(c), Ok(v)) = (self.cluster.get(), serde_json::to_string(s)) {
            c.publish(SILENCE, &s.id, v);
        }
    }

    /// Shares a log entry this member carried out.
    pub(crate) fn publish_nflog(&self, k: &NflogKey, e: &NflogEntry) {
        if let (Some(c), Ok(v)) = (self.cluster.get(), serde_json::to_string(&(k, e))) {
            c.publish(NFLOG, &nflog_key(k), v);
        }
    }

    /// Publishes everything held locally (at start: the store is the
    /// source of truth, gossip brings the peers up to date).
    pub(crate) fn publish_all(&self) {
        let (silences, log): (Vec<Silence>, Vec<(NflogKey, NflogEntry)>) = {
            let st = self.state.lock();
            (
                st.silences.list().cloned().collect(),
                st.nflog
                    .iter()
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect(),
            )
        };
        for s in &silences {
            self.publish_silence(s);
        }
        for (k, e) in &log {
            self.publish_nflog(k, e);
        }
        // Acks and notes of the open episodes (closed ones no longer
        // change what is sent; their history stays with each member).
        let open: Vec<crate::incident::Incident> = {
            let book = self.incidents.lock();
            book.open()
                .iter()
                .filter_map(|o| book.get(&o.id).cloned())
                .collect()
        };
        for i in &open {
            for a in &i.acks {
                self.publish_episode_item(ACK, &a.id, i.fingerprint, i.starts_at, a);
            }
            for n in &i.notes {
                self.publish_episode_item(NOTE, &n.id, i.fingerprint, i.starts_at, n);
            }
        }
    }

    /// Stops sharing what garbage collection removed.
    pub(crate) fn unpublish(&self, writes: &[Write]) {
        let Some(c) = self.cluster.get() else {
            return;
        };
        for w in writes {
            match w {
                Write::DeleteSilence(id) => c.unpublish(SILENCE, id),
                Write::DeleteNflog(k) => c.unpublish(NFLOG, &nflog_key(k)),
                _ => {}
            }
        }
    }

    fn retention(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.opts.retention).unwrap_or(chrono::Duration::hours(120))
    }
}
