//! Discord webhook, as Alertmanager 0.25 calls it: one embed with the
//! title and message, red while firing, green once resolved. 5xx is
//! retried.

use serde_json::{Value, json};

use super::common::{Notifier, at, first_secret, status_colour};
use super::http::truncate_runes;
use super::{NotificationData, NotifyError, Templates};
use crate::config::DiscordConfig;

const MAX_TITLE_RUNES: usize = 256;
const MAX_DESCRIPTION_RUNES: usize = 4096;
const COLOUR_RED: u32 = 0x992D22;
const COLOUR_GREEN: u32 = 0x2ECC71;
const COLOUR_GREY: u32 = 0x95A5A6;

pub type Discord = Notifier<DiscordConfig>;

impl Notifier<DiscordConfig> {
    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let url = first_secret(
            &[at(&self.cfg.webhook_url, &None, "webhook_url")],
            "missing webhook_url",
        )?;
        let body = message(&self.cfg, d, tmpl)?;
        self.http.post_json_checked(url, &body, &[]).await
    }
}

/// The JSON body.
pub fn message(
    cfg: &DiscordConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let title = tmpl.field_or(
        d,
        "title",
        &cfg.title,
        r#"{{ template "discord.default.title" . }}"#,
    )?;
    let description = tmpl.field_or(
        d,
        "message",
        &cfg.message,
        r#"{{ template "discord.default.message" . }}"#,
    )?;
    let (title, _) = truncate_runes(&title, MAX_TITLE_RUNES);
    let (description, _) = truncate_runes(&description, MAX_DESCRIPTION_RUNES);
    let colour = status_colour(d, COLOUR_RED, COLOUR_GREEN, COLOUR_GREY);
    Ok(json!({
        "content": "",
        "embeds": [{"title": title, "description": description, "color": colour}],
    }))
}
