//! Microsoft Teams incoming webhook, as Alertmanager 0.26 defines it: a
//! legacy `MessageCard` with title, summary and markdown text, its theme
//! colour red while firing and green once resolved. The webhook URL may
//! come from a file, read when sending. 5xx is retried.

use std::time::Duration;

use serde_json::{Value, json};

use super::http::{HttpClient, check_status};
use super::{NotificationData, NotifyError, Templates};
use crate::config::{GlobalConfig, MsteamsConfig, secret_value};

const COLOUR_RED: &str = "8C1A1A";
const COLOUR_GREEN: &str = "2DC72D";
const COLOUR_GREY: &str = "808080";

pub struct Msteams {
    pub cfg: MsteamsConfig,
    http: HttpClient,
}

impl Msteams {
    pub fn new(
        cfg: &MsteamsConfig,
        global: &GlobalConfig,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = HttpClient::new(
            cfg.http_config.as_ref().or(global.http_config.as_ref()),
            timeout,
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            http,
        })
    }

    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let url = secret_value(
            self.cfg.webhook_url.as_ref(),
            self.cfg.webhook_url_file.as_deref(),
        )
        .map_err(|e| NotifyError::retryable(format!("cannot read webhook_url_file: {e}")))?
        .ok_or_else(|| NotifyError::permanent("missing webhook_url"))?;
        let body = message(&self.cfg, d, tmpl)?;
        let req = self
            .http
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        let (status, text) = self.http.send(req).await?;
        check_status(status, &text, &[])
    }
}

/// The `MessageCard` body.
pub fn message(
    cfg: &MsteamsConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let t = |field: &str, v: &Option<String>, default: &str| -> Result<String, NotifyError> {
        tmpl.field(d, field, v.as_deref().unwrap_or(default))
    };
    let colour = match d.status.as_str() {
        "firing" => COLOUR_RED,
        "resolved" => COLOUR_GREEN,
        _ => COLOUR_GREY,
    };
    Ok(json!({
        "@context": "http://schema.org/extensions",
        "type": "MessageCard",
        "title": t("title", &cfg.title, r#"{{ template "msteams.default.title" . }}"#)?,
        "summary": t("summary", &cfg.summary, r#"{{ template "msteams.default.summary" . }}"#)?,
        "text": t("text", &cfg.text, r#"{{ template "msteams.default.text" . }}"#)?,
        "themeColor": colour,
    }))
}
