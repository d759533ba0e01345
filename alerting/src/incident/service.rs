//! The alerting service's incident operations: acknowledging, notes,
//! reading the history, and the periodic check that closes episodes whose
//! alert resolved by timeout and sends due escalations.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::{
    Ack, ESCALATION_GROUP_PREFIX, EscalationRecord, Incident, IncidentError, IncidentFilter, Note,
    new_id,
};
use crate::Alerting;
use crate::alert::Alert;
use crate::dispatch::Runtime;
use crate::escalation::EscalationRule;
use crate::notify::NotificationData;
use crate::outbox::OutboxEntry;
use crate::store::Write;

/// Annotation added to an escalation notification, saying why it came.
pub const ESCALATION_ANNOTATION: &str = "vigil_escalation";

/// Every escalation rule names a receiver the configuration has.
pub(crate) fn check_escalations(rt: &Runtime, rules: &[EscalationRule]) -> Result<(), String> {
    for r in rules {
        if !rt.receivers.contains_key(&r.receiver) {
            return Err(format!(
                "escalation rule {:?} names receiver {:?}, which the Alertmanager configuration does not define",
                r.key, r.receiver
            ));
        }
    }
    Ok(())
}

fn parse_fingerprint(s: &str) -> Result<u64, IncidentError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 16 {
        return Err(IncidentError::Invalid(format!(
            "fingerprint {s:?} is not an alert fingerprint (up to 16 hex digits, as /api/v2/alerts shows)"
        )));
    }
    u64::from_str_radix(s, 16).map_err(|_| {
        IncidentError::Invalid(format!(
            "fingerprint {s:?} is not an alert fingerprint (hex digits, as /api/v2/alerts shows)"
        ))
    })
}

fn required(field: &str, v: &str) -> Result<String, IncidentError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(IncidentError::Invalid(format!("{field} is required")));
    }
    Ok(v.to_string())
}

impl Alerting {
    async fn persist(&self, writes: Vec<Write>) -> Result<(), IncidentError> {
        self.store
            .write(writes)
            .await
            .map_err(|e| IncidentError::Store(e.to_string()))
    }

    /// Acknowledges the current episode of a firing alert: it gets no more
    /// repeat notifications, and the notifications that still go out for it
    /// (a change of its group, its resolution) show who acknowledged it.
    pub async fn ack(
        &self,
        fingerprint: &str,
        author: &str,
        comment: &str,
    ) -> Result<Incident, IncidentError> {
        let fp = parse_fingerprint(fingerprint)?;
        let author = required("author", author)?;
        let now = Utc::now();
        let alert: Alert = self
            .state
            .lock()
            .alerts
            .get(&fp)
            .cloned()
            .ok_or_else(|| IncidentError::UnknownAlert(fingerprint.trim().to_string()))?;
        let ack = Ack {
            id: new_id(),
            author: author.clone(),
            comment: comment.trim().to_string(),
            at: now,
        };
        let (id, writes) = self.incidents.lock().ack(&alert, ack, now)?;
        self.persist(writes).await?;
        info!(incident = %id, %author, "alert acknowledged");
        self.incident(&id).ok_or(IncidentError::UnknownIncident(id))
    }

    /// Applies an ack made elsewhere (same id: applied once).
    pub async fn apply_ack(&self, incident: &str, ack: Ack) -> Result<(), IncidentError> {
        let w = self.incidents.lock().apply_ack(incident, ack, Utc::now())?;
        self.persist(w.into_iter().collect()).await
    }

    /// Adds a note to an incident, open or closed.
    pub async fn add_note(
        &self,
        incident: &str,
        author: &str,
        text: &str,
    ) -> Result<Incident, IncidentError> {
        let note = Note {
            id: new_id(),
            author: required("author", author)?,
            text: required("text", text)?,
            at: Utc::now(),
        };
        self.apply_note(incident, note).await?;
        self.incident(incident)
            .ok_or_else(|| IncidentError::UnknownIncident(incident.to_string()))
    }

    /// Applies a note made elsewhere (same id: applied once).
    pub async fn apply_note(&self, incident: &str, note: Note) -> Result<(), IncidentError> {
        let w = self
            .incidents
            .lock()
            .apply_note(incident, note, Utc::now())?;
        self.persist(w.into_iter().collect()).await
    }

    /// One incident.
    pub fn incident(&self, id: &str) -> Option<Incident> {
        self.incidents.lock().get(id).cloned()
    }

    /// Incidents passing `f`, newest first.
    pub fn incidents(&self, f: &IncidentFilter) -> Vec<Incident> {
        self.incidents.lock().list(f).into_iter().cloned().collect()
    }

    /// The escalation rules running now.
    pub fn escalation_rules(&self) -> Vec<EscalationRule> {
        self.escalations.read().clone()
    }

    pub(crate) async fn incident_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.opts.incident_check_interval) => {}
            }
            self.check_incidents(Utc::now()).await;
        }
    }

    /// Closes open incidents whose alert resolved (or is gone) and sends
    /// the escalations that are due.
    pub(crate) async fn check_incidents(&self, now: DateTime<Utc>) {
        let open = self.incidents.lock().open();
        if open.is_empty() {
            return;
        }
        let rules = self.escalations.read().clone();
        let rt = Arc::clone(&self.runtime.read());
        let mut closes = Vec::new();
        let mut escalate: Vec<(String, Alert, EscalationRule)> = Vec::new();
        {
            let st = self.state.lock();
            for o in &open {
                match st.alerts.get(&o.fingerprint) {
                    None => closes.push((o.id.clone(), now)),
                    Some(a) if a.resolved_at(now) => closes.push((o.id.clone(), a.ends_at)),
                    Some(a) => {
                        if o.acked || rules.is_empty() {
                            continue;
                        }
                        // Someone muted it on purpose: no escalation.
                        let (inhibited, silenced) = st.mute_status(&a.labels, now);
                        if !inhibited.is_empty() || !silenced.is_empty() {
                            continue;
                        }
                        for r in &rules {
                            let after = chrono::Duration::from_std(r.after)
                                .unwrap_or(chrono::Duration::MAX);
                            let due = o.starts_at.checked_add_signed(after);
                            if due.is_some_and(|d| now >= d)
                                && r.matches(&a.labels)
                                && !o.escalated.contains(&r.key)
                            {
                                escalate.push((o.id.clone(), a.clone(), r.clone()));
                            }
                        }
                    }
                }
            }
        }
        if closes.is_empty() && escalate.is_empty() {
            return;
        }
        let give_up = chrono::Duration::from_std(self.opts.give_up_after)
            .unwrap_or(chrono::Duration::hours(1));
        let mut writes = Vec::new();
        let mut entries = Vec::new();
        for (id, a, r) in &escalate {
            let Some(recv) = rt.receivers.get(&r.receiver) else {
                error!(receiver = %r.receiver, "escalation receiver is not configured; not escalated");
                continue;
            };
            let mut shown = a.clone();
            shown.annotations.insert(
                ESCALATION_ANNOTATION.into(),
                format!("firing and not acknowledged for {}", r.after_text()),
            );
            let group_key = format!("{ESCALATION_GROUP_PREFIX}{id}/{}", r.key);
            for (iid, _) in &recv.integrations {
                let data = NotificationData::new(
                    &recv.name,
                    &group_key,
                    &a.labels,
                    std::slice::from_ref(&shown),
                    &self.opts.external_url,
                    now,
                );
                let e = OutboxEntry::new(
                    self.outbox.next_id(),
                    &recv.name,
                    iid.clone(),
                    data,
                    now,
                    give_up,
                );
                writes.push(Write::PutOutbox(Box::new(e.clone())));
                entries.push(e);
            }
            info!(incident = %id, receiver = %r.receiver, after = %r.after_text(), "alert escalated");
        }
        {
            let mut book = self.incidents.lock();
            for (id, at) in closes {
                writes.extend(book.close(&id, at, now));
            }
            for (id, _, r) in &escalate {
                let rec = EscalationRecord {
                    rule: r.key.clone(),
                    receiver: r.receiver.clone(),
                    after: r.after_text(),
                    at: now,
                };
                writes.extend(book.apply_escalation(id, rec, now));
            }
        }
        // The escalation and its notification commit together, so a
        // restart neither loses nor repeats it.
        match self.store.write(writes).await {
            Ok(()) => self.outbox.enqueue(entries),
            Err(e) => error!(error = %e, "cannot persist incident changes; escalations not sent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alert::PostableAlert;
    use crate::{AlertingOptions, parse_config};

    const AM: &str = "route:\n  receiver: team\nreceivers:\n  - name: team\n  - name: manager\n";

    fn labels(name: &str) -> crate::matchers::LabelSet {
        [("alertname", name), ("severity", "page")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    async fn start(dir: &std::path::Path) -> Arc<Alerting> {
        let cfg = parse_config(AM, "am.yml").expect("valid");
        #[derive(serde::Deserialize)]
        struct Doc {
            escalations: Vec<crate::escalation::EscalationConfig>,
        }
        let doc: Doc = serde_saphyr::from_str(
            "escalations:\n  - matchers: ['severity=\"page\"']\n    after: 15m\n    receiver: manager\n",
        )
        .expect("parses");
        let escalations =
            crate::escalation::build(&doc.escalations, &cfg, "vigil.yml").expect("valid rules");
        Alerting::start(
            cfg,
            AlertingOptions {
                data_dir: dir.to_path_buf(),
                escalations,
                // Checks run only when the test calls them.
                incident_check_interval: Duration::from_secs(3600),
                ..Default::default()
            },
            CancellationToken::new(),
        )
        .await
        .expect("alerting starts")
    }

    async fn fire(a: &Alerting, name: &str, start: DateTime<Utc>, value: f64) {
        a.push_with_values(vec![(
            PostableAlert {
                labels: labels(name),
                starts_at: Some(start),
                // Explicit end far ahead: firing for the whole test.
                ends_at: Some(start + chrono::Duration::hours(2)),
                ..Default::default()
            },
            Some(value),
        )])
        .await
        .expect("accepted");
    }

    fn find(a: &Alerting, name: &str) -> Incident {
        a.incidents(&IncidentFilter {
            limit: 100,
            ..Default::default()
        })
        .into_iter()
        .find(|i| i.labels["alertname"] == name)
        .expect("incident")
    }

    #[tokio::test]
    async fn escalates_once_when_due_unless_acknowledged_and_closes_resolved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = start(dir.path()).await;
        let t0 = Utc::now();
        fire(&a, "Quiet", t0, 1.0).await;
        fire(&a, "Loud", t0, 2.0).await;
        fire(&a, "Loud", t0, 5.0).await;
        let quiet = find(&a, "Quiet");
        a.ack(
            &crate::matchers::fingerprint_hex(quiet.fingerprint),
            "ann",
            "",
        )
        .await
        .expect("acked");
        // Not yet due.
        a.check_incidents(t0 + chrono::Duration::minutes(14)).await;
        assert!(find(&a, "Loud").escalations.is_empty());
        // Due: the unacknowledged one escalates, once.
        for m in [16, 17, 30] {
            a.check_incidents(t0 + chrono::Duration::minutes(m)).await;
        }
        let loud = find(&a, "Loud");
        assert_eq!(loud.escalations.len(), 1, "{loud:?}");
        assert_eq!(loud.escalations[0].receiver, "manager");
        assert_eq!(loud.escalations[0].after, "15m");
        assert_eq!(loud.peak_value, Some(5.0));
        assert!(
            find(&a, "Quiet").escalations.is_empty(),
            "an acked alert escalated"
        );
        // The alert ends: its incident closes at the end time.
        let end = Utc::now();
        a.push(vec![PostableAlert {
            labels: labels("Loud"),
            starts_at: Some(t0),
            ends_at: Some(end),
            ..Default::default()
        }])
        .await
        .expect("accepted");
        assert_eq!(find(&a, "Loud").ends_at, Some(end));
        a.check_incidents(Utc::now()).await;
        assert_eq!(find(&a, "Loud").ends_at, Some(end), "closed once");
        // An alert whose end time passes without a new update: the check
        // closes its incident at that end.
        a.check_incidents(t0 + chrono::Duration::hours(3)).await;
        assert_eq!(
            find(&a, "Quiet").ends_at,
            Some(t0 + chrono::Duration::hours(2))
        );
        // A resolved alert cannot be acknowledged; an unknown one is unknown.
        let fp = crate::matchers::fingerprint_hex(loud.fingerprint);
        assert!(matches!(
            a.ack(&fp, "ann", "").await,
            Err(IncidentError::Resolved(_))
        ));
        assert!(matches!(
            a.ack("00000000000000ff", "ann", "").await,
            Err(IncidentError::UnknownAlert(_))
        ));
        assert!(matches!(
            a.ack("xyz", "ann", "").await,
            Err(IncidentError::Invalid(_))
        ));
        assert!(matches!(
            a.add_note(&loud.id, " ", "t").await,
            Err(IncidentError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn an_unknown_escalation_receiver_is_refused_on_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = start(dir.path()).await;
        let without_manager = parse_config(
            "route:\n  receiver: team\nreceivers:\n  - name: team\n",
            "am.yml",
        )
        .expect("valid");
        let rules = a.escalation_rules();
        assert!(
            a.reload_with_escalations(without_manager, rules)
                .await
                .is_err()
        );
        assert_eq!(a.escalation_rules().len(), 1, "the running rules stay");
        assert!(
            a.config()
                .receivers
                .iter()
                .any(|r| r.name.value == "manager")
        );
    }
}
