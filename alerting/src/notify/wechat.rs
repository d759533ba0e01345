//! WeChat Work (企业微信) application messages, as Alertmanager 0.25 sends
//! them: an access token fetched from `gettoken` with the corp id and
//! secret (kept for two hours, fetched again when WeChat says it expired),
//! then a JSON POST to `message/send?access_token=…`. WeChat answers 200
//! with an `errcode`; a non-zero one is a failure.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::common::api_url;
use super::http::{HttpClient, check_status, form_encode, join_path};
use super::{NotificationData, NotifyError, Templates};
use crate::config::{GlobalConfig, WechatConfig, defaults};

/// How long a token is reused before asking for a new one.
const TOKEN_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// WeChat's "access token expired" code.
const ERR_TOKEN_EXPIRED: i64 = 42001;

pub struct Wechat {
    pub cfg: WechatConfig,
    base: String,
    secret: String,
    corp_id: String,
    http: HttpClient,
    token: Mutex<Option<(String, Instant)>>,
}

impl Wechat {
    pub fn new(
        cfg: &WechatConfig,
        global: &GlobalConfig,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = HttpClient::for_receiver(cfg.http_config.as_ref(), global, timeout)?;
        let base = api_url(
            &cfg.api_url,
            &global.wechat_api_url,
            defaults::WECHAT_API_URL,
        );
        let secret = cfg
            .api_secret
            .as_ref()
            .or(global.wechat_api_secret.as_ref())
            .map(|s| s.0.clone())
            .ok_or("no WeChat API secret")?;
        let corp_id = cfg
            .corp_id
            .clone()
            .or_else(|| global.wechat_api_corp_id.clone())
            .ok_or("no WeChat corp id")?;
        Ok(Self {
            cfg: cfg.clone(),
            base,
            secret,
            corp_id,
            http,
            token: Mutex::new(None),
        })
    }

    async fn access_token(
        &self,
        d: &NotificationData,
        tmpl: &Templates,
    ) -> Result<String, NotifyError> {
        if let Some((t, at)) = self.token.lock().clone()
            && at.elapsed() < TOKEN_LIFETIME
        {
            return Ok(t);
        }
        let mut url = join_path(&self.base, "gettoken")?;
        let query = form_encode(&[
            ("corpsecret", tmpl.field(d, "api_secret", &self.secret)?),
            ("corpid", tmpl.field(d, "corp_id", &self.corp_id)?),
        ]);
        url.set_query(Some(&query));
        let (status, body) = self.http.send(self.http.client.get(url)).await?;
        check_status(status, &body, &[])?;
        let token = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("access_token")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        if token.is_empty() {
            return Err(NotifyError::permanent(format!(
                "invalid APISecret for CorpID: {}",
                self.corp_id
            )));
        }
        *self.token.lock() = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let token = self.access_token(d, tmpl).await?;
        let body = message(&self.cfg, d, tmpl)?;
        let mut url = join_path(&self.base, "message/send")?;
        url.set_query(Some(&form_encode(&[("access_token", token)])));
        let req = self.http.json_request(reqwest::Method::POST, url, &body);
        let (status, text) = self.http.send(req).await?;
        check_status(status, &text, &[])?;
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| NotifyError::retryable(format!("bad WeChat answer: {e}")))?;
        let code = answer.get("errcode").and_then(Value::as_i64).unwrap_or(0);
        if code == 0 {
            return Ok(());
        }
        let msg = answer
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if code == ERR_TOKEN_EXPIRED {
            *self.token.lock() = None;
            return Err(NotifyError::retryable(msg));
        }
        Err(NotifyError::permanent(format!(
            "WeChat error {code}: {msg}"
        )))
    }
}

/// The `message/send` body. Both `text` and `markdown` are present (one
/// empty), as Alertmanager's encoder writes them.
pub fn message(
    cfg: &WechatConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Value, NotifyError> {
    let t = |field, v, default| tmpl.field_or(d, field, v, default);
    let content = t(
        "message",
        &cfg.message,
        r#"{{ template "wechat.default.message" . }}"#,
    )?;
    let kind = cfg.message_type.clone().unwrap_or_else(|| "text".into());
    let (text, markdown) = if kind == "markdown" {
        (String::new(), content)
    } else {
        (content, String::new())
    };
    let mut m = json!({
        "text": {"content": text},
        "safe": "0",
        "msgtype": kind,
        "markdown": {"content": markdown},
    });
    for (key, field, v, default) in [
        (
            "touser",
            "to_user",
            &cfg.to_user,
            r#"{{ template "wechat.default.to_user" . }}"#,
        ),
        (
            "toparty",
            "to_party",
            &cfg.to_party,
            r#"{{ template "wechat.default.to_party" . }}"#,
        ),
        (
            "totag",
            "to_tag",
            &cfg.to_tag,
            r#"{{ template "wechat.default.to_tag" . }}"#,
        ),
        (
            "agentid",
            "agent_id",
            &cfg.agent_id,
            r#"{{ template "wechat.default.agent_id" . }}"#,
        ),
    ] {
        let s = t(field, v, default)?;
        if !s.is_empty() {
            m[key] = Value::String(s);
        }
    }
    Ok(m)
}
