//! The configuration schema: one struct per Alertmanager block, with the
//! same field names and defaults as Alertmanager 0.25.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use vigil_wire::{MatchOp, Matcher};

use super::{ConfigError, located};
use crate::matchers::{parse_matchers, sort_matchers};
use crate::timeinterval::TimeIntervalSet;

/// A Prometheus duration (`30s`, `5m`, `1h30m`, `7d`, `1w`, `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Parses Prometheus's `model.ParseDuration` syntax: units y, w, d, h,
    /// m, s, ms in descending order, each at most once.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if s.is_empty() {
            return Err("empty duration string".into());
        }
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 86_400_000),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let mut rest = s;
        let mut total: u64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(format!("not a valid duration string: {s:?}"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("duration out of range: {s:?}"))?;
            rest = &rest[digits..];
            let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let idx = UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == unit)
                .map(|p| p + next_unit)
                .ok_or_else(|| format!("not a valid duration string: {s:?}"))?;
            next_unit = idx + 1;
            total = n
                .checked_mul(UNITS[idx].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("duration out of range: {s:?}"))?;
        }
        Ok(Self(Duration::from_millis(total)))
    }
}

impl fmt::Display for PromDuration {
    /// Prometheus's canonical form (`1h30m`, `0s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return write!(f, "0s");
        }
        for (u, n) in [
            ("y", 365 * 86_400_000u64),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= n {
                write!(f, "{}{u}", ms / n)?;
                ms %= n;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A secret string; never printed.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// One entry of a `matchers:` list: one or more matchers in Alertmanager
/// syntax, parsed (and so validated) while the file is read.
#[derive(Debug, Clone)]
pub struct MatcherList(pub Vec<Matcher>);

impl<'de> Deserialize<'de> for MatcherList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_matchers(&s)
            .map(MatcherList)
            .map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// A regular expression from a legacy `match_re` block, checked at load.
#[derive(Debug, Clone)]
pub struct RegexString(pub String);

impl<'de> Deserialize<'de> for RegexString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&format!("^(?:{s})$")).map_err(|e| {
            serde::de::Error::custom(format!("invalid regular expression {s:?}: {e}"))
        })?;
        Ok(Self(s))
    }
}

/// Folds `match`, `match_re` and `matchers` into one sorted matcher list
/// the way Alertmanager builds a route's matchers.
pub fn combine_matchers(
    eq: &BTreeMap<String, String>,
    re: &BTreeMap<String, RegexString>,
    lists: &[MatcherList],
) -> Vec<Matcher> {
    let mut out: Vec<Matcher> = eq
        .iter()
        .map(|(k, v)| Matcher::equal(k.clone(), v.clone()))
        .collect();
    for (k, v) in re {
        // The regex was compiled while loading, so construction succeeds.
        if let Ok(m) = Matcher::new(k.clone(), MatchOp::RegexMatch, v.0.clone()) {
            out.push(m);
        }
    }
    for l in lists {
        out.extend(l.0.iter().cloned());
    }
    sort_matchers(&mut out);
    out
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    #[serde(default)]
    pub global: GlobalConfig,
    /// The root of the routing tree.
    pub route: RouteConfig,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Template file globs. Vigil reads `define` blocks from them when the
    /// template engine supports it.
    #[serde(default)]
    pub templates: Vec<String>,
    /// Deprecated name of `time_intervals`, still accepted.
    #[serde(default)]
    pub mute_time_intervals: Vec<TimeIntervalSet>,
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalSet>,
    /// The file's text, served by `/api/v2/status`.
    #[serde(skip)]
    pub original: String,
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_resolve_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(300))
}
fn default_hello() -> String {
    "localhost".into()
}
fn default_true() -> bool {
    true
}
fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

/// `global:` defaults shared by receivers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// How long an alert without `endsAt` stays firing after its last update.
    #[serde(default = "default_resolve_timeout")]
    pub resolve_timeout: PromDuration,
    #[serde(default)]
    pub http_config: Option<HttpConfig>,
    pub smtp_from: Option<String>,
    #[serde(default = "default_hello")]
    pub smtp_hello: String,
    pub smtp_smarthost: Option<String>,
    pub smtp_auth_username: Option<String>,
    pub smtp_auth_password: Option<Secret>,
    pub smtp_auth_password_file: Option<PathBuf>,
    pub smtp_auth_secret: Option<Secret>,
    pub smtp_auth_identity: Option<String>,
    #[serde(default = "default_true")]
    pub smtp_require_tls: bool,
    pub slack_api_url: Option<Secret>,
    pub slack_api_url_file: Option<PathBuf>,
    #[serde(default = "default_pagerduty_url")]
    pub pagerduty_url: String,
    pub opsgenie_api_key: Option<Secret>,
    pub opsgenie_api_key_file: Option<PathBuf>,
    pub opsgenie_api_url: Option<String>,
    pub victorops_api_key: Option<Secret>,
    pub victorops_api_key_file: Option<PathBuf>,
    pub victorops_api_url: Option<String>,
    pub wechat_api_url: Option<String>,
    pub wechat_api_secret: Option<Secret>,
    pub wechat_api_corp_id: Option<String>,
    pub telegram_api_url: Option<String>,
    pub webex_api_url: Option<String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        // An empty mapping always deserializes: every field has a default.
        serde_saphyr::from_str("{}").expect("empty global block is valid")
    }
}

/// One node of the routing tree.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub receiver: Option<Spanned<String>>,
    /// Label names to group by; `...` groups by all labels.
    pub group_by: Option<Spanned<Vec<String>>>,
    /// Deprecated equality matchers.
    #[serde(default, rename = "match")]
    pub match_eq: BTreeMap<String, String>,
    /// Deprecated regex matchers.
    #[serde(default)]
    pub match_re: BTreeMap<String, RegexString>,
    #[serde(default)]
    pub matchers: Vec<MatcherList>,
    #[serde(default)]
    pub mute_time_intervals: Vec<Spanned<String>>,
    #[serde(default)]
    pub active_time_intervals: Vec<Spanned<String>>,
    /// Keep matching siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    pub group_wait: Option<Spanned<PromDuration>>,
    pub group_interval: Option<Spanned<PromDuration>>,
    pub repeat_interval: Option<Spanned<PromDuration>>,
    /// Vigil extension: grow the repeat interval for an unchanged group.
    pub vigil_repeat_backoff: Option<RepeatBackoff>,
}

impl RouteConfig {
    /// This route's own matchers (all three syntaxes), sorted.
    pub fn all_matchers(&self) -> Vec<Matcher> {
        combine_matchers(&self.match_eq, &self.match_re, &self.matchers)
    }
}

/// `vigil_repeat_backoff: {factor: 2, max: 24h}`: each repeat of an
/// unchanged notification waits `factor` times longer, up to `max`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatBackoff {
    #[serde(default = "default_factor")]
    pub factor: f64,
    pub max: PromDuration,
}

fn default_factor() -> f64 {
    2.0
}

/// `vigil_rate_limit: {max_notifications: 5, per: 10m}`: past the limit,
/// notifications to the receiver are folded into one digest sent when the
/// window ends; nothing is dropped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub max_notifications: u32,
    pub per: PromDuration,
}

/// One inhibition rule, new and legacy forms.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    #[serde(default)]
    pub source_match: BTreeMap<String, String>,
    #[serde(default)]
    pub source_match_re: BTreeMap<String, RegexString>,
    #[serde(default)]
    pub source_matchers: Vec<MatcherList>,
    #[serde(default)]
    pub target_match: BTreeMap<String, String>,
    #[serde(default)]
    pub target_match_re: BTreeMap<String, RegexString>,
    #[serde(default)]
    pub target_matchers: Vec<MatcherList>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A named receiver and its integrations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: Spanned<String>,
    #[serde(default)]
    pub email_configs: Vec<EmailConfig>,
    #[serde(default)]
    pub slack_configs: Vec<SlackConfig>,
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
    #[serde(default)]
    pub pagerduty_configs: Vec<PagerdutyConfig>,
    #[serde(default)]
    pub opsgenie_configs: Vec<super::receivers::OpsgenieConfig>,
    #[serde(default)]
    pub wechat_configs: Vec<super::receivers::WechatConfig>,
    #[serde(default)]
    pub pushover_configs: Vec<super::receivers::PushoverConfig>,
    #[serde(default)]
    pub victorops_configs: Vec<super::receivers::VictoropsConfig>,
    #[serde(default)]
    pub sns_configs: Vec<super::receivers::SnsConfig>,
    #[serde(default)]
    pub telegram_configs: Vec<super::receivers::TelegramConfig>,
    #[serde(default)]
    pub discord_configs: Vec<super::receivers::DiscordConfig>,
    #[serde(default)]
    pub webex_configs: Vec<super::receivers::WebexConfig>,
    /// Alertmanager 0.26's Microsoft Teams integration.
    #[serde(default)]
    pub msteams_configs: Vec<super::receivers::MsteamsConfig>,
    /// Vigil extension: a generic SMS gateway.
    #[serde(default)]
    pub vigil_sms_configs: Vec<super::receivers::SmsConfig>,
    /// Vigil extension: fold storms into digests.
    pub vigil_rate_limit: Option<RateLimitConfig>,
}

impl ReceiverConfig {
    pub(super) fn validate(&self, file: &str, global: &GlobalConfig) -> Result<(), ConfigError> {
        let here = |reason: String| located(file, &self.name, reason);
        let who = &self.name.value;
        for w in &self.webhook_configs {
            match (&w.url, &w.url_file) {
                (None, None) => {
                    return Err(here(format!(
                        "receiver {who:?}: one of url or url_file must be configured"
                    )));
                }
                (Some(_), Some(_)) => {
                    return Err(here(format!(
                        "receiver {who:?}: at most one of url & url_file must be configured"
                    )));
                }
                (Some(u), None) => {
                    check_url(&u.0).map_err(|e| here(format!("receiver {who:?}: {e}")))?
                }
                _ => {}
            }
            if let Some(h) = &w.http_config {
                h.validate()
                    .map_err(|e| here(format!("receiver {who:?}: {e}")))?;
            }
        }
        super::receivers::validate_extra(self, global)
            .map_err(|e| here(format!("receiver {who:?}: {e}")))?;
        for e in &self.email_configs {
            if e.to.is_empty() {
                return Err(here(format!(
                    "receiver {who:?}: missing to address in email config"
                )));
            }
            if e.smarthost.is_none() && global.smtp_smarthost.is_none() {
                return Err(here(format!(
                    "receiver {who:?}: no global SMTP smarthost set"
                )));
            }
            if e.from.is_none() && global.smtp_from.is_none() {
                return Err(here(format!("receiver {who:?}: no global SMTP from set")));
            }
        }
        for s in &self.slack_configs {
            if s.api_url.is_some() && s.api_url_file.is_some() {
                return Err(here(format!(
                    "receiver {who:?}: at most one of api_url & api_url_file must be configured"
                )));
            }
            if s.api_url.is_none()
                && s.api_url_file.is_none()
                && global.slack_api_url.is_none()
                && global.slack_api_url_file.is_none()
            {
                return Err(here(format!(
                    "receiver {who:?}: no global Slack API URL set"
                )));
            }
            if let Some(h) = &s.http_config {
                h.validate()
                    .map_err(|e| here(format!("receiver {who:?}: {e}")))?;
            }
        }
        for p in &self.pagerduty_configs {
            let keys = [
                p.routing_key.is_some(),
                p.routing_key_file.is_some(),
                p.service_key.is_some(),
                p.service_key_file.is_some(),
            ];
            if !keys.iter().any(|k| *k) {
                return Err(here(format!(
                    "receiver {who:?}: missing service or routing key in PagerDuty config"
                )));
            }
        }
        Ok(())
    }
}

pub(super) fn check_url(u: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(u).map_err(|e| format!("invalid url {u:?}: {e}"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(format!("unsupported scheme {:?} for URL", parsed.scheme()));
    }
    Ok(())
}

/// HTTP client settings (Prometheus `common/config.HTTPClientConfig`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    /// Accepted so files load; Vigil does not run OAuth2 flows and rejects
    /// a receiver that needs one.
    pub oauth2: Option<serde_json::Value>,
    pub tls_config: Option<TlsConfig>,
    pub proxy_url: Option<String>,
    pub no_proxy: Option<String>,
    pub proxy_from_environment: Option<bool>,
    pub proxy_connect_header: Option<serde_json::Value>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    /// Custom headers in newer Prometheus `common` syntax (not in
    /// Alertmanager 0.25): `Name: {values: [...], secrets: [...], files: [...]}`.
    pub http_headers: Option<BTreeMap<String, HeaderValues>>,
}

impl HttpConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        let n = [
            self.basic_auth.is_some(),
            self.authorization.is_some(),
            self.bearer_token.is_some() || self.bearer_token_file.is_some(),
            self.oauth2.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n > 1 {
            return Err("at most one of basic_auth, oauth2, bearer_token & authorization must be configured".into());
        }
        if self.oauth2.is_some() {
            return Err("oauth2 is not supported by Vigil".into());
        }
        // Alertmanager parses proxy_url loosely (a relative URL loads and
        // then fails each send); only an absolute URL's scheme is checked.
        if let Some(p) = &self.proxy_url
            && let Ok(u) = reqwest::Url::parse(p)
            && !["http", "https", "socks5"].contains(&u.scheme())
            && u.has_host()
        {
            return Err(format!(
                "unsupported proxy scheme {:?} in proxy_url",
                u.scheme()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeaderValues {
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<Secret>,
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    pub username_file: Option<PathBuf>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(rename = "type", default = "default_bearer")]
    pub auth_type: String,
    pub credentials: Option<Secret>,
    pub credentials_file: Option<PathBuf>,
}

fn default_bearer() -> String {
    "Bearer".into()
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

/// `email_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[serde(default)]
    pub send_resolved: bool,
    pub to: String,
    pub from: Option<String>,
    pub hello: Option<String>,
    /// `host:port`; port 465 means implicit TLS.
    pub smarthost: Option<String>,
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
    pub auth_password_file: Option<PathBuf>,
    pub auth_secret: Option<Secret>,
    pub auth_identity: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub require_tls: Option<bool>,
    pub tls_config: Option<TlsConfig>,
}

/// `slack_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    #[serde(default)]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub api_url: Option<Secret>,
    pub api_url_file: Option<PathBuf>,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub color: Option<String>,
    pub title: Option<String>,
    pub title_link: Option<String>,
    pub pretext: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub fields: Vec<SlackField>,
    #[serde(default)]
    pub short_fields: bool,
    pub footer: Option<String>,
    pub fallback: Option<String>,
    pub callback_id: Option<String>,
    pub icon_emoji: Option<String>,
    pub icon_url: Option<String>,
    pub image_url: Option<String>,
    pub thumb_url: Option<String>,
    #[serde(default)]
    pub link_names: bool,
    #[serde(default)]
    pub mrkdwn_in: Vec<String>,
    #[serde(default)]
    pub actions: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackField {
    pub title: String,
    pub value: String,
    pub short: Option<bool>,
}

/// `webhook_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub url: Option<Secret>,
    pub url_file: Option<PathBuf>,
    /// At most this many alerts per message (0 = all); the rest are
    /// counted in `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: u64,
}

/// `pagerduty_configs` entry (Events API v2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerdutyConfig {
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    pub http_config: Option<HttpConfig>,
    pub service_key: Option<Secret>,
    pub service_key_file: Option<PathBuf>,
    pub routing_key: Option<Secret>,
    pub routing_key_file: Option<PathBuf>,
    pub url: Option<String>,
    pub client: Option<String>,
    pub client_url: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    #[serde(default)]
    pub images: Vec<serde_json::Value>,
    #[serde(default)]
    pub links: Vec<serde_json::Value>,
    pub source: Option<String>,
    pub severity: Option<String>,
    pub class: Option<String>,
    pub component: Option<String>,
    pub group: Option<String>,
}

/// Resolves an inline secret or a `*_file` one.
pub fn secret_value(
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> std::io::Result<Option<String>> {
    if let Some(s) = inline {
        return Ok(Some(s.0.clone()));
    }
    match file {
        Some(p) => super::read_secret_file(p).map(Some),
        None => Ok(None),
    }
}
