//! Self-metrics in the Prometheus text format: counters for received
//! alerts and notifications by outcome, gauges filled in at render time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

use vigil_wire::exposition::escape_label_value;

#[derive(Default)]
struct Counters {
    alerts_received: BTreeMap<String, u64>,
    alerts_invalid: u64,
    /// (receiver, integration) → count
    notifications: BTreeMap<(String, String), u64>,
    requests_failed: BTreeMap<(String, String), u64>,
    failed: BTreeMap<(String, String), u64>,
    digests: BTreeMap<String, u64>,
    digested: BTreeMap<String, u64>,
}

/// Counters shared by the pipeline parts.
#[derive(Default)]
pub struct Metrics {
    c: Mutex<Counters>,
}

/// Point-in-time values added when rendering.
pub struct Gauges {
    pub alerts_active: usize,
    pub alerts_suppressed: usize,
    pub silences: [(&'static str, usize); 3],
    pub outbox_pending: usize,
    /// Age of the oldest notification in the outbox; 0 when it is empty.
    pub outbox_oldest_age_seconds: f64,
    pub groups: usize,
}

impl Metrics {
    pub fn alert_received(&self, status: &str) {
        *self
            .c
            .lock()
            .alerts_received
            .entry(status.to_string())
            .or_default() += 1;
    }

    pub fn alert_invalid(&self) {
        self.c.lock().alerts_invalid += 1;
    }

    /// One delivery attempt and its outcome.
    pub fn notification(&self, receiver: &str, integration: &str, ok: bool) {
        let mut c = self.c.lock();
        let k = (receiver.to_string(), integration.to_string());
        *c.notifications.entry(k.clone()).or_default() += 1;
        if !ok {
            *c.requests_failed.entry(k).or_default() += 1;
        }
    }

    /// A notification given up on.
    pub fn failed(&self, receiver: &str, integration: &str) {
        *self
            .c
            .lock()
            .failed
            .entry((receiver.to_string(), integration.to_string()))
            .or_default() += 1;
    }

    /// A digest folding `n` notifications was attempted.
    pub fn digest(&self, receiver: &str, n: usize) {
        let mut c = self.c.lock();
        *c.digests.entry(receiver.to_string()).or_default() += 1;
        *c.digested.entry(receiver.to_string()).or_default() += n as u64;
    }

    pub fn render(&self, g: &Gauges, out: &mut String) {
        let c = self.c.lock();
        let pair = |out: &mut String, name: &str, m: &BTreeMap<(String, String), u64>| {
            for ((r, i), v) in m {
                let _ = writeln!(
                    out,
                    "{name}{{receiver=\"{}\",integration=\"{}\"}} {v}",
                    escape_label_value(r),
                    escape_label_value(i)
                );
            }
        };
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        header(
            out,
            "vigil_alerts_received_total",
            "counter",
            "Alerts received through the API or from the rule engine.",
        );
        for status in ["firing", "resolved"] {
            let _ = writeln!(
                out,
                "vigil_alerts_received_total{{status=\"{status}\"}} {}",
                c.alerts_received.get(status).copied().unwrap_or(0)
            );
        }
        header(
            out,
            "vigil_alerts_invalid_total",
            "counter",
            "Alerts rejected as invalid.",
        );
        let _ = writeln!(out, "vigil_alerts_invalid_total {}", c.alerts_invalid);
        header(
            out,
            "vigil_alerts",
            "gauge",
            "Alerts currently held, by state.",
        );
        let _ = writeln!(out, "vigil_alerts{{state=\"active\"}} {}", g.alerts_active);
        let _ = writeln!(
            out,
            "vigil_alerts{{state=\"suppressed\"}} {}",
            g.alerts_suppressed
        );
        header(
            out,
            "vigil_alert_groups",
            "gauge",
            "Aggregation groups currently held.",
        );
        let _ = writeln!(out, "vigil_alert_groups {}", g.groups);
        header(out, "vigil_silences", "gauge", "Silences by state.");
        for (s, n) in g.silences {
            let _ = writeln!(out, "vigil_silences{{state=\"{s}\"}} {n}");
        }
        header(
            out,
            "vigil_notifications_total",
            "counter",
            "Notification attempts per receiver integration.",
        );
        pair(out, "vigil_notifications_total", &c.notifications);
        header(
            out,
            "vigil_notification_requests_failed_total",
            "counter",
            "Failed notification attempts (retried or not).",
        );
        pair(
            out,
            "vigil_notification_requests_failed_total",
            &c.requests_failed,
        );
        header(
            out,
            "vigil_notifications_failed_total",
            "counter",
            "Notifications given up on after retries.",
        );
        pair(out, "vigil_notifications_failed_total", &c.failed);
        header(
            out,
            "vigil_notifications_pending",
            "gauge",
            "Notifications in the durable outbox.",
        );
        let _ = writeln!(out, "vigil_notifications_pending {}", g.outbox_pending);
        header(
            out,
            "vigil_notifications_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest notification in the durable outbox (0 when empty).",
        );
        let _ = writeln!(
            out,
            "vigil_notifications_oldest_pending_age_seconds {}",
            g.outbox_oldest_age_seconds
        );
        header(
            out,
            "vigil_notification_digests_total",
            "counter",
            "Rate-limit digests sent per receiver.",
        );
        for (r, v) in &c.digests {
            let _ = writeln!(
                out,
                "vigil_notification_digests_total{{receiver=\"{}\"}} {v}",
                escape_label_value(r)
            );
        }
        header(
            out,
            "vigil_notifications_digested_total",
            "counter",
            "Notifications folded into digests per receiver.",
        );
        for (r, v) in &c.digested {
            let _ = writeln!(
                out,
                "vigil_notifications_digested_total{{receiver=\"{}\"}} {v}",
                escape_label_value(r)
            );
        }
    }
}
