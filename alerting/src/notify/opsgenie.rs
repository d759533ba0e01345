//! OpsGenie Alert API v2, as Alertmanager 0.25 calls it: a firing group
//! creates (or refreshes) the alert whose alias is the group key's hash; a
//! resolved group closes it. `update_alerts` also rewrites the message and
//! description of an existing alert. Answers 5xx and 429 are retried.

use serde_json::{Map, Value, json};

use super::common::{Notifier, api_url, at, first_secret};
use super::http::{check_status, join_path, truncate_runes};
use super::{NotificationData, NotifyError, Templates, group_key_hash};
use crate::config::{OpsgenieConfig, defaults};

const MAX_MESSAGE_RUNES: usize = 130;
const MAX_DESCRIPTION_RUNES: usize = 15000;

pub type Opsgenie = Notifier<OpsgenieConfig>;

/// One HTTP call of a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub body: Value,
}

impl Notifier<OpsgenieConfig> {
    /// The API key, read when sending so a rotated file takes effect.
    fn api_key(&self) -> Result<String, NotifyError> {
        let (c, g) = (&self.cfg, &self.global);
        first_secret(
            &[
                at(&c.api_key, &c.api_key_file, "api_key_file"),
                at(
                    &g.opsgenie_api_key,
                    &g.opsgenie_api_key_file,
                    "opsgenie_api_key_file",
                ),
            ],
            "no OpsGenie API key",
        )
    }

    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let base = api_url(
            &self.cfg.api_url,
            &self.global.opsgenie_api_url,
            defaults::OPSGENIE_API_URL,
        );
        let key = tmpl.field(d, "api_key", &self.api_key()?)?;
        for call in calls(&self.cfg, &base, d, tmpl)? {
            let req = self
                .http
                .json_request(call.method, call.url, &call.body)
                .header("Authorization", format!("GenieKey {key}"));
            let (status, body) = self.http.send(req).await?;
            check_status(status, &body, &[429])?;
        }
        Ok(())
    }
}

/// Splits a comma-separated list, dropping blank items but keeping the
/// spaces of the others, as Alertmanager's `safeSplit` does.
fn safe_split(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The requests a notification makes, in order.
pub fn calls(
    cfg: &OpsgenieConfig,
    base: &str,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Vec<Call>, NotifyError> {
    let alias = group_key_hash(d);
    let t = |field, v, default| tmpl.field_or(d, field, v, default);
    let source = t(
        "source",
        &cfg.source,
        r#"{{ template "opsgenie.default.source" . }}"#,
    )?;
    let with_alias = |suffix: &str| -> Result<reqwest::Url, NotifyError> {
        let mut u = join_path(base, &format!("v2/alerts/{alias}{suffix}"))?;
        u.set_query(Some("identifierType=alias"));
        Ok(u)
    };
    if d.status == "resolved" {
        return Ok(vec![Call {
            method: reqwest::Method::POST,
            url: with_alias("/close")?,
            body: json!({ "source": source }),
        }]);
    }
    let (message, _) = truncate_runes(
        &t(
            "message",
            &cfg.message,
            r#"{{ template "opsgenie.default.message" . }}"#,
        )?,
        MAX_MESSAGE_RUNES,
    );
    let (description, _) = truncate_runes(
        &t(
            "description",
            &cfg.description,
            r#"{{ template "opsgenie.default.description" . }}"#,
        )?,
        MAX_DESCRIPTION_RUNES,
    );
    // The group's common labels, then the configured details over them.
    let mut details = Map::new();
    for (k, v) in &d.common_labels {
        details.insert(k.clone(), Value::String(v.clone()));
    }
    for (k, v) in &cfg.details {
        details.insert(k.clone(), Value::String(tmpl.field(d, k, v)?));
    }
    let mut responders = Vec::new();
    for r in &cfg.responders {
        let id = tmpl.field(d, "responder", &r.id)?;
        let name = tmpl.field(d, "responder", &r.name)?;
        let username = tmpl.field(d, "responder", &r.username)?;
        let kind = tmpl.field(d, "responder", &r.kind)?;
        if id.is_empty() && name.is_empty() && username.is_empty() && kind.is_empty() {
            continue;
        }
        if kind == "teams" {
            for team in safe_split(&name) {
                responders.push(json!({"name": team, "type": "team"}));
            }
            continue;
        }
        let mut o = Map::new();
        for (k, v) in [("id", id), ("name", name), ("username", username)] {
            if !v.is_empty() {
                o.insert(k.into(), Value::String(v));
            }
        }
        o.insert("type".into(), Value::String(kind));
        responders.push(Value::Object(o));
    }
    let mut body = Map::new();
    body.insert("alias".into(), Value::String(alias.clone()));
    body.insert("message".into(), Value::String(message.clone()));
    if !description.is_empty() {
        body.insert("description".into(), Value::String(description.clone()));
    }
    body.insert("details".into(), Value::Object(details));
    body.insert("source".into(), Value::String(source));
    if !responders.is_empty() {
        body.insert("responders".into(), Value::Array(responders));
    }
    let tags = safe_split(&t("tags", &cfg.tags, "")?);
    if !tags.is_empty() {
        body.insert("tags".into(), json!(tags));
    }
    for (k, v) in [
        ("note", &cfg.note),
        ("priority", &cfg.priority),
        ("entity", &cfg.entity),
    ] {
        let s = t(k, v, "")?;
        if !s.is_empty() {
            body.insert(k.into(), Value::String(s));
        }
    }
    let actions = safe_split(&t("actions", &cfg.actions, "")?);
    if !actions.is_empty() {
        body.insert("actions".into(), json!(actions));
    }
    let mut out = vec![Call {
        method: reqwest::Method::POST,
        url: join_path(base, "v2/alerts")?,
        body: Value::Object(body),
    }];
    if cfg.update_alerts {
        out.push(Call {
            method: reqwest::Method::PUT,
            url: with_alias("/message")?,
            body: json!({ "message": message }),
        });
        out.push(Call {
            method: reqwest::Method::PUT,
            url: with_alias("/description")?,
            body: json!({ "description": description }),
        });
    }
    Ok(out)
}
