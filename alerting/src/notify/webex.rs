//! Webex messages API, as Alertmanager 0.25 calls it: a JSON POST with the
//! room and a markdown message, authorised by `http_config.authorization`.
//! 5xx is retried.

use serde_json::{Value, json};

use super::common::{Notifier, api_url};
use super::http::truncate_bytes;
use super::{NotificationData, NotifyError, Templates};
use crate::config::{WebexConfig, defaults};

/// Webex refuses messages over 7439 bytes.
const MAX_MESSAGE_BYTES: usize = 7439;

pub type Webex = Notifier<WebexConfig>;

impl Notifier<WebexConfig> {
    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let body = message(&self.cfg, d, tmpl)?;
        let url = api_url(
            &self.cfg.api_url,
            &self.global.webex_api_url,
            defaults::WEBEX_API_URL,
        );
        self.http.post_json_checked(url, &body, &[]).await
    }
}

/// The JSON body.
pub fn message(
    cfg: &WebexConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let text = tmpl.field_or(
        d,
        "message",
        &cfg.message,
        r#"{{ template "webex.default.message" . }}"#,
    )?;
    let (text, _) = truncate_bytes(&text, MAX_MESSAGE_BYTES);
    let room = tmpl.field(d, "room_id", &cfg.room_id)?;
    let mut body = json!({ "markdown": text });
    if !room.is_empty() {
        body["roomId"] = Value::String(room);
    }
    Ok(body)
}
