//! The alert pipeline's state and its flush logic: the alert store,
//! aggregation groups per (route, group labels), and what a flush produces
//! (Alertmanager's dispatcher plus the notification stages: time mute /
//! active intervals, inhibition, silences, dedup against the notification
//! log, `send_resolved`).
//!
//! Everything here is synchronous and runs under one lock; the caller
//! persists the returned writes and hands the notifications to the outbox.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::alert::{Alert, notification_order};
use crate::config::AlertingConfig;
use crate::incident::AckView;
use crate::inhibit::{InhibitRule, Inhibitor};
use crate::matchers::{LabelSet, fingerprint};
use crate::nflog::{Decision, NflogEntry, NflogKey, effective_repeat, needs_update};
use crate::notify::{NotificationData, Receiver, Templates, build_receivers};
use crate::outbox::OutboxEntry;
use crate::route::{RouteTree, group_key};
use crate::silence::Silences;
use crate::store::Write;
use crate::timeinterval::TimeIntervalSet;

/// A validated configuration turned into what the pipeline runs on;
/// swapped whole on reload.
pub struct Runtime {
    pub cfg: AlertingConfig,
    pub routes: RouteTree,
    pub receivers: HashMap<String, Arc<Receiver>>,
    pub templates: Templates,
    pub intervals: HashMap<String, TimeIntervalSet>,
    pub resolve_timeout: chrono::Duration,
}

impl Runtime {
    pub fn new(cfg: AlertingConfig, notify_timeout: std::time::Duration) -> Result<Self, String> {
        let receivers = build_receivers(&cfg, notify_timeout)?;
        let base = cfg.source.as_deref().and_then(|p| p.parent());
        let templates = Templates::load(&cfg.templates, base)?;
        let intervals = cfg
            .interval_sets()
            .map(|t| (t.name.value.clone(), t.clone()))
            .collect();
        let resolve_timeout = chrono::Duration::from_std(cfg.global.resolve_timeout.0)
            .unwrap_or(chrono::Duration::minutes(5));
        Ok(Self {
            routes: RouteTree::new(&cfg.route),
            receivers,
            templates,
            intervals,
            resolve_timeout,
            cfg,
        })
    }

    pub fn inhibitor(&self) -> Inhibitor {
        Inhibitor::new(
            self.cfg
                .inhibit_rules
                .iter()
                .map(InhibitRule::new)
                .collect(),
        )
    }

    /// Whether a route's time intervals stop notifications right now.
    fn muted_by_time(&self, route: usize, now: DateTime<Utc>) -> bool {
        let r = &self.routes.nodes[route];
        let hit = |names: &[String]| {
            names
                .iter()
                .any(|n| self.intervals.get(n).is_some_and(|t| t.contains(now)))
        };
        if hit(&r.mute_time_intervals) {
            return true;
        }
        !r.active_time_intervals.is_empty() && !hit(&r.active_time_intervals)
    }
}

/// Alerts of one route sharing the same group labels.
pub struct Group {
    pub route: usize,
    pub labels: LabelSet,
    pub key: String,
    pub alerts: HashMap<u64, Alert>,
    pub next_flush: Instant,
    pub has_flushed: bool,
}

/// What a flush wants done.
#[derive(Default)]
pub struct FlushOutput {
    pub writes: Vec<Write>,
    pub notifications: Vec<OutboxEntry>,
    /// Log entries recorded without a notification (only resolved alerts,
    /// `send_resolved` off); a cluster shares them at once.
    pub logged: Vec<(NflogKey, NflogEntry)>,
    /// Held notifications dropped because a peer had sent them.
    pub deduplicated: usize,
}

/// A notification decided by a flush, not yet logged or written.
pub struct PendingNotification {
    pub key: NflogKey,
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub send_resolved: bool,
    pub repeat_interval: std::time::Duration,
    pub repeat_backoff: Option<crate::config::RepeatBackoff>,
    /// `None` when there is nothing to send (only the log changes).
    pub data: Option<NotificationData>,
}

/// A notification held for this member's turn in the cluster.
pub struct Deferred {
    pub due: Instant,
    pub pending: PendingNotification,
}

/// Where this member stands in its cluster when a flush happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterWait {
    /// `position × peer_timeout`.
    pub delay: std::time::Duration,
    /// False while the cluster settles.
    pub ready: bool,
}

/// The pipeline state.
pub struct State {
    pub rt: Arc<Runtime>,
    pub alerts: HashMap<u64, Alert>,
    pub inhibitor: Inhibitor,
    pub silences: Silences,
    pub groups: HashMap<(usize, u64), Group>,
    pub nflog: HashMap<NflogKey, NflogEntry>,
    /// Notifications waiting for this member's turn in a cluster.
    pub deferred: HashMap<NflogKey, Deferred>,
    /// Acknowledged episodes per fingerprint (a snapshot of the incident
    /// book, refreshed before each flush).
    pub acks: HashMap<u64, AckView>,
}

impl State {
    pub fn new(rt: Arc<Runtime>, silences: Silences, nflog: HashMap<NflogKey, NflogEntry>) -> Self {
        let inhibitor = rt.inhibitor();
        Self {
            rt,
            alerts: HashMap::new(),
            inhibitor,
            silences,
            groups: HashMap::new(),
            nflog,
            deferred: HashMap::new(),
            acks: HashMap::new(),
        }
    }

    /// Adds or updates an alert (merging with a stored one that overlaps),
    /// returning the stored result.
    pub fn put(&mut self, alert: Alert, now: DateTime<Utc>, now_i: Instant) -> Alert {
        let merged = match self.alerts.get(&alert.fingerprint) {
            Some(old) if old.overlaps(&alert) => old.merge(&alert, now),
            _ => alert,
        };
        self.alerts.insert(merged.fingerprint, merged.clone());
        self.inhibitor.observe(&merged);
        self.route(&merged, now, now_i);
        merged
    }

    /// Inserts an alert into the aggregation groups of every matching route.
    fn route(&mut self, alert: &Alert, now: DateTime<Utc>, now_i: Instant) {
        let rt = Arc::clone(&self.rt);
        for r in rt.routes.matching(&alert.labels) {
            let node = &rt.routes.nodes[r];
            let labels = rt.routes.group_labels(r, &alert.labels);
            let gfp = fingerprint(&labels);
            let group = self.groups.entry((r, gfp)).or_insert_with(|| Group {
                route: r,
                key: group_key(&node.key, &labels),
                labels,
                alerts: HashMap::new(),
                next_flush: now_i + node.group_wait,
                has_flushed: false,
            });
            group.alerts.insert(alert.fingerprint, alert.clone());
            // An alert that started longer than group_wait ago is sent at
            // once instead of waiting (Alertmanager's aggrGroup.insert).
            let wait =
                chrono::Duration::from_std(node.group_wait).unwrap_or(chrono::Duration::zero());
            if !group.has_flushed && alert.starts_at + wait < now {
                group.next_flush = now_i;
            }
        }
    }

    /// Re-creates all groups after a reload, from the stored alerts.
    ///
    /// Nothing in flight is lost: a resolved alert still waiting in a group
    /// for its flush is routed again (dropping it delayed its resolved
    /// notification until the rule engine re-sent it a resend delay later,
    /// and an alert that resolved and fired again around the reload then
    /// reached receivers as neither), and a group that continues under the
    /// same key keeps its flush schedule, so a reload neither restarts
    /// `group_wait` nor pulls a flush forward.
    pub fn reroute_all(&mut self, now: DateTime<Utc>, now_i: Instant) {
        let mut timing: HashMap<String, (Instant, bool)> = HashMap::new();
        let mut waiting: std::collections::HashSet<u64> = std::collections::HashSet::new();
        for (_, g) in self.groups.drain() {
            waiting.extend(g.alerts.keys().copied());
            timing.insert(g.key, (g.next_flush, g.has_flushed));
        }
        self.inhibitor = self.rt.inhibitor();
        let alerts: Vec<Alert> = self.alerts.values().cloned().collect();
        for a in &alerts {
            self.inhibitor.observe(a);
        }
        for a in alerts {
            if !a.resolved_at(now) || waiting.contains(&a.fingerprint) {
                self.route(&a, now, now_i);
            }
        }
        for g in self.groups.values_mut() {
            if let Some((next_flush, has_flushed)) = timing.get(&g.key) {
                g.next_flush = *next_flush;
                g.has_flushed = *has_flushed;
            }
        }
    }

    /// The earliest pending flush.
    pub fn next_flush(&self) -> Option<Instant> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    /// Flushes every group that is due.
    pub fn flush_due(
        &mut self,
        now: DateTime<Utc>,
        now_i: Instant,
        next_id: &mut dyn FnMut() -> u64,
        opts: &FlushOptions,
    ) -> FlushOutput {
        let mut out = FlushOutput::default();
        self.flush_deferred(now, now_i, next_id, opts, &mut out);
        let due: Vec<(usize, u64)> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush <= now_i)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.flush(k, now, now_i, next_id, opts, &mut out);
        }
        out
    }

    fn flush(
        &mut self,
        k: (usize, u64),
        now: DateTime<Utc>,
        now_i: Instant,
        next_id: &mut dyn FnMut() -> u64,
        opts: &FlushOptions,
        out: &mut FlushOutput,
    ) {
        let rt = Arc::clone(&self.rt);
        let Some(group) = self.groups.get(&k) else {
            return;
        };
        let node = &rt.routes.nodes[group.route];
        let mut decided: Vec<(PendingNotification, Decision)> = Vec::new();
        let mut snapshot: Vec<Alert> = group.alerts.values().cloned().collect();
        snapshot.sort_by(|a, b| notification_order(&a.labels, &b.labels));
        if !rt.muted_by_time(group.route, now) {
            let kept: Vec<&Alert> = snapshot
                .iter()
                .filter(|a| {
                    self.inhibitor.inhibited_by(&a.labels, now).is_none()
                        && self.silences.silenced_by(&a.labels, now).is_empty()
                })
                .collect();
            if let (false, Some(recv)) = (kept.is_empty(), rt.receivers.get(&node.receiver)) {
                let firing: BTreeSet<u64> = kept
                    .iter()
                    .filter(|a| !a.resolved_at(now))
                    .map(|a| a.fingerprint)
                    .collect();
                let resolved: BTreeSet<u64> = kept
                    .iter()
                    .filter(|a| a.resolved_at(now))
                    .map(|a| a.fingerprint)
                    .collect();
                for (iid, integ) in &recv.integrations {
                    let key = NflogKey {
                        receiver: recv.name.clone(),
                        integration: iid.clone(),
                        group_key: group.key.clone(),
                    };
                    let prev = self.nflog.get(&key);
                    let repeat = effective_repeat(
                        node.repeat_interval,
                        node.repeat_backoff.as_ref(),
                        prev.map_or(0, |e| e.repeats),
                    );
                    let decision =
                        needs_update(prev, &firing, &resolved, integ.send_resolved(), repeat, now);
                    if decision == Decision::Skip {
                        // A group's first flush finding its alerts already
                        // logged: a peer sent them (counted like a held
                        // notification dropped after waiting).
                        if opts.cluster.is_some()
                            && !group.has_flushed
                            && prev.is_some_and(|e| !e.firing.is_empty())
                        {
                            out.deduplicated += 1;
                        }
                        continue;
                    }
                    // Acknowledged alerts are not repeated: a repeat of a
                    // group whose firing alerts are all acknowledged is
                    // skipped (a change, such as a new alert or a
                    // resolution, still notifies).
                    if decision == Decision::Repeat
                        && kept
                            .iter()
                            .filter(|a| !a.resolved_at(now))
                            .all(|a| self.acks.get(&a.fingerprint).is_some_and(|v| v.open))
                    {
                        continue;
                    }
                    let send: Vec<Alert> = kept
                        .iter()
                        .filter(|a| integ.send_resolved() || !a.resolved_at(now))
                        .map(|a| with_ack(a, self.acks.get(&a.fingerprint), now))
                        .collect();
                    // Only resolved alerts and send_resolved off: the log
                    // records them, nothing is sent.
                    let data = (!send.is_empty()).then(|| {
                        NotificationData::new(
                            &recv.name,
                            &group.key,
                            &group.labels,
                            &send,
                            &opts.external_url,
                            now,
                        )
                    });
                    let pending = PendingNotification {
                        key,
                        firing: firing.clone(),
                        resolved: resolved.clone(),
                        send_resolved: integ.send_resolved(),
                        repeat_interval: node.repeat_interval,
                        repeat_backoff: node.repeat_backoff.clone(),
                        data,
                    };
                    decided.push((pending, decision));
                }
            }
        }
        for (pending, decision) in decided {
            match opts.cluster {
                // A clustered member waits for its position (and for the
                // cluster to settle) before it decides, so a peer ahead of
                // it can notify first.
                Some(w) if !w.ready || !w.delay.is_zero() => {
                    self.defer(pending, now_i + w.delay);
                }
                _ => self.commit(pending, decision, now, next_id, opts, out),
            }
        }
        let Some(group) = self.groups.get_mut(&k) else {
            return;
        };
        // Resolved alerts that were part of this flush leave the group,
        // unless they were updated meanwhile.
        for a in &snapshot {
            if a.resolved_at(now)
                && group
                    .alerts
                    .get(&a.fingerprint)
                    .is_some_and(|g| g.updated_at == a.updated_at)
            {
                group.alerts.remove(&a.fingerprint);
            }
        }
        group.has_flushed = true;
        group.next_flush = now_i + node.group_interval;
        if group.alerts.is_empty() {
            self.groups.remove(&k);
        }
    }

    /// Records a notification in the log and writes its outbox row.
    fn commit(
        &mut self,
        p: PendingNotification,
        decision: Decision,
        now: DateTime<Utc>,
        next_id: &mut dyn FnMut() -> u64,
        opts: &FlushOptions,
        out: &mut FlushOutput,
    ) {
        let prev_repeats = self.nflog.get(&p.key).map_or(0, |e| e.repeats);
        let entry = NflogEntry {
            firing: p.firing,
            resolved: p.resolved,
            timestamp: now,
            repeats: if decision == Decision::Repeat {
                prev_repeats + 1
            } else {
                0
            },
        };
        self.nflog.insert(p.key.clone(), entry.clone());
        out.writes
            .push(Write::PutNflog(p.key.clone(), entry.clone()));
        let Some(data) = p.data else {
            out.logged.push((p.key, entry));
            return;
        };
        let mut row = OutboxEntry::new(
            next_id(),
            &p.key.receiver,
            p.key.integration.clone(),
            data,
            now,
            opts.give_up_after,
        );
        row.nflog = Some(entry);
        out.writes.push(Write::PutOutbox(Box::new(row.clone())));
        out.notifications.push(row);
    }

    /// Holds a notification until `due`. A newer one for the same log key
    /// replaces the content but keeps the earlier time, so a
    /// `group_interval` shorter than the wait cannot postpone it forever.
    fn defer(&mut self, p: PendingNotification, due: Instant) {
        match self.deferred.get_mut(&p.key) {
            Some(d) => {
                d.due = d.due.min(due);
                d.pending = p;
            }
            None => {
                self.deferred
                    .insert(p.key.clone(), Deferred { due, pending: p });
            }
        }
    }

    /// Decides the held notifications that are due: skipped when the
    /// (gossiped) log shows a peer already sent the same alerts
    /// (Alertmanager's `DedupStage` after its `WaitStage`), else sent.
    pub fn flush_deferred(
        &mut self,
        now: DateTime<Utc>,
        now_i: Instant,
        next_id: &mut dyn FnMut() -> u64,
        opts: &FlushOptions,
        out: &mut FlushOutput,
    ) {
        if opts.cluster.is_some_and(|w| !w.ready) {
            return;
        }
        let due: Vec<NflogKey> = self
            .deferred
            .iter()
            .filter(|(_, d)| d.due <= now_i)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let Some(d) = self.deferred.remove(&k) else {
                continue;
            };
            let p = d.pending;
            let prev = self.nflog.get(&p.key);
            let repeat = effective_repeat(
                p.repeat_interval,
                p.repeat_backoff.as_ref(),
                prev.map_or(0, |e| e.repeats),
            );
            let decision = needs_update(prev, &p.firing, &p.resolved, p.send_resolved, repeat, now);
            if decision == Decision::Skip {
                out.deduplicated += 1;
                continue;
            }
            self.commit(p, decision, now, next_id, opts, out);
        }
    }

    /// When the earliest held notification is due.
    pub fn next_deferred(&self) -> Option<Instant> {
        self.deferred.values().map(|d| d.due).min()
    }

    /// Drops resolved alerts from the store; returns the removals to persist.
    pub fn gc(
        &mut self,
        now: DateTime<Utc>,
        nflog_retention: chrono::Duration,
        silence_retention: chrono::Duration,
    ) -> Vec<Write> {
        let dead: Vec<u64> = self
            .alerts
            .values()
            .filter(|a| a.resolved_at(now))
            .map(|a| a.fingerprint)
            .collect();
        let mut writes = Vec::new();
        for fp in dead {
            self.alerts.remove(&fp);
            self.inhibitor.forget(fp);
            writes.push(Write::DeleteAlert(fp));
        }
        let old: Vec<NflogKey> = self
            .nflog
            .iter()
            .filter(|(_, e)| e.timestamp + nflog_retention < now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.nflog.remove(&k);
            writes.push(Write::DeleteNflog(k));
        }
        for id in self.silences.gc(now, silence_retention) {
            writes.push(Write::DeleteSilence(id));
        }
        writes
    }

    /// Who inhibits / silences an alert right now.
    pub fn mute_status(&self, labels: &LabelSet, now: DateTime<Utc>) -> (Vec<String>, Vec<String>) {
        let inhibited: Vec<String> = self
            .inhibitor
            .inhibited_by(labels, now)
            .map(crate::matchers::fingerprint_hex)
            .into_iter()
            .collect();
        (inhibited, self.silences.silenced_by(labels, now))
    }
}

/// Annotation names that show an acknowledgement in notifications (added
/// to the notification only: the alert's labels, fingerprint and stored
/// annotations do not change).
pub const ACK_BY: &str = "vigil_acknowledged_by";
pub const ACK_AT: &str = "vigil_acknowledged_at";
pub const ACK_COMMENT: &str = "vigil_acknowledgement";

/// The alert as a notification carries it: with the ack of its current
/// episode shown in annotations. A resolved alert still shows the ack of
/// the episode that just ended; a firing one only an open episode's.
fn with_ack(a: &Alert, ack: Option<&AckView>, now: DateTime<Utc>) -> Alert {
    let mut a = a.clone();
    if let Some(v) = ack.filter(|v| v.open || a.resolved_at(now)) {
        a.annotations.insert(ACK_BY.into(), v.author.clone());
        a.annotations
            .insert(ACK_AT.into(), crate::alert::format_go_time(&v.at));
        if !v.comment.is_empty() {
            a.annotations.insert(ACK_COMMENT.into(), v.comment.clone());
        }
    }
    a
}

/// Settings a flush needs from the options.
pub struct FlushOptions {
    pub external_url: String,
    pub give_up_after: chrono::Duration,
    /// `Some` in a cluster: this member's wait before it notifies.
    pub cluster: Option<ClusterWait>,
}

#[cfg(test)]
mod tests;
