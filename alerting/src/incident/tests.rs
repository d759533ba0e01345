//! The incident book: episodes, acks, notes, escalations, delivery records
//! and retention; every apply operation is idempotent.

use super::*;
use crate::alert::PostableAlert;
use crate::nflog::IntegrationId;
use crate::notify::NotificationData;

fn t(s: &str) -> DateTime<Utc> {
    crate::alert::parse_time(s).expect("valid time")
}

fn alert(start: &str, end: Option<&str>, now: &str) -> Alert {
    Alert::from_postable(
        PostableAlert {
            labels: [("alertname", "Disk"), ("severity", "page")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts_at: Some(t(start)),
            ends_at: end.map(t),
            ..Default::default()
        },
        t(now),
        chrono::Duration::minutes(5),
    )
    .expect("valid alert")
}

fn ack(id: &str, at: &str) -> Ack {
    Ack {
        id: id.into(),
        author: "ann".into(),
        comment: "on it".into(),
        at: t(at),
    }
}

#[test]
fn an_episode_opens_tracks_its_peak_and_closes() {
    let mut b = IncidentBook::default();
    let a = alert("2026-01-01T00:00:00Z", None, "2026-01-01T00:00:10Z");
    let w = b.observe(&a, true, Some(3.0), t("2026-01-01T00:00:10Z"));
    assert_eq!(w.len(), 1);
    let id = Incident::id_for(a.fingerprint, a.starts_at);
    assert!(b.get(&id).is_some_and(|i| i.is_open()));
    b.observe(&a, false, Some(7.5), t("2026-01-01T00:01:00Z"));
    b.observe(&a, false, Some(5.0), t("2026-01-01T00:02:00Z"));
    b.observe(&a, false, Some(f64::NAN), t("2026-01-01T00:02:30Z"));
    assert_eq!(b.get(&id).and_then(|i| i.peak_value), Some(7.5));
    assert_eq!(b.len(), 1, "updates of the same episode add nothing");
    let resolved = alert(
        "2026-01-01T00:00:00Z",
        Some("2026-01-01T00:03:00Z"),
        "2026-01-01T00:03:00Z",
    );
    b.observe(&resolved, false, None, t("2026-01-01T00:03:00Z"));
    assert_eq!(
        b.get(&id).and_then(|i| i.ends_at),
        Some(t("2026-01-01T00:03:00Z"))
    );
    // Fires again: a new incident.
    let again = alert("2026-01-01T01:00:00Z", None, "2026-01-01T01:00:00Z");
    b.observe(&again, true, None, t("2026-01-01T01:00:00Z"));
    assert_eq!(b.len(), 2);
    assert_eq!(
        b.latest(a.fingerprint).map(|i| i.id.clone()),
        Some(Incident::id_for(a.fingerprint, t("2026-01-01T01:00:00Z")))
    );
    // A resolved alert for nothing open adds nothing.
    let mut empty = IncidentBook::default();
    assert!(
        empty
            .observe(&resolved, true, None, t("2026-01-01T00:03:00Z"))
            .is_empty()
    );
    assert!(empty.is_empty());
}

#[test]
fn refiring_before_the_close_ends_the_old_episode_at_the_new_start() {
    let mut b = IncidentBook::default();
    let a = alert("2026-01-01T00:00:00Z", None, "2026-01-01T00:00:00Z");
    b.observe(&a, true, None, t("2026-01-01T00:00:00Z"));
    let again = alert("2026-01-01T00:30:00Z", None, "2026-01-01T00:30:00Z");
    b.observe(&again, true, None, t("2026-01-01T00:30:00Z"));
    let old = b
        .get(&Incident::id_for(a.fingerprint, a.starts_at))
        .expect("old incident");
    assert_eq!(old.ends_at, Some(t("2026-01-01T00:30:00Z")));
    assert_eq!(b.open().len(), 1);
}

#[test]
fn acks_and_notes_apply_once_and_acks_need_a_firing_alert() {
    let mut b = IncidentBook::default();
    let now = t("2026-01-01T00:04:30Z");
    let a = alert("2026-01-01T00:00:00Z", None, "2026-01-01T00:00:00Z");
    // An ack of a firing alert without an incident yet creates it.
    let (id, w) = b
        .ack(&a, ack("k1", "2026-01-01T00:05:00Z"), now)
        .expect("acked");
    assert_eq!(w.len(), 2, "incident created, then acked");
    assert!(b.get(&id).is_some_and(|i| i.acked()));
    assert!(
        b.apply_ack(&id, ack("k1", "2026-01-01T00:05:00Z"), now)
            .expect("known incident")
            .is_none(),
        "the same ack twice is applied once"
    );
    b.apply_ack(&id, ack("k0", "2026-01-01T00:04:00Z"), now)
        .expect("applied");
    let ids: Vec<&str> = b
        .get(&id)
        .expect("incident")
        .acks
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(ids, vec!["k0", "k1"], "ordered by time");
    let views = b.ack_views();
    assert!(
        views
            .get(&a.fingerprint)
            .is_some_and(|v| v.open && v.author == "ann")
    );
    let note = Note {
        id: "n1".into(),
        author: "bob".into(),
        text: "disk replaced".into(),
        at: now,
    };
    assert!(
        b.apply_note(&id, note.clone(), now)
            .expect("known")
            .is_some()
    );
    assert!(b.apply_note(&id, note, now).expect("known").is_none());
    assert!(matches!(
        b.apply_note(
            "nope",
            Note {
                id: "x".into(),
                author: "a".into(),
                text: "b".into(),
                at: now
            },
            now
        ),
        Err(IncidentError::UnknownIncident(_))
    ));
    let resolved = alert(
        "2026-01-01T00:00:00Z",
        Some("2026-01-01T00:04:00Z"),
        "2026-01-01T00:04:00Z",
    );
    assert!(matches!(
        b.ack(&resolved, ack("k2", "2026-01-01T00:05:00Z"), now),
        Err(IncidentError::Resolved(_))
    ));
}

#[test]
fn escalations_record_once_per_rule() {
    let mut b = IncidentBook::default();
    let now = t("2026-01-01T00:20:00Z");
    let a = alert("2026-01-01T00:00:00Z", None, "2026-01-01T00:00:00Z");
    b.observe(&a, true, None, t("2026-01-01T00:00:00Z"));
    let id = Incident::id_for(a.fingerprint, a.starts_at);
    let rec = EscalationRecord {
        rule: "{} after 15m to manager".into(),
        receiver: "manager".into(),
        after: "15m".into(),
        at: now,
    };
    assert!(b.apply_escalation(&id, rec.clone(), now).is_some());
    assert!(b.apply_escalation(&id, rec, now).is_none());
    assert_eq!(b.open()[0].escalated, vec!["{} after 15m to manager"]);
}

fn entry(id: u64, a: &Alert, group_key: &str, now: DateTime<Utc>) -> OutboxEntry {
    OutboxEntry::new(
        id,
        "team",
        IntegrationId {
            kind: "webhook".into(),
            index: 0,
        },
        NotificationData::new(
            "team",
            group_key,
            &a.labels,
            std::slice::from_ref(a),
            "http://v",
            now,
        ),
        now,
        chrono::Duration::hours(1),
    )
}

#[test]
fn deliveries_are_recorded_on_the_episode_they_carried() {
    let mut b = IncidentBook::default();
    let first = alert("2026-01-01T00:00:00Z", None, "2026-01-01T00:00:00Z");
    b.observe(&first, true, None, t("2026-01-01T00:00:00Z"));
    let second = alert("2026-01-01T02:00:00Z", None, "2026-01-01T02:00:00Z");
    b.observe(&second, true, None, t("2026-01-01T02:00:00Z"));
    let now = t("2026-01-01T02:00:05Z");
    // A late delivery for the first episode lands on the first incident.
    let e1 = entry(7, &first, "{}:{}", now);
    assert_eq!(b.record_delivery(&e1, true, None, 1, now).len(), 1);
    assert!(
        b.record_delivery(&e1, true, None, 1, now).is_empty(),
        "idempotent"
    );
    let e2 = entry(8, &second, "vigil-escalation/x", now);
    b.record_delivery(&e2, false, Some("503"), 4, now);
    let i1 = b
        .get(&Incident::id_for(first.fingerprint, first.starts_at))
        .expect("first");
    let i2 = b
        .get(&Incident::id_for(second.fingerprint, second.starts_at))
        .expect("second");
    assert_eq!(i1.notifications.len(), 1);
    assert!(i1.notifications[0].ok && !i1.notifications[0].escalation);
    assert_eq!(i2.notifications.len(), 1);
    let n = &i2.notifications[0];
    assert!(!n.ok && n.escalation && n.attempts == 4 && n.error.as_deref() == Some("503"));
    assert_eq!(b.max_notification_id(), 8);
}

#[test]
fn notification_records_are_bounded_and_counted() {
    let mut b = IncidentBook::default();
    let a = alert("2026-01-01T00:00:00Z", None, "2026-01-01T00:00:00Z");
    b.observe(&a, true, None, t("2026-01-01T00:00:00Z"));
    let now = t("2026-01-01T00:00:01Z");
    for id in 0..(MAX_NOTIFICATIONS as u64 + 10) {
        b.record_delivery(&entry(id, &a, "g", now), true, None, 1, now);
    }
    let i = b.latest(a.fingerprint).expect("incident");
    assert_eq!(i.notifications.len(), MAX_NOTIFICATIONS);
    assert_eq!(i.notifications_dropped, 10);
    assert_eq!(i.notifications[0].id, 10, "the oldest are dropped");
}

#[test]
fn listing_filters_and_retention() {
    let mut b = IncidentBook::default();
    let mk = |name: &str, start: &str| {
        Alert::from_postable(
            PostableAlert {
                labels: [("alertname".to_string(), name.to_string())]
                    .into_iter()
                    .collect(),
                starts_at: Some(t(start)),
                ..Default::default()
            },
            t(start),
            chrono::Duration::minutes(5),
        )
        .expect("valid")
    };
    let a = mk("A", "2026-01-01T00:00:00Z");
    let bb = mk("B", "2026-01-02T00:00:00Z");
    let c = mk("C", "2026-01-03T00:00:00Z");
    for x in [&a, &bb, &c] {
        b.observe(x, true, None, x.starts_at);
    }
    let a_id = Incident::id_for(a.fingerprint, a.starts_at);
    b.close(&a_id, t("2026-01-01T01:00:00Z"), t("2026-01-01T01:00:00Z"));
    fn names_in(b: &IncidentBook, f: &IncidentFilter) -> Vec<String> {
        b.list(f)
            .iter()
            .map(|i| i.labels["alertname"].clone())
            .collect()
    }
    let names = |f: &IncidentFilter| names_in(&b, f);
    let all = IncidentFilter {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(names(&all), vec!["C", "B", "A"], "newest first");
    assert_eq!(
        names(&IncidentFilter {
            limit: 2,
            ..all.clone()
        }),
        vec!["C", "B"]
    );
    assert_eq!(
        names(&IncidentFilter {
            open: Some(false),
            ..all.clone()
        }),
        vec!["A"]
    );
    assert_eq!(
        names(&IncidentFilter {
            open: Some(true),
            ..all.clone()
        }),
        vec!["C", "B"]
    );
    let window = IncidentFilter {
        from: Some(t("2026-01-01T02:00:00Z")),
        to: Some(t("2026-01-02T12:00:00Z")),
        ..all.clone()
    };
    assert_eq!(names(&window), vec!["B"], "A ended before, C started after");
    let m = IncidentFilter {
        matchers: crate::matchers::parse_matchers("alertname=~\"A|C\"").expect("valid"),
        ..all.clone()
    };
    assert_eq!(names(&m), vec!["C", "A"]);
    // Retention: only closed incidents older than it go.
    let w = b.gc(t("2026-03-01T00:00:00Z"), chrono::Duration::days(30));
    assert_eq!(w.len(), 1);
    assert_eq!(names_in(&b, &all), vec!["C", "B"]);
    assert!(b.latest(a.fingerprint).is_none());
}
