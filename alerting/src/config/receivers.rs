//! Configuration of the integrations beyond email, Slack, webhook and
//! PagerDuty: OpsGenie, VictorOps, Pushover, WeChat, SNS, Telegram, Discord
//! and Webex, with Alertmanager 0.25's field names, defaults and load-time
//! checks (the same messages `amtool check-config` prints).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::types::{GlobalConfig, HttpConfig, PromDuration, Secret};

fn default_true() -> bool {
    true
}

/// `opsgenie_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub api_url: Option<String>,
    pub message: Option<String>,
    pub description: Option<String>,
    pub source: Option<String>,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    pub entity: Option<String>,
    #[serde(default)]
    pub responders: Vec<OpsgenieResponder>,
    pub actions: Option<String>,
    pub tags: Option<String>,
    pub note: Option<String>,
    pub priority: Option<String>,
    #[serde(default)]
    pub update_alerts: bool,
}

/// One OpsGenie responder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieResponder {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub username: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// `victorops_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VictoropsConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub api_url: Option<String>,
    #[serde(default)]
    pub routing_key: String,
    pub message_type: Option<String>,
    pub state_message: Option<String>,
    pub entity_display_name: Option<String>,
    pub monitoring_tool: Option<String>,
    #[serde(default)]
    pub custom_fields: BTreeMap<String, String>,
}

fn default_retry() -> PromDuration {
    PromDuration(std::time::Duration::from_secs(60))
}
fn default_expire() -> PromDuration {
    PromDuration(std::time::Duration::from_secs(3600))
}

/// `pushover_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushoverConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub user_key: Option<Secret>,
    pub token: Option<Secret>,
    pub title: Option<String>,
    pub message: Option<String>,
    pub url: Option<String>,
    pub url_title: Option<String>,
    pub sound: Option<String>,
    pub priority: Option<String>,
    #[serde(default = "default_retry")]
    pub retry: PromDuration,
    #[serde(default = "default_expire")]
    pub expire: PromDuration,
    #[serde(default)]
    pub html: bool,
}

/// `wechat_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatConfig {
    #[serde(default)]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub api_secret: Option<Secret>,
    pub api_url: Option<String>,
    pub corp_id: Option<String>,
    pub message: Option<String>,
    pub message_type: Option<String>,
    pub to_user: Option<String>,
    pub to_party: Option<String>,
    pub to_tag: Option<String>,
    pub agent_id: Option<String>,
}

/// AWS signature settings of an SNS receiver.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Sigv4Config {
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub access_key: String,
    pub secret_key: Option<Secret>,
    #[serde(default)]
    pub profile: String,
    #[serde(default)]
    pub role_arn: String,
}

/// `sns_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub api_url: Option<String>,
    #[serde(default)]
    pub sigv4: Sigv4Config,
    pub topic_arn: Option<String>,
    pub phone_number: Option<String>,
    pub target_arn: Option<String>,
    pub subject: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `telegram_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub api_url: Option<String>,
    pub bot_token: Option<Secret>,
    #[serde(default)]
    pub chat_id: i64,
    pub message: Option<String>,
    #[serde(default)]
    pub disable_notifications: bool,
    pub parse_mode: Option<String>,
}

/// `discord_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub webhook_url: Option<Secret>,
    pub title: Option<String>,
    pub message: Option<String>,
}

/// `webex_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebexConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub api_url: Option<String>,
    #[serde(default)]
    pub room_id: String,
    pub message: Option<String>,
}

/// `msteams_configs` entry, as Alertmanager 0.26 defines it (an
/// Alertmanager 0.25 file cannot contain it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsteamsConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub webhook_url: Option<Secret>,
    pub webhook_url_file: Option<PathBuf>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
}

fn default_sms_length() -> usize {
    160
}
fn default_method() -> String {
    "POST".into()
}

/// `vigil_sms_configs` entry (Vigil's extension): a generic SMS gateway.
/// One request per number in `to`; the message is rendered, then cut to
/// `max_length` characters; `body` (a template seeing `.Message` and
/// `.To` besides the notification) shapes the request, a form
/// `to=…&message=…` when absent. Authentication comes from `http_config`
/// (`basic_auth.password_file`, `authorization.credentials_file`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    #[serde(default)]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    pub to: Vec<String>,
    pub message: Option<String>,
    #[serde(default = "default_sms_length")]
    pub max_length: usize,
    pub body: Option<String>,
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Alertmanager's default API endpoints, used when neither the receiver
/// nor `global:` names one.
pub mod defaults {
    pub const OPSGENIE_API_URL: &str = "https://api.opsgenie.com/";
    pub const VICTOROPS_API_URL: &str =
        "https://alert.victorops.com/integrations/generic/20131114/alert/";
    pub const WECHAT_API_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/";
    pub const TELEGRAM_API_URL: &str = "https://api.telegram.org";
    pub const WEBEX_API_URL: &str = "https://webexapis.com/v1/messages";
    pub const PUSHOVER_API_URL: &str = "https://api.pushover.net/1/messages.json";
}

/// Load-time checks of the integrations above, with Alertmanager 0.25's
/// messages. `Err` carries the reason; the caller locates it.
pub fn validate_extra(r: &super::ReceiverConfig, global: &GlobalConfig) -> Result<(), String> {
    for o in &r.opsgenie_configs {
        check_api_key(
            (&o.api_key, &o.api_key_file),
            (&global.opsgenie_api_key, &global.opsgenie_api_key_file),
            "no global OpsGenie API Key set",
        )?;
        for resp in &o.responders {
            if resp.id.is_empty() && resp.username.is_empty() && resp.name.is_empty() {
                return Err(format!(
                    "opsGenieConfig responder {:?} has to have at least one of id, username or name specified",
                    resp.kind
                ));
            }
            if resp.kind.contains("{{") {
                continue;
            }
            let kind = resp.kind.to_lowercase();
            if !["team", "teams", "user", "escalation", "schedule"].contains(&kind.as_str()) {
                return Err(format!(
                    "opsGenieConfig responder {:?} type does not match valid options team,teams,user,escalation,schedule",
                    resp.kind
                ));
            }
        }
        check_http(o.http_config.as_ref())?;
    }
    for v in &r.victorops_configs {
        if v.routing_key.is_empty() {
            return Err("missing Routing key in VictorOps config".into());
        }
        check_api_key(
            (&v.api_key, &v.api_key_file),
            (&global.victorops_api_key, &global.victorops_api_key_file),
            "no global VictorOps API Key set",
        )?;
        const RESERVED: [&str; 7] = [
            "routing_key",
            "message_type",
            "state_message",
            "entity_display_name",
            "monitoring_tool",
            "entity_id",
            "entity_state",
        ];
        for k in v.custom_fields.keys() {
            if RESERVED.contains(&k.as_str()) {
                return Err(format!(
                    "victorOps config contains custom field {k} which cannot be used as it conflicts with the fixed/static fields"
                ));
            }
        }
        check_http(v.http_config.as_ref())?;
    }
    for p in &r.pushover_configs {
        if blank(&p.user_key) {
            return Err("missing user key in Pushover config".into());
        }
        if blank(&p.token) {
            return Err("missing token in Pushover config".into());
        }
        check_http(p.http_config.as_ref())?;
    }
    for w in &r.wechat_configs {
        if let Some(t) = &w.message_type
            && t != "text"
            && t != "markdown"
        {
            return Err(format!(
                "weChat message type {t:?} does not match valid options text,markdown"
            ));
        }
        if w.api_secret.is_none() && global.wechat_api_secret.is_none() {
            return Err("no global Wechat ApiSecret set".into());
        }
        if w.corp_id.is_none() && global.wechat_api_corp_id.is_none() {
            return Err("no global Wechat CorpID set".into());
        }
        check_http(w.http_config.as_ref())?;
    }
    for s in &r.sns_configs {
        let set = [&s.topic_arn, &s.phone_number, &s.target_arn]
            .iter()
            .filter(|v| v.as_ref().is_some_and(|x| !x.is_empty()))
            .count();
        if set != 1 {
            return Err(
                "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config"
                    .into(),
            );
        }
        if s.sigv4.access_key.is_empty() != blank(&s.sigv4.secret_key) {
            return Err(
                "must provide a AWS SigV4 Access key and Secret Key if credentials are specified in the SNS config"
                    .into(),
            );
        }
        if !s.sigv4.role_arn.is_empty() || !s.sigv4.profile.is_empty() {
            // Refused rather than accepted and never delivered.
            return Err(
                "sns_configs: sigv4 role_arn and profile are not supported by Vigil; give sigv4 access_key and secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in Vigil's environment"
                    .into(),
            );
        }
        check_http(s.http_config.as_ref())?;
    }
    for t in &r.telegram_configs {
        if blank(&t.bot_token) {
            return Err("missing bot_token on telegram_config".into());
        }
        if t.chat_id == 0 {
            return Err("missing chat_id on telegram_config".into());
        }
        if let Some(m) = &t.parse_mode
            && !["", "Markdown", "MarkdownV2", "HTML"].contains(&m.as_str())
        {
            return Err(
                "unknown parse_mode on telegram_config, must be Markdown, MarkdownV2, HTML or empty string"
                    .into(),
            );
        }
        check_http(t.http_config.as_ref())?;
    }
    for d in &r.discord_configs {
        match &d.webhook_url {
            None => return Err("missing webhook_url on discord_config".into()),
            Some(u) => super::types::check_url(&u.0)?,
        }
        check_http(d.http_config.as_ref())?;
    }
    for m in &r.msteams_configs {
        at_most_one(&m.webhook_url, &m.webhook_url_file, "webhook_url")?;
        match (&m.webhook_url, &m.webhook_url_file) {
            (None, None) => {
                return Err("one of webhook_url or webhook_url_file must be configured".into());
            }
            (Some(u), _) => super::types::check_url(&u.0)?,
            _ => {}
        }
        check_http(m.http_config.as_ref())?;
    }
    for s in &r.vigil_sms_configs {
        super::types::check_url(&s.url).map_err(|e| format!("vigil_sms_configs: {e}"))?;
        if !["GET", "POST", "PUT"].contains(&s.method.as_str()) {
            return Err(format!(
                "vigil_sms_configs: method {:?} is not one of GET, POST, PUT",
                s.method
            ));
        }
        if s.to.is_empty() || s.to.iter().any(|n| n.trim().is_empty()) {
            return Err("vigil_sms_configs: `to` needs at least one phone number".into());
        }
        if s.max_length == 0 {
            return Err("vigil_sms_configs: max_length must be at least 1".into());
        }
        check_http(s.http_config.as_ref())?;
    }
    for w in &r.webex_configs {
        if w.room_id.is_empty() {
            return Err("missing room_id on webex_config".into());
        }
        let auth = w
            .http_config
            .as_ref()
            .is_some_and(|h| h.authorization.is_some());
        if !auth {
            return Err("missing webex_configs.http_config.authorization".into());
        }
        check_http(w.http_config.as_ref())?;
    }
    Ok(())
}

/// Alertmanager's rule for a secret given inline or as `<field>_file`:
/// not both.
fn at_most_one(inline: &Option<Secret>, file: &Option<PathBuf>, field: &str) -> Result<(), String> {
    if inline.is_some() && file.is_some() {
        return Err(format!(
            "at most one of {field} & {field}_file must be configured"
        ));
    }
    Ok(())
}

/// An API key (OpsGenie, VictorOps): at most one of `api_key` and
/// `api_key_file`, and one of them here or under `global:`.
fn check_api_key(
    own: (&Option<Secret>, &Option<PathBuf>),
    global: (&Option<Secret>, &Option<PathBuf>),
    missing: &str,
) -> Result<(), String> {
    at_most_one(own.0, own.1, "api_key")?;
    if [own, global]
        .iter()
        .all(|(inline, file)| inline.is_none() && file.is_none())
    {
        return Err(missing.into());
    }
    Ok(())
}

/// A secret left out or empty.
fn blank(s: &Option<Secret>) -> bool {
    s.as_ref().is_none_or(|s| s.0.is_empty())
}

fn check_http(h: Option<&HttpConfig>) -> Result<(), String> {
    match h {
        Some(h) => h.validate(),
        None => Ok(()),
    }
}
