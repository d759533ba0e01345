//! Discord webhook, as Alertmanager 0.25 calls it: one embed with the
//! title and message, red while firing, green once resolved. 5xx is
//! retried.

use std::time::Duration;

use serde_json::{Value, json};

use super::http::{HttpClient, check_status, truncate_runes};
use super::{NotificationData, NotifyError, Templates};
use crate::config::{DiscordConfig, GlobalConfig};

const MAX_TITLE_RUNES: usize = 256;
const MAX_DESCRIPTION_RUNES: usize = 4096;
const COLOUR_RED: u32 = 0x992D22;
const COLOUR_GREEN: u32 = 0x2ECC71;
const COLOUR_GREY: u32 = 0x95A5A6;

pub struct Discord {
    pub cfg: DiscordConfig,
    http: HttpClient,
}

impl Discord {
    pub fn new(
        cfg: &DiscordConfig,
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
        let url = self
            .cfg
            .webhook_url
            .as_ref()
            .map(|s| s.0.clone())
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

/// The JSON body.
pub fn message(
    cfg: &DiscordConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let title = tmpl.field(
        d,
        "title",
        cfg.title
            .as_deref()
            .unwrap_or(r#"{{ template "discord.default.title" . }}"#),
    )?;
    let description = tmpl.field(
        d,
        "message",
        cfg.message
            .as_deref()
            .unwrap_or(r#"{{ template "discord.default.message" . }}"#),
    )?;
    let (title, _) = truncate_runes(&title, MAX_TITLE_RUNES);
    let (description, _) = truncate_runes(&description, MAX_DESCRIPTION_RUNES);
    let colour = match d.status.as_str() {
        "firing" => COLOUR_RED,
        "resolved" => COLOUR_GREEN,
        _ => COLOUR_GREY,
    };
    Ok(json!({
        "content": "",
        "embeds": [{"title": title, "description": description, "color": colour}],
    }))
}
