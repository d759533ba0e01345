//! A generic SMS gateway (Vigil's `vigil_sms_configs`), so a critical
//! alert can reach any SMS provider with an HTTP API: one request per
//! number, the message rendered then cut to `max_length` characters (`…`
//! marking a cut), sent as a form `to=…&message=…` or through a `body`
//! template that sees `.To` and `.Message`. 5xx and 429 are retried.

use super::common::Notifier;
use super::http::{check_status, form_encode, truncate_runes};
use super::{NotificationData, NotifyError, Templates};
use crate::config::SmsConfig;

pub type Sms = Notifier<SmsConfig>;

/// One request to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRequest {
    pub to: String,
    pub content_type: String,
    pub body: String,
}

impl Notifier<SmsConfig> {
    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        for r in requests(&self.cfg, d, tmpl)? {
            let method = reqwest::Method::from_bytes(self.cfg.method.as_bytes())
                .map_err(|e| NotifyError::permanent(format!("method: {e}")))?;
            let mut req = if method == reqwest::Method::GET {
                let mut url = reqwest::Url::parse(&self.cfg.url)
                    .map_err(|e| NotifyError::permanent(format!("url: {e}")))?;
                let query = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{}", r.body),
                    _ => r.body.clone(),
                };
                url.set_query(Some(&query));
                self.http.client.get(url)
            } else {
                self.http
                    .client
                    .request(method, &self.cfg.url)
                    .header("Content-Type", &r.content_type)
                    .body(r.body.clone())
            };
            for (k, v) in &self.cfg.headers {
                req = req.header(k, tmpl.field(d, k, v)?);
            }
            let (status, text) = self.http.send(req).await?;
            check_status(status, &text, &[429])?;
        }
        Ok(())
    }
}

/// The requests a notification makes, one per number.
pub fn requests(
    cfg: &SmsConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<Vec<SmsRequest>, NotifyError> {
    let message = tmpl.field_or(
        d,
        "message",
        &cfg.message,
        r#"{{ template "vigil.sms.message" . }}"#,
    )?;
    let (message, _) = truncate_runes(message.trim(), cfg.max_length);
    let mut out = Vec::new();
    for to in &cfg.to {
        let (body, default_type) = match &cfg.body {
            Some(b) => (
                tmpl.render_with(
                    "body",
                    b,
                    d,
                    vec![
                        ("To".into(), to.clone()),
                        ("Message".into(), message.clone()),
                    ],
                )?,
                "application/json",
            ),
            None => (
                form_encode(&[("to", to.clone()), ("message", message.clone())]),
                "application/x-www-form-urlencoded",
            ),
        };
        out.push(SmsRequest {
            to: to.clone(),
            content_type: cfg
                .content_type
                .clone()
                .unwrap_or_else(|| default_type.into()),
            body,
        });
    }
    Ok(out)
}
