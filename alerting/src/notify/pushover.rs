//! Pushover messages API, as Alertmanager 0.25 calls it: a POST to
//! `https://api.pushover.net/1/messages.json` with every parameter in the
//! query string and an empty body. Title, message and URL are cut to
//! Pushover's limits. 5xx is retried.

use super::common::Notifier;
use super::http::{check_status, form_encode, truncate_runes};
use super::{NotificationData, NotifyError, Templates};
use crate::config::{PushoverConfig, defaults};

const MAX_TITLE_RUNES: usize = 250;
const MAX_MESSAGE_RUNES: usize = 1024;
const MAX_URL_RUNES: usize = 512;

pub type Pushover = Notifier<PushoverConfig>;

impl Notifier<PushoverConfig> {
    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let query = params(&self.cfg, d, tmpl)?;
        let url = format!("{}?{query}", defaults::PUSHOVER_API_URL);
        let req = self
            .http
            .client
            .post(url)
            .header("Content-Type", "text/plain");
        let (status, text) = self.http.send(req).await?;
        check_status(status, &text, &[])
    }
}

/// The query string.
pub fn params(
    cfg: &PushoverConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<String, NotifyError> {
    let t = |field, v, default| tmpl.field_or(d, field, v, default);
    let secret = |s: &Option<crate::config::Secret>| s.as_ref().map(|x| x.0.clone());
    let token = tmpl.field(d, "token", &secret(&cfg.token).unwrap_or_default())?;
    let user = tmpl.field(d, "user_key", &secret(&cfg.user_key).unwrap_or_default())?;
    let (title, _) = truncate_runes(
        &t(
            "title",
            &cfg.title,
            r#"{{ template "pushover.default.title" . }}"#,
        )?,
        MAX_TITLE_RUNES,
    );
    let message = tmpl.field_or_html(
        d,
        "message",
        &cfg.message,
        r#"{{ template "pushover.default.message" . }}"#,
        cfg.html,
    )?;
    let (message, _) = truncate_runes(&message, MAX_MESSAGE_RUNES);
    let mut message = message.trim().to_string();
    if message.is_empty() {
        message = "(no details)".into();
    }
    let (url, _) = truncate_runes(
        &t(
            "url",
            &cfg.url,
            r#"{{ template "pushover.default.url" . }}"#,
        )?,
        MAX_URL_RUNES,
    );
    let priority = t(
        "priority",
        &cfg.priority,
        r#"{{ if eq .Status "firing" }}2{{ else }}0{{ end }}"#,
    )?;
    let mut p: Vec<(&str, String)> = vec![
        ("token", token),
        ("user", user),
        ("title", title),
        ("message", message),
        ("url", url),
        ("url_title", t("url_title", &cfg.url_title, "")?),
        ("priority", priority),
        ("retry", cfg.retry.0.as_secs().to_string()),
        ("expire", cfg.expire.0.as_secs().to_string()),
        ("sound", t("sound", &cfg.sound, "")?),
    ];
    if cfg.html {
        p.push(("html", "1".into()));
    }
    Ok(form_encode(&p))
}
