//! Telegram Bot API `sendMessage`, as Alertmanager 0.25 calls it through
//! its bot library: a JSON object of strings POSTed to
//! `api_url/bot<token>/sendMessage`. With `parse_mode: HTML` (the
//! default) the message template escapes what it prints, as Go's
//! `html/template` does. Every failure is retried, as Alertmanager does.

use serde_json::{Map, Value};

use super::common::{Notifier, api_url, at, first_secret};
use super::http::truncate_runes;
use super::{NotificationData, NotifyError, Templates};
use crate::config::{TelegramConfig, defaults};

/// Telegram refuses longer messages.
const MAX_MESSAGE_RUNES: usize = 4096;

pub type Telegram = Notifier<TelegramConfig>;

impl Notifier<TelegramConfig> {
    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let token = first_secret(
            &[at(&self.cfg.bot_token, &None, "bot_token")],
            "missing bot_token",
        )?;
        let base = api_url(
            &self.cfg.api_url,
            &self.global.telegram_api_url,
            defaults::TELEGRAM_API_URL,
        );
        let url = format!("{}/bot{token}/sendMessage", base.trim_end_matches('/'));
        let body = message(&self.cfg, d, tmpl)?;
        let req = self.http.json_request(reqwest::Method::POST, url, &body);
        // The URL carries the token: errors name only the status.
        let (status, text) = self.http.send(req).await?;
        let ok = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("ok").and_then(Value::as_bool))
            .unwrap_or(false);
        if (200..300).contains(&status) && ok {
            return Ok(());
        }
        let text: String = text.chars().take(256).collect();
        Err(NotifyError::retryable(format!(
            "telegram answered {status}: {text}"
        )))
    }
}

/// The JSON body: every value a string, as the bot library sends it.
pub fn message(
    cfg: &TelegramConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let parse_mode = cfg.parse_mode.clone().unwrap_or_else(|| "HTML".into());
    let text = tmpl.field_or_html(
        d,
        "message",
        &cfg.message,
        r#"{{ template "telegram.default.message" . }}"#,
        parse_mode == "HTML",
    )?;
    let (text, _) = truncate_runes(&text, MAX_MESSAGE_RUNES);
    let mut m = Map::new();
    m.insert("chat_id".into(), Value::String(cfg.chat_id.to_string()));
    m.insert("text".into(), Value::String(text));
    if !parse_mode.is_empty() {
        m.insert("parse_mode".into(), Value::String(parse_mode));
    }
    // Alertmanager always turns link previews off.
    m.insert(
        "disable_web_page_preview".into(),
        Value::String("true".into()),
    );
    if cfg.disable_notifications {
        m.insert("disable_notification".into(), Value::String("true".into()));
    }
    Ok(Value::Object(m))
}
