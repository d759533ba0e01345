//! Amazon SNS `Publish`, as Alertmanager 0.25 calls it through the AWS
//! SDK: a form-encoded POST signed with AWS Signature Version 4, to a
//! topic, a target (endpoint) ARN, or a phone number (SMS, the message cut
//! to 1600 characters). Credentials come from `sigv4` or the standard
//! `AWS_*` environment variables. 5xx is retried.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::common::Notifier;
use super::http::{check_status, form_encode, truncate_bytes, truncate_runes};
use super::{NotificationData, NotifyError, Templates, group_key_hash};
use crate::config::SnsConfig;

const MAX_SMS_RUNES: usize = 1600;
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

pub type Sns = Notifier<SnsConfig>;

/// What signs a request.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl Notifier<SnsConfig> {
    fn credentials(&self) -> Result<Credentials, NotifyError> {
        if let Some(secret) = &self.cfg.sigv4.secret_key
            && !self.cfg.sigv4.access_key.is_empty()
        {
            return Ok(Credentials {
                access_key: self.cfg.sigv4.access_key.clone(),
                secret_key: secret.0.clone(),
                session_token: None,
            });
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            env("AWS_ACCESS_KEY_ID").or_else(|| env("AWS_ACCESS_KEY")),
            env("AWS_SECRET_ACCESS_KEY").or_else(|| env("AWS_SECRET_KEY")),
        ) {
            (Some(a), Some(s)) => Ok(Credentials {
                access_key: a,
                secret_key: s,
                session_token: env("AWS_SESSION_TOKEN"),
            }),
            _ => Err(NotifyError::permanent(
                "no AWS credentials: set sigv4 access_key and secret_key or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )),
        }
    }

    fn region(&self) -> Result<String, NotifyError> {
        if !self.cfg.sigv4.region.is_empty() {
            return Ok(self.cfg.sigv4.region.clone());
        }
        std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .map_err(|_| NotifyError::permanent("no AWS region: set sigv4 region or AWS_REGION"))
    }

    pub async fn notify(&self, d: &NotificationData, tmpl: &Templates) -> Result<(), NotifyError> {
        let region = self.region()?;
        let endpoint = match &self.cfg.api_url {
            Some(u) if !u.is_empty() => tmpl.field(d, "api_url", u)?,
            _ => format!("https://sns.{region}.amazonaws.com"),
        };
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| NotifyError::permanent(format!("invalid api_url: {e}")))?;
        let body = publish_body(&self.cfg, d, tmpl)?;
        let creds = self.credentials()?;
        let signed = sign(&url, &body, &region, &creds, Utc::now());
        let mut req = self.http.client.post(url).body(body);
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let (status, text) = self.http.send(req).await?;
        check_status(status, &text, &[])
    }
}

/// The form body of the `Publish` call.
pub fn publish_body(
    cfg: &SnsConfig,
    d: &NotificationData,
    tmpl: &Templates,
) -> Result<String, NotifyError> {
    let t = |field, v, default| tmpl.field_or(d, field, v, default);
    let mut p: Vec<(String, String)> = vec![
        ("Action".into(), "Publish".into()),
        ("Version".into(), "2010-03-31".into()),
    ];
    let message = t(
        "message",
        &cfg.message,
        r#"{{ template "sns.default.message" . }}"#,
    )?;
    let mut truncated = false;
    fn set(v: &Option<String>) -> Option<&String> {
        v.as_ref().filter(|s| !s.is_empty())
    }
    if let Some(topic) = set(&cfg.topic_arn) {
        let topic = tmpl.field(d, "topic_arn", topic)?;
        if topic.ends_with(".fifo") {
            // FIFO topics need a group and a deduplication id.
            p.push(("MessageDeduplicationId".into(), group_key_hash(d)));
            p.push(("MessageGroupId".into(), group_key_hash(d)));
        }
        p.push(("TopicArn".into(), topic));
    }
    let message = if let Some(phone) = set(&cfg.phone_number) {
        p.push(("PhoneNumber".into(), tmpl.field(d, "phone_number", phone)?));
        let (m, cut) = truncate_runes(&message, MAX_SMS_RUNES);
        truncated = cut;
        m
    } else {
        let (m, cut) = truncate_bytes(&message, MAX_MESSAGE_BYTES);
        truncated = truncated || cut;
        m
    };
    if let Some(target) = set(&cfg.target_arn) {
        p.push(("TargetArn".into(), tmpl.field(d, "target_arn", target)?));
    }
    let mut attributes: Vec<(String, String)> = Vec::new();
    for (k, v) in &cfg.attributes {
        attributes.push((
            tmpl.field(d, "attributes", k)?,
            tmpl.field(d, "attributes", v)?,
        ));
    }
    if truncated {
        attributes.push(("truncated".into(), "true".into()));
    }
    attributes.sort();
    attributes.dedup_by(|a, b| a.0 == b.0);
    if attributes.is_empty() {
        // Alertmanager always passes an attribute map; the SDK encodes an
        // empty one as an empty parameter.
        p.push(("MessageAttributes".into(), String::new()));
    }
    for (i, (k, v)) in attributes.into_iter().enumerate() {
        let n = i + 1;
        p.push((format!("MessageAttributes.entry.{n}.Name"), k));
        p.push((
            format!("MessageAttributes.entry.{n}.Value.DataType"),
            "String".into(),
        ));
        p.push((format!("MessageAttributes.entry.{n}.Value.StringValue"), v));
    }
    p.push(("Message".into(), message));
    p.push((
        "Subject".into(),
        t(
            "subject",
            &cfg.subject,
            r#"{{ template "sns.default.subject" . }}"#,
        )?,
    ));
    let pairs: Vec<(&str, String)> = p.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    Ok(form_encode(&pairs))
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Signs a form POST to SNS with Signature Version 4; returns the headers
/// to send (`Content-Type`, `X-Amz-Date`, `Authorization`, and the session
/// token when there is one).
pub fn sign(
    url: &reqwest::Url,
    body: &str,
    region: &str,
    creds: &Credentials,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let mut headers: Vec<(&str, String)> = vec![
        ("content-type", content_type.to_string()),
        ("host", host),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token", t.clone()));
    }
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let canonical = format!(
        "POST\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        url.query().unwrap_or_default(),
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    let scope = format!("{date}/{region}/sns/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", creds.secret_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, "sns", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    let mut out = vec![
        ("Content-Type".to_string(), content_type.to_string()),
        ("X-Amz-Date".to_string(), amz_date),
        (
            "Authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                creds.access_key
            ),
        ),
    ];
    if let Some(t) = &creds.session_token {
        out.push(("X-Amz-Security-Token".to_string(), t.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_sha256_matches_rfc4231() {
        assert_eq!(
            hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// AWS's documented signing-key derivation example (IAM, 20120215).
    #[test]
    fn signing_key_matches_aws_example() {
        let mut key = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        for part in ["us-east-1", "iam", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }
}
