//! VictorOps (Splunk On-Call) REST endpoint, as Alertmanager 0.25 calls
//! it: one JSON POST to `api_url + api_key/routing_key`, `entity_id` the
//! group key's hash, `RECOVERY` once the group resolves. 5xx is retried.

use serde_json::{Map, Value};

use super::common::{Notifier, api_url, at, first_secret};
use super::http::{join_path, truncate_runes};
use super::{NotificationData, NotifyError, Templates, group_key_hash};
use crate::config::{VictoropsConfig, defaults};

const MAX_STATE_MESSAGE_RUNES: usize = 20480;

pub type Victorops = Notifier<VictoropsConfig>;

impl Notifier<VictoropsConfig> {
    /// The API key, read when sending so a rotated file takes effect.
    fn api_key(&self) -> Result<String, NotifyError> {
        let (c, g) = (&self.cfg, &self.global);
        first_secret(
            &[
                at(&c.api_key, &c.api_key_file, "api_key_file"),
                at(
                    &g.victorops_api_key,
                    &g.victorops_api_key_file,
                    "victorops_api_key_file",
                ),
            ],
            "no VictorOps API key",
        )
    }

    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let base = api_url(
            &self.cfg.api_url,
            &self.global.victorops_api_url,
            defaults::VICTOROPS_API_URL,
        );
        let key = tmpl.field(d, "api_key", &self.api_key()?)?;
        let routing = tmpl.field(d, "routing_key", &self.cfg.routing_key)?;
        let url = join_path(&base, &format!("{key}/{routing}"))?;
        let body = message(&self.cfg, d, tmpl)?;
        self.http.post_json_checked(url, &body, &[]).await
    }
}

/// The JSON body.
pub fn message(
    cfg: &VictoropsConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let t = |field, v, default| tmpl.field_or(d, field, v, default);
    let mut message_type = t("message_type", &cfg.message_type, "CRITICAL")?;
    if d.status == "resolved" {
        message_type = "RECOVERY".into();
    } else if !["CRITICAL", "WARNING", "INFO"].contains(&message_type.as_str()) {
        message_type = "CRITICAL".into();
    }
    let (state, _) = truncate_runes(
        &t(
            "state_message",
            &cfg.state_message,
            r#"{{ template "victorops.default.state_message" . }}"#,
        )?,
        MAX_STATE_MESSAGE_RUNES,
    );
    let mut m = Map::new();
    m.insert("message_type".into(), Value::String(message_type));
    m.insert("entity_id".into(), Value::String(group_key_hash(d)));
    m.insert(
        "entity_display_name".into(),
        Value::String(t(
            "entity_display_name",
            &cfg.entity_display_name,
            r#"{{ template "victorops.default.entity_display_name" . }}"#,
        )?),
    );
    m.insert("state_message".into(), Value::String(state));
    m.insert(
        "monitoring_tool".into(),
        Value::String(t(
            "monitoring_tool",
            &cfg.monitoring_tool,
            r#"{{ template "victorops.default.monitoring_tool" . }}"#,
        )?),
    );
    for (k, v) in &cfg.custom_fields {
        m.insert(k.clone(), Value::String(tmpl.field(d, k, v)?));
    }
    Ok(Value::Object(m))
}
