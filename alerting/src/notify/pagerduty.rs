//! PagerDuty Events API v2 integration: `trigger` while the group fires,
//! `resolve` when it resolves, deduplicated by a hash of the group key; the
//! body is Alertmanager 0.25's (compared with the real one in
//! tests/e2e/pagerduty.rs).

use sha2::{Digest, Sha256};

use super::common::{Notifier, at, first_secret};
use super::http::truncate_runes;
use super::{NotificationData, NotifyError, Templates};
use crate::config::PagerdutyConfig;

pub type Pagerduty = Notifier<PagerdutyConfig>;

impl Notifier<PagerdutyConfig> {
    /// The routing (or service) key; `*_file` forms are read when sending.
    fn routing_key(&self) -> Result<String, NotifyError> {
        let c = &self.cfg;
        first_secret(
            &[
                at(&c.routing_key, &c.routing_key_file, "routing_key_file"),
                at(&c.service_key, &c.service_key_file, "service_key_file"),
            ],
            "missing routing_key",
        )
    }

    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let body = event(&self.cfg, &self.routing_key()?, d, tmpl)?;
        let url = self.cfg.url.as_ref().unwrap_or(&self.global.pagerduty_url);
        self.http.post_json(url, &body).await
    }
}

/// Alertmanager's default `details` (merged under the configured ones).
const DEFAULT_DETAILS: [(&str, &str); 4] = [
    (
        "firing",
        r#"{{ template "pagerduty.default.instances" .Alerts.Firing }}"#,
    ),
    (
        "resolved",
        r#"{{ template "pagerduty.default.instances" .Alerts.Resolved }}"#,
    ),
    ("num_firing", "{{ .Alerts.Firing | len }}"),
    ("num_resolved", "{{ .Alerts.Resolved | len }}"),
];

/// PagerDuty's limit on `payload.summary`, in characters.
const MAX_SUMMARY_CHARS: usize = 1024;

/// The Events v2 body, field for field as Alertmanager 0.25 builds it:
/// every field templated, defaults from the `pagerduty.default.*`
/// templates, severity `error` unless configured, the source defaulting to
/// the client, images and links kept only when their `src`/`href` renders
/// non-empty.
pub fn event(
    cfg: &PagerdutyConfig,
    routing_key: &str,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<serde_json::Value, NotifyError> {
    use serde_json::{Map, Value};
    let render = |name: &str, text: &str| tmpl.field(d, name, text);
    let r = |name: &str, v: &Option<String>, default: &str| tmpl.field_or(d, name, v, default);
    let dedup_key = hex::encode(Sha256::digest(d.group_key.as_bytes()));
    let action = if d.status == "firing" {
        "trigger"
    } else {
        "resolve"
    };
    let description = r(
        "description",
        &cfg.description,
        r#"{{ template "pagerduty.default.description" . }}"#,
    )?;
    let summary = truncate_runes(&description, MAX_SUMMARY_CHARS).0;
    let mut details = Map::new();
    for (k, v) in DEFAULT_DETAILS {
        if !cfg.details.contains_key(k) {
            details.insert(k.into(), Value::String(render(k, v)?));
        }
    }
    for (k, v) in &cfg.details {
        details.insert(k.clone(), Value::String(render(k, v)?));
    }
    let client = r(
        "client",
        &cfg.client,
        r#"{{ template "pagerduty.default.client" . }}"#,
    )?;
    let source = match &cfg.source {
        Some(t) => render("source", t)?,
        None => client.clone(),
    };
    let mut payload = serde_json::json!({
        "summary": summary,
        "source": source,
        "severity": r("severity", &cfg.severity, "error")?,
    });
    for (k, v) in [
        ("class", &cfg.class),
        ("component", &cfg.component),
        ("group", &cfg.group),
    ] {
        let rendered = r(k, v, "")?;
        if !rendered.is_empty() {
            payload[k] = Value::String(rendered);
        }
    }
    if !details.is_empty() {
        payload["custom_details"] = Value::Object(details);
    }
    let mut ev = serde_json::json!({
        "routing_key": render("routing_key", routing_key)?,
        "dedup_key": dedup_key,
        "event_action": action,
        "payload": payload,
    });
    let client_url = r(
        "client_url",
        &cfg.client_url,
        r#"{{ template "pagerduty.default.clientURL" . }}"#,
    )?;
    for (k, v) in [("client", client), ("client_url", client_url)] {
        if !v.is_empty() {
            ev[k] = Value::String(v);
        }
    }
    let field = |item: &Value, k: &str| -> Result<String, NotifyError> {
        render(k, item.get(k).and_then(Value::as_str).unwrap_or_default())
    };
    let mut images = Vec::new();
    for item in &cfg.images {
        let src = field(item, "src")?;
        if !src.is_empty() {
            images.push(serde_json::json!({
                "src": src,
                "alt": field(item, "alt")?,
                "href": field(item, "href")?,
            }));
        }
    }
    let mut links = Vec::new();
    for item in &cfg.links {
        let href = field(item, "href")?;
        if !href.is_empty() {
            links.push(serde_json::json!({"href": href, "text": field(item, "text")?}));
        }
    }
    if !images.is_empty() {
        ev["images"] = Value::Array(images);
    }
    if !links.is_empty() {
        ev["links"] = Value::Array(links);
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, PostableAlert};
    use crate::matchers::LabelSet;

    #[test]
    fn trigger_then_resolve_share_a_dedup_key() {
        let now = chrono::Utc::now();
        let mk = |resolved: bool| {
            let p = PostableAlert {
                labels: [("alertname", "X"), ("severity", "critical")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                starts_at: Some(now - chrono::Duration::minutes(2)),
                ends_at: resolved.then(|| now - chrono::Duration::minutes(1)),
                ..Default::default()
            };
            Alert::from_postable(p, now, chrono::Duration::minutes(5)).expect("valid")
        };
        let cfg: PagerdutyConfig = serde_saphyr::from_str("routing_key: abc\n").expect("valid");
        let t = Templates::default();
        let fire = event(
            &cfg,
            "abc",
            &NotificationData::new("r", "g", &LabelSet::new(), &[mk(false)], "http://v", now),
            &t,
        )
        .expect("event");
        let res = event(
            &cfg,
            "abc",
            &NotificationData::new("r", "g", &LabelSet::new(), &[mk(true)], "http://v", now),
            &t,
        )
        .expect("event");
        assert_eq!(fire["event_action"], "trigger");
        // Alertmanager's default: `error` whatever the alerts' labels say.
        assert_eq!(fire["payload"]["severity"], "error");
        assert_eq!(fire["payload"]["custom_details"]["num_firing"], "1");
        assert_eq!(res["event_action"], "resolve");
        assert_eq!(fire["dedup_key"], res["dedup_key"]);
    }
}
