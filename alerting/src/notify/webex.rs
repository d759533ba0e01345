//! Webex messages API, as Alertmanager 0.25 calls it: a JSON POST with the
//! room and a markdown message, authorised by `http_config.authorization`.
//! 5xx is retried.

use std::time::Duration;

use serde_json::{Value, json};

use super::http::{HttpClient, check_status, truncate_bytes};
use super::{NotificationData, NotifyError, Templates};
use crate::config::{GlobalConfig, WebexConfig, defaults};

/// Webex refuses messages over 7439 bytes.
const MAX_MESSAGE_BYTES: usize = 7439;

pub struct Webex {
    pub cfg: WebexConfig,
    url: String,
    http: HttpClient,
}

impl Webex {
    pub fn new(
        cfg: &WebexConfig,
        global: &GlobalConfig,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = HttpClient::new(
            cfg.http_config.as_ref().or(global.http_config.as_ref()),
            timeout,
        )?;
        let url = cfg
            .api_url
            .clone()
            .or_else(|| global.webex_api_url.clone())
            .unwrap_or_else(|| defaults::WEBEX_API_URL.to_string());
        Ok(Self {
            cfg: cfg.clone(),
            url,
            http,
        })
    }

    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let body = message(&self.cfg, d, tmpl)?;
        let req = self
            .http
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        let (status, text) = self.http.send(req).await?;
        check_status(status, &text, &[])
    }
}

/// The JSON body.
pub fn message(
    cfg: &WebexConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let text = tmpl.field(
        d,
        "message",
        cfg.message
            .as_deref()
            .unwrap_or(r#"{{ template "webex.default.message" . }}"#),
    )?;
    let (text, _) = truncate_bytes(&text, MAX_MESSAGE_BYTES);
    let room = tmpl.field(d, "room_id", &cfg.room_id)?;
    let mut body = json!({ "markdown": text });
    if !room.is_empty() {
        body["roomId"] = Value::String(room);
    }
    Ok(body)
}
