//! The alert state machine of one watched series, as Prometheus runs it for
//! alerting rules: inactive → pending when the detector flags a point,
//! pending → firing once the series has stayed anomalous for `for`, and
//! firing → resolved when a point scores normal again. Resolved alerts are
//! resent for a while (like Prometheus's 15 minutes) so a restarted
//! Alertmanager learns of them; firing ones are resent every minute.
//!
//! The state is serialisable so the manager can save it and a restarted
//! collector resumes each alert where it was (see `persist.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_rules::OutgoingAlert;
use vigil_wire::Labels;

/// How often a firing (or resolved) alert is re-sent (Prometheus's
/// `--rules.alert.resend-delay`).
pub const RESEND_DELAY_MS: i64 = 60_000;
/// How long a resolved alert keeps being re-sent.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;
/// `endsAt` of a firing alert: now plus this (Prometheus: 4 × resend delay).
const FIRING_VALIDITY_MS: i64 = 4 * RESEND_DELAY_MS;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    Firing,
    Resolved { at_ms: i64 },
}

/// What the detector said about the latest point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new anomalous episode the detector wants alerted.
    Alert,
    /// Still anomalous, but within an episode already alerted (suppressed).
    StillAnomalous,
    /// Normal, or the series is gone from the rule's output.
    Normal,
    /// The series is present but the detector cannot judge it yet (warming
    /// up, or the point was rejected): the alert stays as it is, so a
    /// restored alert is not resolved by a detector that knows nothing yet.
    Unknown,
}

/// The alert of one series, present from the first flagged point until the
/// resolved notification has been retained long enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesAlert {
    /// The alert's labels as Prometheus shows them (`alertname`, the
    /// series' labels, the rule's labels, `severity`); external labels are
    /// added only when sending.
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub active_at_ms: i64,
    pub phase: Phase,
    pub last_sent_ms: Option<i64>,
    /// The input expression's latest value (the API's alert `value`).
    #[serde(with = "finite_or_null")]
    pub value: f64,
}

/// JSON has no NaN: a missing value is saved as `null`.
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

impl SeriesAlert {
    /// Prometheus's state name, for pending and firing alerts only.
    pub fn active_state(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Pending => Some("pending"),
            Phase::Firing => Some("firing"),
            Phase::Resolved { .. } => None,
        }
    }
}

/// Advances the state of one series by one evaluation. `fresh` builds the
/// labels and annotations of a (new or updated) anomalous alert. Returns the
/// alert to keep, if any.
pub fn step(
    current: Option<SeriesAlert>,
    verdict: Verdict,
    now_ms: i64,
    for_ms: i64,
    fresh: impl FnOnce() -> (Labels, BTreeMap<String, String>),
) -> Option<SeriesAlert> {
    let anomalous = matches!(verdict, Verdict::Alert | Verdict::StillAnomalous);
    match current {
        // A resolved alert is replaced when a new episode starts; otherwise
        // it stays for resending until its retention ends.
        Some(
            a @ SeriesAlert {
                phase: Phase::Resolved { at_ms },
                ..
            },
        ) => {
            if verdict == Verdict::Alert {
                step(None, verdict, now_ms, for_ms, fresh)
            } else if now_ms - at_ms < RESOLVED_RETENTION_MS {
                Some(a)
            } else {
                None
            }
        }
        Some(a) if verdict == Verdict::Unknown => Some(a),
        Some(mut a) => {
            if !anomalous {
                return match a.phase {
                    // Pending alerts vanish without a notification.
                    Phase::Pending => None,
                    _ => {
                        a.phase = Phase::Resolved { at_ms: now_ms };
                        // Send the resolution right away.
                        a.last_sent_ms = None;
                        Some(a)
                    }
                };
            }
            let (labels, annotations) = fresh();
            a.labels = labels;
            a.annotations = annotations;
            if a.phase == Phase::Pending && now_ms - a.active_at_ms >= for_ms {
                a.phase = Phase::Firing;
            }
            Some(a)
        }
        None if verdict == Verdict::Alert => {
            let (labels, annotations) = fresh();
            Some(SeriesAlert {
                labels,
                annotations,
                active_at_ms: now_ms,
                phase: if for_ms <= 0 {
                    Phase::Firing
                } else {
                    Phase::Pending
                },
                last_sent_ms: None,
                value: f64::NAN,
            })
        }
        None => None,
    }
}

/// The notification to send now, if one is due, marking it sent. External
/// labels are added here, as Prometheus's notifier does: the alert's own
/// labels (API, `ALERTS`) do not carry them.
pub fn due(
    alert: &mut SeriesAlert,
    now_ms: i64,
    generator_url: &str,
    external_labels: &Labels,
) -> Option<OutgoingAlert> {
    let ends_at_ms = match alert.phase {
        Phase::Pending => return None,
        Phase::Firing => now_ms + FIRING_VALIDITY_MS,
        Phase::Resolved { at_ms } => at_ms,
    };
    if alert
        .last_sent_ms
        .is_some_and(|t| now_ms - t < RESEND_DELAY_MS)
    {
        return None;
    }
    alert.last_sent_ms = Some(now_ms);
    let mut labels = alert.labels.clone();
    for l in external_labels.iter() {
        if labels.get(&l.name).is_none() {
            labels.set(&l.name, l.value.clone());
        }
    }
    Some(OutgoingAlert {
        value: Some(alert.value),
        labels,
        annotations: alert.annotations.clone(),
        starts_at_ms: alert.active_at_ms,
        ends_at_ms: Some(ends_at_ms),
        generator_url: generator_url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (Labels, BTreeMap<String, String>) {
        (
            Labels::from_pairs([("alertname", "A"), ("instance", "x")]),
            BTreeMap::from([("summary".to_string(), "s".to_string())]),
        )
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let a = step(None, Verdict::Alert, 0, 5_000, fresh).expect("active");
        assert_eq!(a.phase, Phase::Pending);
        let mut a = a;
        assert!(
            due(&mut a, 0, "u", &Labels::empty()).is_none(),
            "pending alerts are not sent"
        );
        let a = step(Some(a), Verdict::StillAnomalous, 4_000, 5_000, fresh).expect("active");
        assert_eq!(a.phase, Phase::Pending);
        let mut a = step(Some(a), Verdict::StillAnomalous, 5_000, 5_000, fresh).expect("active");
        assert_eq!(a.phase, Phase::Firing);
        let sent = due(&mut a, 5_000, "u", &Labels::empty()).expect("sent when firing");
        assert_eq!(sent.starts_at_ms, 0);
        assert_eq!(sent.ends_at_ms, Some(5_000 + 4 * RESEND_DELAY_MS));
        assert!(
            due(&mut a, 6_000, "u", &Labels::empty()).is_none(),
            "not resent within a minute"
        );
        assert!(due(&mut a, 5_000 + RESEND_DELAY_MS, "u", &Labels::empty()).is_some());
        let mut a = step(Some(a), Verdict::Normal, 90_000, 5_000, fresh).expect("kept");
        assert_eq!(a.phase, Phase::Resolved { at_ms: 90_000 });
        let sent = due(&mut a, 90_000, "u", &Labels::empty()).expect("resolution sent at once");
        assert_eq!(sent.ends_at_ms, Some(90_000));
        let later = 90_000 + RESOLVED_RETENTION_MS;
        assert!(step(Some(a), Verdict::Normal, later, 5_000, fresh).is_none());
    }

    #[test]
    fn for_zero_fires_at_once_and_pending_vanishes_silently() {
        let a = step(None, Verdict::Alert, 10, 0, fresh).expect("active");
        assert_eq!(a.phase, Phase::Firing);
        let p = step(None, Verdict::Alert, 10, 60_000, fresh);
        assert!(step(p, Verdict::Normal, 20, 60_000, fresh).is_none());
        // A suppressed anomaly never starts an alert.
        assert!(step(None, Verdict::StillAnomalous, 10, 0, fresh).is_none());
    }

    #[test]
    fn a_new_episode_replaces_a_resolved_alert() {
        let a = step(None, Verdict::Alert, 0, 0, fresh);
        let a = step(a, Verdict::Normal, 1_000, 0, fresh).expect("resolved");
        assert!(matches!(a.phase, Phase::Resolved { .. }));
        let a = step(Some(a), Verdict::Alert, 2_000, 0, fresh).expect("new");
        assert_eq!((a.phase, a.active_at_ms), (Phase::Firing, 2_000));
    }

    #[test]
    fn unknown_keeps_the_alert_and_external_labels_are_added_on_send() {
        let a = step(None, Verdict::Alert, 0, 0, fresh);
        let mut a = step(a, Verdict::Unknown, 1_000, 0, fresh).expect("kept");
        assert_eq!((a.phase, a.active_at_ms), (Phase::Firing, 0));
        assert!(step(None, Verdict::Unknown, 0, 0, fresh).is_none());
        let sent = due(
            &mut a,
            1_000,
            "u",
            &Labels::from_pairs([("cluster", "eu1"), ("instance", "ext")]),
        )
        .expect("due");
        assert_eq!(sent.labels.get("cluster"), Some("eu1"));
        assert_eq!(
            sent.labels.get("instance"),
            Some("x"),
            "the alert's own label wins"
        );
        assert_eq!(a.labels.get("cluster"), None);
    }

    #[test]
    fn state_round_trips_through_json_without_a_value() {
        let mut a = step(None, Verdict::Alert, 5, 0, fresh).expect("active");
        let back: SeriesAlert =
            serde_json::from_str(&serde_json::to_string(&a).expect("encode")).expect("decode");
        assert!(back.value.is_nan());
        a.value = back.value;
        assert_eq!(format!("{a:?}"), format!("{back:?}"));
        a.value = 2.5;
        a.phase = Phase::Resolved { at_ms: 9 };
        let back: SeriesAlert =
            serde_json::from_str(&serde_json::to_string(&a).expect("encode")).expect("decode");
        assert_eq!(back, a);
    }
}
