//! PagerDuty Events API v2 integration: `trigger` while the group fires,
//! `resolve` when it resolves, deduplicated by a hash of the group key.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::http::HttpClient;
use super::{NotificationData, NotifyError, Templates};
use crate::config::{GlobalConfig, PagerdutyConfig, secret_value};

pub struct Pagerduty {
    pub cfg: PagerdutyConfig,
    url: String,
    http: HttpClient,
}

impl Pagerduty {
    pub fn new(
        cfg: &PagerdutyConfig,
        global: &GlobalConfig,
        timeout: Duration,
    ) -> Result<Self, String> {
        let url = cfg
            .url
            .clone()
            .unwrap_or_else(|| global.pagerduty_url.clone());
        let http = HttpClient::new(
            cfg.http_config.as_ref().or(global.http_config.as_ref()),
            timeout,
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            url,
            http,
        })
    }

    /// The routing (or service) key; `*_file` forms are read when sending.
    fn routing_key(&self) -> Result<String, NotifyError> {
        let c = &self.cfg;
        let key = secret_value(c.routing_key.as_ref(), c.routing_key_file.as_deref())
            .map_err(|e| NotifyError::retryable(format!("cannot read routing_key_file: {e}")))?;
        match key {
            Some(k) => Ok(k),
            None => secret_value(c.service_key.as_ref(), c.service_key_file.as_deref())
                .map_err(|e| NotifyError::retryable(format!("cannot read service_key_file: {e}")))?
                .ok_or_else(|| NotifyError::permanent("missing routing_key")),
        }
    }

    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let body = event(&self.cfg, &self.routing_key()?, d, tmpl)?;
        self.http.post_json(&self.url, &body).await
    }
}

/// The Events v2 body.
pub fn event(
    cfg: &PagerdutyConfig,
    routing_key: &str,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<serde_json::Value, NotifyError> {
    let r = |name: &str, v: &Option<String>, default: String| -> Result<String, NotifyError> {
        match v {
            Some(t) => tmpl
                .render(name, t, d)
                .map_err(|e| NotifyError::permanent(format!("template {name}: {e}"))),
            None => Ok(default),
        }
    };
    let dedup_key = hex::encode(Sha256::digest(d.group_key.as_bytes()));
    let action = if d.status == "firing" {
        "trigger"
    } else {
        "resolve"
    };
    let summary: String = r(
        "description",
        &cfg.description,
        super::email::default_subject(d),
    )?
    .chars()
    .take(1024)
    .collect();
    let mut details = serde_json::Map::new();
    details.insert("firing".into(), serde_json::Value::from(d.firing().count()));
    details.insert(
        "resolved".into(),
        serde_json::Value::from(d.resolved().count()),
    );
    details.insert(
        "num_firing".into(),
        serde_json::Value::from(d.firing().count().to_string()),
    );
    for (k, v) in &cfg.details {
        details.insert(
            k.clone(),
            serde_json::Value::String(tmpl.render(k, v, d).map_err(NotifyError::permanent)?),
        );
    }
    let sev = r(
        "severity",
        &cfg.severity,
        match d.severity().as_str() {
            "critical" | "page" => "critical".into(),
            "warning" | "warn" => "warning".into(),
            "error" => "error".into(),
            _ => "info".into(),
        },
    )?;
    let mut payload = serde_json::json!({
        "summary": summary,
        "source": r("source", &cfg.source, r("client", &cfg.client, "Vigil".into())?)?,
        "severity": sev,
        "custom_details": details,
    });
    for (k, v) in [
        ("class", &cfg.class),
        ("component", &cfg.component),
        ("group", &cfg.group),
    ] {
        if let Some(t) = v {
            payload[k] =
                serde_json::Value::String(tmpl.render(k, t, d).map_err(NotifyError::permanent)?);
        }
    }
    let mut ev = serde_json::json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key,
        "client": r("client", &cfg.client, "Vigil".into())?,
        "client_url": r("client_url", &cfg.client_url, d.external_url.clone())?,
    });
    if action == "trigger" {
        ev["payload"] = payload;
        if !cfg.images.is_empty() {
            ev["images"] = serde_json::Value::Array(cfg.images.clone());
        }
        if !cfg.links.is_empty() {
            ev["links"] = serde_json::Value::Array(cfg.links.clone());
        }
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
        assert_eq!(fire["payload"]["severity"], "critical");
        assert_eq!(res["event_action"], "resolve");
        assert_eq!(fire["dedup_key"], res["dedup_key"]);
    }
}
