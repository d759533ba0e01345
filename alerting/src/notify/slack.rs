//! Slack integration: one incoming-webhook message with one attachment,
//! coloured by severity, with the alert name, value, severity, time and
//! summary as fields unless the configuration gives its own fields.

use super::common::{Notifier, at, first_secret};
use super::{NotificationData, NotifyError, Templates, severity_colour};
use crate::config::SlackConfig;

pub type Slack = Notifier<SlackConfig>;

impl Notifier<SlackConfig> {
    /// The webhook URL; `*_file` forms are read when sending.
    fn url(&self) -> Result<String, NotifyError> {
        let (c, g) = (&self.cfg, &self.global);
        first_secret(
            &[
                at(&c.api_url, &c.api_url_file, "api_url_file"),
                at(
                    &g.slack_api_url,
                    &g.slack_api_url_file,
                    "slack_api_url_file",
                ),
            ],
            "no Slack API URL",
        )
    }

    pub async fn notify(
        &self,
        data: &NotificationData,
        tmpl: &Templates,
    ) -> Result<(), NotifyError> {
        let body = payload(&self.cfg, data, tmpl)?;
        self.http.post_json(&self.url()?, &body).await
    }
}

impl Notifier<SlackConfig> {
    /// Posts a document that is not an alert notification (the report
    /// digest): one message with `text` in Slack's mrkdwn, to this
    /// receiver's webhook and channel.
    pub async fn post_document(&self, text: &str) -> Result<(), NotifyError> {
        let mut body = serde_json::json!({ "text": text, "mrkdwn": true });
        if let Some(channel) = &self.cfg.channel {
            body["channel"] = serde_json::Value::String(channel.clone());
        }
        if let Some(user) = &self.cfg.username {
            body["username"] = serde_json::Value::String(user.clone());
        }
        self.http.post_json(&self.url()?, &body).await
    }
}

/// The message Slack receives.
pub fn payload(
    cfg: &SlackConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<serde_json::Value, NotifyError> {
    let r = |name: &str, v: &Option<String>| -> Result<Option<String>, NotifyError> {
        match v {
            Some(t) => tmpl
                .render(name, t, d)
                .map(Some)
                .map_err(|e| NotifyError::permanent(format!("template {name}: {e}"))),
            None => Ok(None),
        }
    };
    let title = r("title", &cfg.title)?.unwrap_or_else(|| super::email::default_subject(d));
    let text = r("text", &cfg.text)?.unwrap_or_else(|| default_text(d));
    let severity = d.severity();
    let colour = r("color", &cfg.color)?
        .unwrap_or_else(|| severity_colour(&severity, d.status == "resolved").to_string());
    let fields: Vec<serde_json::Value> = if cfg.fields.is_empty() {
        default_fields(d, &severity)
    } else {
        let mut out = Vec::new();
        for f in &cfg.fields {
            out.push(serde_json::json!({
                "title": tmpl.render("field", &f.title, d).map_err(NotifyError::permanent)?,
                "value": tmpl.render("field", &f.value, d).map_err(NotifyError::permanent)?,
                "short": f.short.unwrap_or(cfg.short_fields),
            }));
        }
        out
    };
    let mut att = serde_json::json!({
        "title": title,
        "text": text,
        "color": colour,
        "fallback": r("fallback", &cfg.fallback)?.unwrap_or_else(|| title.clone()),
        "fields": fields,
        "mrkdwn_in": if cfg.mrkdwn_in.is_empty() { vec!["fallback".to_string(), "pretext".into(), "text".into()] } else { cfg.mrkdwn_in.clone() },
    });
    for (k, v) in [
        ("title_link", &cfg.title_link),
        ("pretext", &cfg.pretext),
        ("footer", &cfg.footer),
        ("callback_id", &cfg.callback_id),
        ("image_url", &cfg.image_url),
        ("thumb_url", &cfg.thumb_url),
    ] {
        if let Some(v) = r(k, v)? {
            att[k] = serde_json::Value::String(v);
        }
    }
    if !cfg.actions.is_empty() {
        att["actions"] = serde_json::Value::Array(cfg.actions.clone());
    }
    let mut msg = serde_json::json!({ "attachments": [att] });
    for (k, v) in [
        ("channel", &cfg.channel),
        ("username", &cfg.username),
        ("icon_emoji", &cfg.icon_emoji),
        ("icon_url", &cfg.icon_url),
    ] {
        if let Some(v) = r(k, v)? {
            msg[k] = serde_json::Value::String(v);
        }
    }
    if cfg.link_names {
        msg["link_names"] = serde_json::Value::Bool(true);
    }
    Ok(msg)
}

fn default_text(d: &NotificationData) -> String {
    d.alerts
        .iter()
        .map(|a| {
            let name = a.labels.get("alertname").map(String::as_str).unwrap_or("");
            let what = a
                .annotations
                .get("summary")
                .or_else(|| a.annotations.get("description"))
                .map(String::as_str)
                .unwrap_or("");
            format!("*{}* {name}: {what}", a.status.to_uppercase())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn default_fields(d: &NotificationData, severity: &str) -> Vec<serde_json::Value> {
    let first = d.firing().next().or_else(|| d.alerts.first());
    let value = first
        .and_then(|a| a.annotations.get("value").or_else(|| a.labels.get("value")))
        .cloned()
        .unwrap_or_default();
    let time = first
        .map(|a| crate::alert::format_go_time(&a.starts_at))
        .unwrap_or_default();
    let summary = d
        .common_annotations
        .get("summary")
        .or_else(|| first.and_then(|a| a.annotations.get("summary")))
        .cloned()
        .unwrap_or_default();
    let mut fields = vec![
        serde_json::json!({"title": "Alert", "value": d.alert_name(), "short": true}),
        serde_json::json!({"title": "Severity", "value": severity, "short": true}),
    ];
    if !value.is_empty() {
        fields.push(serde_json::json!({"title": "Value", "value": value, "short": true}));
    }
    fields.push(serde_json::json!({"title": "Time", "value": time, "short": true}));
    if !summary.is_empty() {
        fields.push(serde_json::json!({"title": "Summary", "value": summary, "short": false}));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, PostableAlert};
    use crate::matchers::LabelSet;

    #[test]
    fn attachment_coloured_with_fields() {
        let now = chrono::Utc::now();
        let p = PostableAlert {
            labels: [("alertname", "DiskFull"), ("severity", "warning")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: [("summary", "disk 91% full"), ("value", "0.91")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let a = Alert::from_postable(p, now, chrono::Duration::minutes(5)).expect("valid");
        let d = NotificationData::new("r", "k", &LabelSet::new(), &[a], "http://v", now);
        let cfg: SlackConfig =
            serde_saphyr::from_str("api_url: http://x\nchannel: '#ops'\n").expect("valid");
        let m = payload(&cfg, &d, &Templates::default()).expect("payload");
        assert_eq!(m["channel"], "#ops");
        let att = &m["attachments"][0];
        assert_eq!(att["color"], "#ffaa00");
        let fields = att["fields"].as_array().expect("fields");
        let get = |t: &str| {
            fields
                .iter()
                .find(|f| f["title"] == t)
                .map(|f| f["value"].clone())
        };
        assert_eq!(get("Alert"), Some("DiskFull".into()));
        assert_eq!(get("Value"), Some("0.91".into()));
        assert_eq!(get("Summary"), Some("disk 91% full".into()));
    }
}
