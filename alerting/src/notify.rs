//! Receivers and their integrations: the notification data every
//! integration renders from (Alertmanager's template `Data`), the
//! integrations themselves, and template rendering with Alertmanager's
//! helpers (`.Alerts.Firing`, `.CommonLabels.SortedPairs`, ...).

pub mod common;
pub mod discord;
pub mod email;
pub mod http;
pub mod msteams;
pub mod opsgenie;
pub mod pagerduty;
pub mod pushover;
pub mod slack;
pub mod sms;
pub mod sns;
pub mod telegram;
pub mod victorops;
pub mod webex;
pub mod webhook;
pub mod wechat;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use vigil_template::{Template, Value};

use crate::alert::{Alert, go_zero_time};
use crate::config::{AlertingConfig, RateLimitConfig};
use crate::matchers::{LabelSet, fingerprint_hex};
use crate::nflog::IntegrationId;

/// One alert inside a notification (template `Alert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertData {
    pub status: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    #[serde(rename = "startsAt", with = "crate::alert::go_time")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "endsAt", with = "crate::alert::go_time")]
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// What a notification is about (template `Data` plus the group key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationData {
    pub receiver: String,
    pub status: String,
    pub alerts: Vec<AlertData>,
    #[serde(rename = "groupLabels")]
    pub group_labels: LabelSet,
    #[serde(rename = "commonLabels")]
    pub common_labels: LabelSet,
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: LabelSet,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    #[serde(rename = "groupKey")]
    pub group_key: String,
    /// How many notifications a rate-limit digest folded together (0 for
    /// an ordinary notification).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub digest_of: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl NotificationData {
    /// Builds the data for alerts already in notification order. Firing
    /// alerts show Go's zero `endsAt`, as Alertmanager's flush does.
    pub fn new(
        receiver: &str,
        group_key: &str,
        group_labels: &LabelSet,
        alerts: &[Alert],
        external_url: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let items: Vec<AlertData> = alerts
            .iter()
            .map(|a| {
                let resolved = a.resolved_at(now);
                AlertData {
                    status: if resolved { "resolved" } else { "firing" }.to_string(),
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    starts_at: a.starts_at,
                    ends_at: if resolved { a.ends_at } else { go_zero_time() },
                    generator_url: a.generator_url.clone(),
                    fingerprint: fingerprint_hex(a.fingerprint),
                }
            })
            .collect();
        let mut d = Self {
            receiver: receiver.to_string(),
            status: String::new(),
            alerts: items,
            group_labels: group_labels.clone(),
            common_labels: LabelSet::new(),
            common_annotations: LabelSet::new(),
            external_url: external_url.to_string(),
            group_key: group_key.to_string(),
            digest_of: 0,
        };
        d.recompute();
        d
    }

    /// Recomputes status and common labels/annotations from `alerts`.
    pub fn recompute(&mut self) {
        self.status = if self.alerts.iter().any(|a| a.status == "firing") {
            "firing"
        } else {
            "resolved"
        }
        .to_string();
        self.common_labels = common(self.alerts.iter().map(|a| &a.labels));
        self.common_annotations = common(self.alerts.iter().map(|a| &a.annotations));
    }

    pub fn firing(&self) -> impl Iterator<Item = &AlertData> {
        self.alerts.iter().filter(|a| a.status == "firing")
    }

    pub fn resolved(&self) -> impl Iterator<Item = &AlertData> {
        self.alerts.iter().filter(|a| a.status == "resolved")
    }

    /// The data as templates see it, with Alertmanager's capitalised names.
    pub fn template_value(&self) -> Value {
        let alerts: Vec<serde_json::Value> = self
            .alerts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "Status": a.status, "Labels": a.labels, "Annotations": a.annotations,
                    "StartsAt": crate::alert::format_go_time(&a.starts_at),
                    "EndsAt": crate::alert::format_go_time(&a.ends_at),
                    "GeneratorURL": a.generator_url, "Fingerprint": a.fingerprint,
                })
            })
            .collect();
        Value::from(serde_json::json!({
            "Receiver": self.receiver, "Status": self.status, "Alerts": alerts,
            "GroupLabels": self.group_labels, "CommonLabels": self.common_labels,
            "CommonAnnotations": self.common_annotations, "ExternalURL": self.external_url,
            "GroupKey": self.group_key,
        }))
    }

    /// The highest severity among firing alerts (or all when resolved).
    pub fn severity(&self) -> String {
        let rank = |s: &str| match s {
            "critical" | "page" | "error" => 3,
            "warning" | "warn" => 2,
            "info" => 1,
            _ => 0,
        };
        let pool: Vec<&AlertData> = if self.status == "firing" {
            self.firing().collect()
        } else {
            self.alerts.iter().collect()
        };
        pool.iter()
            .filter_map(|a| a.labels.get("severity"))
            .max_by_key(|s| rank(s))
            .cloned()
            .unwrap_or_default()
    }

    /// A readable alert name for subjects and titles.
    pub fn alert_name(&self) -> String {
        self.common_labels
            .get("alertname")
            .or_else(|| self.group_labels.get("alertname"))
            .cloned()
            .unwrap_or_else(|| {
                let mut names: Vec<&str> = self
                    .alerts
                    .iter()
                    .filter_map(|a| a.labels.get("alertname").map(String::as_str))
                    .collect();
                names.dedup();
                names.join(", ")
            })
    }
}

/// Alertmanager's `Key.Hash()`: the hex SHA-256 of the group key, used
/// as the alias / entity id / deduplication key by several integrations.
pub fn group_key_hash(d: &NotificationData) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(d.group_key.as_bytes()))
}

/// The colour for a severity (design §7).
pub fn severity_colour(severity: &str, resolved: bool) -> &'static str {
    if resolved {
        return "#2eb886";
    }
    match severity {
        "critical" | "page" | "error" => "#ff4444",
        "warning" | "warn" => "#ffaa00",
        _ => "#00aaff",
    }
}

fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut c = first.clone();
    for s in sets {
        c.retain(|k, v| s.get(k) == Some(v));
    }
    c
}

/// A delivery failure; `retryable` failures go back to the outbox.
#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct NotifyError {
    pub retryable: bool,
    pub message: String,
}

impl NotifyError {
    pub fn retryable(m: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: m.into(),
        }
    }
    pub fn permanent(m: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: m.into(),
        }
    }
}

/// One configured integration.
pub enum Integration {
    Webhook(webhook::Webhook),
    Email(email::Email),
    Slack(slack::Slack),
    Pagerduty(pagerduty::Pagerduty),
    Opsgenie(opsgenie::Opsgenie),
    Victorops(victorops::Victorops),
    Pushover(pushover::Pushover),
    Wechat(wechat::Wechat),
    Sns(sns::Sns),
    Telegram(telegram::Telegram),
    Discord(discord::Discord),
    Webex(webex::Webex),
    Msteams(msteams::Msteams),
    Sms(sms::Sms),
}

impl Integration {
    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Webhook(w) => w.cfg.send_resolved,
            Integration::Email(e) => e.cfg.send_resolved,
            Integration::Slack(s) => s.cfg.send_resolved,
            Integration::Pagerduty(p) => p.cfg.send_resolved,
            Integration::Opsgenie(i) => i.cfg.send_resolved,
            Integration::Victorops(i) => i.cfg.send_resolved,
            Integration::Pushover(i) => i.cfg.send_resolved,
            Integration::Wechat(i) => i.cfg.send_resolved,
            Integration::Sns(i) => i.cfg.send_resolved,
            Integration::Telegram(i) => i.cfg.send_resolved,
            Integration::Discord(i) => i.cfg.send_resolved,
            Integration::Webex(i) => i.cfg.send_resolved,
            Integration::Msteams(i) => i.cfg.send_resolved,
            Integration::Sms(i) => i.cfg.send_resolved,
        }
    }

    pub async fn notify(
        &self,
        data: &NotificationData,
        tmpl: &Templates,
    ) -> Result<(), NotifyError> {
        match self {
            Integration::Webhook(w) => w.notify(data).await,
            Integration::Email(e) => e.notify(data, tmpl).await,
            Integration::Slack(s) => s.notify(data, tmpl).await,
            Integration::Pagerduty(p) => p.notify(data, tmpl).await,
            Integration::Opsgenie(i) => i.notify(data, tmpl).await,
            Integration::Victorops(i) => i.notify(data, tmpl).await,
            Integration::Pushover(i) => i.notify(data, tmpl).await,
            Integration::Wechat(i) => i.notify(data, tmpl).await,
            Integration::Sns(i) => i.notify(data, tmpl).await,
            Integration::Telegram(i) => i.notify(data, tmpl).await,
            Integration::Discord(i) => i.notify(data, tmpl).await,
            Integration::Webex(i) => i.notify(data, tmpl).await,
            Integration::Msteams(i) => i.notify(data, tmpl).await,
            Integration::Sms(i) => i.notify(data, tmpl).await,
        }
    }
}

/// A receiver with its integrations.
pub struct Receiver {
    pub name: String,
    pub integrations: Vec<(IntegrationId, Arc<Integration>)>,
    pub rate_limit: Option<RateLimitConfig>,
}

/// Builds every receiver of a configuration. Secrets in files are read
/// here, so a reload with a missing file fails instead of half-applying.
pub fn build_receivers(
    cfg: &AlertingConfig,
    timeout: Duration,
) -> Result<HashMap<String, Arc<Receiver>>, String> {
    let mut out = HashMap::new();
    for r in &cfg.receivers {
        let name = r.name.value.clone();
        let ctx = |e: String| format!("receiver {name:?}: {e}");
        let mut list: Vec<(IntegrationId, Arc<Integration>)> = Vec::new();
        let id = |kind: &str, index| IntegrationId {
            kind: kind.to_string(),
            index,
        };
        for (i, w) in r.webhook_configs.iter().enumerate() {
            list.push((
                id("webhook", i),
                Arc::new(Integration::Webhook(
                    webhook::Webhook::new(w, &cfg.global, timeout).map_err(ctx)?,
                )),
            ));
        }
        for (i, e) in r.email_configs.iter().enumerate() {
            list.push((
                id("email", i),
                Arc::new(Integration::Email(
                    email::Email::new(e, &cfg.global, timeout).map_err(ctx)?,
                )),
            ));
        }
        for (i, s) in r.slack_configs.iter().enumerate() {
            list.push((
                id("slack", i),
                Arc::new(Integration::Slack(
                    slack::Slack::new(s, &cfg.global, timeout).map_err(ctx)?,
                )),
            ));
        }
        for (i, p) in r.pagerduty_configs.iter().enumerate() {
            list.push((
                id("pagerduty", i),
                Arc::new(Integration::Pagerduty(
                    pagerduty::Pagerduty::new(p, &cfg.global, timeout).map_err(ctx)?,
                )),
            ));
        }
        macro_rules! more {
            ($field:ident, $kind:literal, $variant:ident, $module:ident, $ty:ident) => {
                for (i, c) in r.$field.iter().enumerate() {
                    list.push((
                        id($kind, i),
                        Arc::new(Integration::$variant(
                            $module::$ty::new(c, &cfg.global, timeout).map_err(ctx)?,
                        )),
                    ));
                }
            };
        }
        more!(opsgenie_configs, "opsgenie", Opsgenie, opsgenie, Opsgenie);
        more!(
            victorops_configs,
            "victorops",
            Victorops,
            victorops,
            Victorops
        );
        more!(pushover_configs, "pushover", Pushover, pushover, Pushover);
        more!(wechat_configs, "wechat", Wechat, wechat, Wechat);
        more!(sns_configs, "sns", Sns, sns, Sns);
        more!(telegram_configs, "telegram", Telegram, telegram, Telegram);
        more!(discord_configs, "discord", Discord, discord, Discord);
        more!(webex_configs, "webex", Webex, webex, Webex);
        more!(msteams_configs, "msteams", Msteams, msteams, Msteams);
        more!(vigil_sms_configs, "vigil_sms", Sms, sms, Sms);
        out.insert(
            name.clone(),
            Arc::new(Receiver {
                name,
                integrations: list,
                rate_limit: r.vigil_rate_limit.clone(),
            }),
        );
    }
    Ok(out)
}

/// `define`d templates from the configuration's `templates:` files, plus
/// the Alertmanager helpers, used to render receiver fields.
#[derive(Clone, Default)]
pub struct Templates {
    sources: Vec<(String, String)>,
}

impl Templates {
    /// Reads the template files (globs) of a configuration.
    pub fn load(patterns: &[String], base: Option<&std::path::Path>) -> Result<Self, String> {
        let mut sources = Vec::new();
        for p in patterns {
            let pat = match base {
                Some(dir) if !std::path::Path::new(p).is_absolute() => {
                    dir.join(p).display().to_string()
                }
                _ => p.clone(),
            };
            let paths = glob_paths(&pat)?;
            for path in paths {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read template {}: {e}", path.display()))?;
                // Parse now so a broken file is rejected at load.
                Template::new(path.display().to_string())
                    .parse(&text)
                    .map_err(|e| e.to_string())?;
                sources.push((path.display().to_string(), text));
            }
        }
        Ok(Self { sources })
    }

    /// Renders `text` over the notification data.
    pub fn render(
        &self,
        name: &str,
        text: &str,
        data: &NotificationData,
    ) -> Result<String, String> {
        self.render_mode(name, text, data, false)
    }

    /// Renders `text` as Alertmanager's `TmplHTML` does: printed values
    /// are HTML-escaped.
    pub fn render_html(
        &self,
        name: &str,
        text: &str,
        data: &NotificationData,
    ) -> Result<String, String> {
        self.render_mode(name, text, data, true)
    }

    /// Renders a receiver field; a template error fails the notification
    /// for good (retrying cannot fix it).
    pub fn field(
        &self,
        d: &NotificationData,
        field: &str,
        text: &str,
    ) -> Result<String, NotifyError> {
        self.render(field, text, d)
            .map_err(|e| NotifyError::permanent(format!("template {field}: {e}")))
    }

    /// [`Templates::field`] with HTML escaping of printed values.
    pub fn field_html(
        &self,
        d: &NotificationData,
        field: &str,
        text: &str,
    ) -> Result<String, NotifyError> {
        self.render_html(field, text, d)
            .map_err(|e| NotifyError::permanent(format!("template {field}: {e}")))
    }

    /// A receiver field that may be left out: its own template, else
    /// `default` (Alertmanager's default for that field).
    pub fn field_or(
        &self,
        d: &NotificationData,
        field: &str,
        own: &Option<String>,
        default: &str,
    ) -> Result<String, NotifyError> {
        self.field(d, field, own.as_deref().unwrap_or(default))
    }

    /// [`Templates::field_or`], HTML-escaping printed values when `html`
    /// (Telegram's `HTML` parse mode, Pushover's `html`).
    pub fn field_or_html(
        &self,
        d: &NotificationData,
        field: &str,
        own: &Option<String>,
        default: &str,
        html: bool,
    ) -> Result<String, NotifyError> {
        let text = own.as_deref().unwrap_or(default);
        if html {
            self.field_html(d, field, text)
        } else {
            self.field(d, field, text)
        }
    }

    fn render_mode(
        &self,
        name: &str,
        text: &str,
        data: &NotificationData,
        html: bool,
    ) -> Result<String, String> {
        self.render_full(name, text, data, html, Vec::new())
    }

    /// Renders with extra top-level fields next to the notification's
    /// (the SMS gateway's `.Message` and `.To`).
    pub fn render_with(
        &self,
        name: &str,
        text: &str,
        data: &NotificationData,
        extra: Vec<(String, String)>,
    ) -> Result<String, NotifyError> {
        self.render_full(name, text, data, false, extra)
            .map_err(|e| NotifyError::permanent(format!("template {name}: {e}")))
    }

    fn render_full(
        &self,
        name: &str,
        text: &str,
        data: &NotificationData,
        html: bool,
        extra: Vec<(String, String)>,
    ) -> Result<String, String> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        let mut t = Template::new(name)
            .resolver(Arc::new(am_resolver))
            .func("toJson", |a| {
                // A JSON string literal, for request bodies built by templates.
                let s = a.last().map(Value::to_go_string).unwrap_or_default();
                Ok(Value::String(serde_json::Value::String(s).to_string()))
            })
            .escape_html(html);
        // Alertmanager's default template names, so configurations that
        // say `{{ template "slack.default.title" . }}` work; user files
        // parsed afterwards may redefine them.
        t.add_parse("default.tmpl", DEFAULT_TEMPLATES)
            .map_err(|e| e.to_string())?;
        for (n, src) in &self.sources {
            t.add_parse(n, src).map_err(|e| e.to_string())?;
        }
        let t = {
            let mut t = t;
            t.add_parse(name, text).map_err(|e| e.to_string())?;
            t
        };
        let mut value = data.template_value();
        if let Value::Map(m) = &mut value {
            for (k, v) in extra {
                m.insert(k, Value::String(v));
            }
        }
        t.execute_template(name, &value).map_err(|e| e.to_string())
    }
}

/// Alertmanager's default template definitions (Vigil's rendering of them).
const DEFAULT_TEMPLATES: &str = include_str!("notify/default.tmpl");

/// Expands a simple glob (`*` and `?` in the last path component).
fn glob_paths(pattern: &str) -> Result<Vec<std::path::PathBuf>, String> {
    let path = std::path::Path::new(pattern);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    // Alertmanager expands every entry with filepath.Glob: a missing file
    // or folder is no match, not an error.
    if !file.contains('*') && !file.contains('?') {
        return Ok(if path.exists() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let re = regex::Regex::new(&format!(
        "^{}$",
        regex::escape(&file)
            .replace("\\*", ".*")
            .replace("\\?", ".")
    ))
    .map_err(|e| e.to_string())?;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut out: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| re.is_match(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Alertmanager's template methods: `.Alerts.Firing`, `.Alerts.Resolved`,
/// `KV.SortedPairs`, `.Names`, `.Values`, `.Remove`.
fn am_resolver(recv: &Value, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
    match (recv, name) {
        (Value::Array(items), "Firing" | "Resolved") => {
            let want = if name == "Firing" {
                "firing"
            } else {
                "resolved"
            };
            Some(Ok(Value::Array(
                items
                    .iter()
                    .filter(|a| matches!(a, Value::Map(m) if m.get("Status").and_then(Value::as_str) == Some(want)))
                    .cloned()
                    .collect(),
            )))
        }
        (Value::Map(m), "SortedPairs") => Some(Ok(Value::Array(
            m.iter()
                .map(|(k, v)| {
                    let mut p = std::collections::BTreeMap::new();
                    p.insert("Name".to_string(), Value::String(k.clone()));
                    p.insert("Value".to_string(), v.clone());
                    Value::Map(p)
                })
                .collect(),
        ))),
        (Value::Map(m), "Names") => Some(Ok(Value::Array(
            m.keys().map(|k| Value::String(k.clone())).collect(),
        ))),
        (Value::Map(m), "Values") => Some(Ok(Value::Array(m.values().cloned().collect()))),
        (Value::Array(pairs), "Values") => Some(Ok(Value::Array(
            pairs
                .iter()
                .filter_map(|p| {
                    if let Value::Map(m) = p {
                        m.get("Value").cloned()
                    } else {
                        None
                    }
                })
                .collect(),
        ))),
        (Value::Array(pairs), "Names") => Some(Ok(Value::Array(
            pairs
                .iter()
                .filter_map(|p| {
                    if let Value::Map(m) = p {
                        m.get("Name").cloned()
                    } else {
                        None
                    }
                })
                .collect(),
        ))),
        (Value::Map(m), "Remove") => {
            let drop: Vec<String> = match args.first() {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => return Some(Err("Remove expects a list of names".into())),
            };
            let mut out = m.clone();
            out.retain(|k, _| !drop.contains(k));
            Some(Ok(Value::Map(out)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::PostableAlert;

    fn alert(pairs: &[(&str, &str)], resolved: bool) -> Alert {
        let now = Utc::now();
        let p = PostableAlert {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ends_at: resolved.then(|| now - chrono::Duration::seconds(1)),
            starts_at: Some(now - chrono::Duration::minutes(1)),
            ..Default::default()
        };
        Alert::from_postable(p, now, chrono::Duration::minutes(5)).expect("valid alert")
    }

    #[test]
    fn data_status_and_common_labels() {
        let now = Utc::now();
        let a = alert(
            &[
                ("alertname", "X"),
                ("instance", "a"),
                ("severity", "warning"),
            ],
            false,
        );
        let b = alert(
            &[
                ("alertname", "X"),
                ("instance", "b"),
                ("severity", "critical"),
            ],
            true,
        );
        let d = NotificationData::new("r", "{}:{}", &LabelSet::new(), &[a, b], "http://x", now);
        assert_eq!(d.status, "firing");
        assert_eq!(
            d.common_labels.get("alertname").map(String::as_str),
            Some("X")
        );
        assert!(!d.common_labels.contains_key("instance"));
        assert_eq!(d.alerts[0].ends_at, go_zero_time());
        assert_eq!(d.severity(), "warning");
        assert_eq!(severity_colour("critical", false), "#ff4444");
    }

    #[test]
    fn alertmanager_template_methods() {
        let now = Utc::now();
        let a = alert(&[("alertname", "X"), ("instance", "a")], false);
        let b = alert(&[("alertname", "X"), ("instance", "b")], true);
        let gl: LabelSet = [("alertname".to_string(), "X".to_string())]
            .into_iter()
            .collect();
        let d = NotificationData::new("r", "k", &gl, &[a, b], "http://x", now);
        let t = Templates::default();
        let out = t
            .render(
                "title",
                "[{{ .Status | toUpper }}:{{ .Alerts.Firing | len }}] {{ .CommonLabels.SortedPairs.Values | join \" \" }} {{ range .Alerts.Resolved }}{{ .Labels.instance }}{{ end }}",
                &d,
            )
            .expect("renders");
        assert_eq!(out, "[FIRING:1] X b");
        let out = t
            .render(
                "x",
                "{{ with .CommonLabels.Remove .GroupLabels.Names }}{{ len . }}{{ end }}",
                &d,
            )
            .expect("renders");
        // Common labels minus group labels is empty, so `with` renders nothing.
        assert_eq!(out, "");
        let subject = t
            .render("s", "{{ template \"email.default.subject\" . }}", &d)
            .expect("default template");
        assert_eq!(subject, "[FIRING:1] X ");
        let html = t
            .render("h", "{{ template \"email.default.html\" . }}", &d)
            .expect("default html");
        assert!(
            html.contains("[1] Resolved") && html.contains("instance = b"),
            "{html}"
        );
        let link = t
            .render("l", "{{ template \"slack.default.titlelink\" . }}", &d)
            .expect("link");
        assert_eq!(link, "http://x/#/alerts?receiver=r");
    }
}
