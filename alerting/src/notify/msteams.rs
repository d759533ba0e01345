//! Microsoft Teams incoming webhook, as Alertmanager 0.26 defines it: a
//! legacy `MessageCard` with title, summary and markdown text, its theme
//! colour red while firing and green once resolved. The webhook URL may
//! come from a file, read when sending. 5xx is retried.

use serde_json::{Value, json};

use super::common::{Notifier, at, first_secret, status_colour};
use super::{NotificationData, NotifyError, Templates};
use crate::config::MsteamsConfig;

const COLOUR_RED: &str = "8C1A1A";
const COLOUR_GREEN: &str = "2DC72D";
const COLOUR_GREY: &str = "808080";

pub type Msteams = Notifier<MsteamsConfig>;

impl Notifier<MsteamsConfig> {
    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let url = first_secret(
            &[at(
                &self.cfg.webhook_url,
                &self.cfg.webhook_url_file,
                "webhook_url_file",
            )],
            "missing webhook_url",
        )?;
        let body = message(&self.cfg, d, tmpl)?;
        self.http.post_json_checked(url, &body, &[]).await
    }
}

/// The `MessageCard` body.
pub fn message(
    cfg: &MsteamsConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let t = |field, v, default| tmpl.field_or(d, field, v, default);
    let colour = status_colour(d, COLOUR_RED, COLOUR_GREEN, COLOUR_GREY);
    Ok(json!({
        "@context": "http://schema.org/extensions",
        "type": "MessageCard",
        "title": t("title", &cfg.title, r#"{{ template "msteams.default.title" . }}"#)?,
        "summary": t("summary", &cfg.summary, r#"{{ template "msteams.default.summary" . }}"#)?,
        "text": t("text", &cfg.text, r#"{{ template "msteams.default.text" . }}"#)?,
        "themeColor": colour,
    }))
}
