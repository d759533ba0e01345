//! Sharing alerting state with the peers of a cluster (`vigil-cluster`).
//!
//! Two kinds of state are replicated, each with a merge that is
//! idempotent and convergent, so gossip may deliver versions in any order
//! and any number of times:
//!
//! | kind | key | value | newest wins by |
//! |---|---|---|---|
//! | `silence` | silence ID | the stored silence (JSON) | `updated_at`, then content |
//! | `nflog` | 32 hex digits of SHA-256 of the log key | `[key, entry]` as stored | `timestamp`, then content |
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

/// The replicated kinds, bound to one alerting instance.
pub fn kinds(a: &Arc<Alerting>) -> Vec<Arc<dyn Replicated>> {
    vec![
        Arc::new(SilenceKind(Arc::downgrade(a))),
        Arc::new(NflogKind(Arc::downgrade(a))),
    ]
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
