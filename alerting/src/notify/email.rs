//! Email integration over SMTP (lettre): STARTTLS when `require_tls`
//! (Alertmanager's default), implicit TLS on port 465, plain otherwise;
//! PLAIN/LOGIN auth; a multipart/alternative message with a plain-text and
//! an HTML part coloured by severity.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{NotificationData, NotifyError, Templates, severity_colour};
use crate::config::{EmailConfig, GlobalConfig, secret_value};

pub struct Email {
    pub cfg: EmailConfig,
    from: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// With a password file: the builder and user, so the file is read and
    /// the transport built at each send (a rotated password needs no
    /// reload; a missing file fails the send, not the start).
    per_send: Option<(AsyncSmtpTransportBuilder, String, GlobalConfig)>,
}

impl Email {
    pub fn new(
        cfg: &EmailConfig,
        global: &GlobalConfig,
        timeout: Duration,
    ) -> Result<Self, String> {
        let smarthost = cfg
            .smarthost
            .clone()
            .or_else(|| global.smtp_smarthost.clone())
            .ok_or("no smarthost")?;
        let (host, port) = smarthost
            .rsplit_once(':')
            .and_then(|(h, p)| {
                p.parse::<u16>()
                    .ok()
                    .map(|p| (h.trim_matches(['[', ']']).to_string(), p))
            })
            .ok_or_else(|| format!("smarthost {smarthost:?} must be host:port"))?;
        let from = cfg
            .from
            .clone()
            .or_else(|| global.smtp_from.clone())
            .ok_or("no from address")?;
        let require_tls = cfg.require_tls.unwrap_or(global.smtp_require_tls);
        let tls_cfg = cfg.tls_config.clone().unwrap_or_default();
        let server_name = tls_cfg.server_name.clone().unwrap_or_else(|| host.clone());
        let mut params = TlsParameters::builder(server_name);
        if let Some(ca) = &tls_cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read ca_file: {e}"))?;
            params = params.add_root_certificate(
                Certificate::from_pem(&pem).map_err(|e| format!("invalid ca_file: {e}"))?,
            );
        }
        if tls_cfg.insecure_skip_verify {
            params = params.dangerous_accept_invalid_certs(true);
        }
        let params = params
            .build()
            .map_err(|e| format!("invalid TLS settings: {e}"))?;
        let tls = if port == 465 {
            Tls::Wrapper(params)
        } else if require_tls {
            Tls::Required(params)
        } else {
            Tls::None
        };
        let hello = cfg
            .hello
            .clone()
            .unwrap_or_else(|| global.smtp_hello.clone());
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .hello_name(ClientId::Domain(hello))
            .timeout(Some(timeout));
        let user = cfg
            .auth_username
            .clone()
            .or_else(|| global.smtp_auth_username.clone());
        let from_file = cfg.auth_password.is_none()
            && (cfg.auth_password_file.is_some()
                || (global.smtp_auth_password.is_none()
                    && global.smtp_auth_password_file.is_some()));
        let mut per_send = None;
        if let Some(user) = user {
            if from_file {
                per_send = Some((b.clone(), user, global.clone()));
            } else {
                let pass = cfg
                    .auth_password
                    .as_ref()
                    .or(global.smtp_auth_password.as_ref())
                    .map(|p| p.0.clone())
                    .unwrap_or_default();
                b = b
                    .credentials(Credentials::new(user, pass))
                    .authentication(vec![Mechanism::Plain, Mechanism::Login]);
            }
        }
        Ok(Self {
            cfg: cfg.clone(),
            from,
            transport: b.build(),
            per_send,
        })
    }

    /// The password from its file, read now.
    fn password(&self, global: &GlobalConfig) -> Result<String, NotifyError> {
        secret_value(
            self.cfg.auth_password.as_ref(),
            self.cfg.auth_password_file.as_deref(),
        )
        .map_err(|e| NotifyError::retryable(format!("cannot read auth_password_file: {e}")))?
        .map_or_else(
            || {
                secret_value(
                    global.smtp_auth_password.as_ref(),
                    global.smtp_auth_password_file.as_deref(),
                )
                .map_err(|e| {
                    NotifyError::retryable(format!("cannot read smtp_auth_password_file: {e}"))
                })
                .map(Option::unwrap_or_default)
            },
            Ok,
        )
    }

    pub async fn notify(
        &self,
        data: &NotificationData,
        tmpl: &Templates,
    ) -> Result<(), NotifyError> {
        let msg = self.message(data, tmpl)?;
        self.deliver(msg).await
    }

    /// Mails a document that is not an alert notification (the report
    /// digest) through this receiver's server, sender and recipients: a
    /// plain-text and an HTML part. The `to` and `from` fields are used
    /// as written (templates there see no alert data).
    pub async fn send_document(
        &self,
        subject: &str,
        text: String,
        html: String,
    ) -> Result<(), NotifyError> {
        let bad_addr = |e: lettre::address::AddressError| {
            NotifyError::permanent(format!("invalid address: {e}"))
        };
        let mut b = Message::builder()
            .from(self.from.parse::<Mailbox>().map_err(bad_addr)?)
            .subject(subject);
        for addr in self
            .cfg
            .to
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            b = b.to(addr.parse::<Mailbox>().map_err(bad_addr)?);
        }
        let msg = b
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .map_err(|e| NotifyError::permanent(format!("cannot build message: {e}")))?;
        self.deliver(msg).await
    }

    async fn deliver(&self, msg: Message) -> Result<(), NotifyError> {
        let fresh;
        let transport = match &self.per_send {
            Some((builder, user, global)) => {
                let pass = self.password(global)?;
                fresh = builder
                    .clone()
                    .credentials(Credentials::new(user.clone(), pass))
                    .authentication(vec![Mechanism::Plain, Mechanism::Login])
                    .build();
                &fresh
            }
            None => &self.transport,
        };
        transport.send(msg).await.map(|_| ()).map_err(|e| {
            // Permanent SMTP replies (5xx) will not succeed on retry.
            if e.is_permanent() {
                NotifyError::permanent(format!("smtp: {e}"))
            } else {
                NotifyError::retryable(format!("smtp: {e}"))
            }
        })
    }

    fn message(&self, data: &NotificationData, tmpl: &Templates) -> Result<Message, NotifyError> {
        let render = |name: &str, text: &str| {
            tmpl.render(name, text, data)
                .map_err(|e| NotifyError::permanent(format!("template {name}: {e}")))
        };
        let subject = match self.cfg.headers.get("Subject") {
            Some(s) => render("subject", s)?,
            None => default_subject(data),
        };
        let html = match &self.cfg.html {
            Some(h) => render("html", h)?,
            None => default_html(data),
        };
        let text = match &self.cfg.text {
            Some(t) => render("text", t)?,
            None => default_text(data),
        };
        let to = render("to", &self.cfg.to)?;
        let from = render("from", &self.from)?;
        let bad_addr = |e: lettre::address::AddressError| {
            NotifyError::permanent(format!("invalid address: {e}"))
        };
        let mut b = Message::builder()
            .from(from.parse::<Mailbox>().map_err(bad_addr)?)
            .subject(subject);
        for addr in to.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            b = b.to(addr.parse::<Mailbox>().map_err(bad_addr)?);
        }
        for (k, v) in &self.cfg.headers {
            if ["subject", "to", "from"].contains(&k.to_ascii_lowercase().as_str()) {
                continue;
            }
            let name = HeaderName::new_from_ascii(k.clone())
                .map_err(|e| NotifyError::permanent(format!("invalid header {k:?}: {e}")))?;
            b = b.raw_header(HeaderValue::new(name, render(k, v)?));
        }
        b.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .map_err(|e| NotifyError::permanent(format!("cannot build message: {e}")))
    }
}

/// `[FIRING:2] [CRITICAL] HighCpu` (count only while firing).
pub fn default_subject(d: &NotificationData) -> String {
    let mut s = format!("[{}", d.status.to_uppercase());
    if d.status == "firing" {
        let _ = write!(s, ":{}", d.firing().count());
    }
    s.push(']');
    let sev = d.severity();
    if !sev.is_empty() {
        let _ = write!(s, " [{}]", sev.to_uppercase());
    }
    let _ = write!(s, " {}", d.alert_name());
    if d.digest_of > 0 {
        let _ = write!(s, " (digest of {} notifications)", d.digest_of);
    }
    s
}

fn default_text(d: &NotificationData) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", default_subject(d));
    for (title, list) in [
        ("Firing", d.firing().collect::<Vec<_>>()),
        ("Resolved", d.resolved().collect()),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(s, "{title} ({}):", list.len());
        for a in list {
            let _ = writeln!(
                s,
                "- {}",
                a.labels.get("alertname").map(String::as_str).unwrap_or("")
            );
            for (k, v) in &a.annotations {
                let _ = writeln!(s, "    {k}: {v}");
            }
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "    labels: {}", labels.join(", "));
            let _ = writeln!(
                s,
                "    since: {}",
                crate::alert::format_go_time(&a.starts_at)
            );
            if !a.generator_url.is_empty() {
                let _ = writeln!(s, "    source: {}", a.generator_url);
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Sent by Vigil ({})", d.external_url);
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn default_html(d: &NotificationData) -> String {
    let mut s = String::from("<!DOCTYPE html><html><body style=\"font-family:sans-serif\">");
    let colour = severity_colour(&d.severity(), d.status == "resolved");
    let _ = write!(
        s,
        "<h2 style=\"background:{colour};color:#fff;padding:8px\">{}</h2>",
        esc(&default_subject(d))
    );
    for a in &d.alerts {
        let c = severity_colour(
            a.labels.get("severity").map(String::as_str).unwrap_or(""),
            a.status == "resolved",
        );
        let _ = write!(
            s,
            "<div style=\"border-left:6px solid {c};padding:4px 10px;margin:8px 0\">"
        );
        let _ = write!(
            s,
            "<b>{}</b> <span style=\"color:{c}\">{}</span><br>",
            esc(a.labels.get("alertname").map(String::as_str).unwrap_or("")),
            esc(&a.status.to_uppercase())
        );
        for (k, v) in &a.annotations {
            let _ = write!(s, "<b>{}</b>: {}<br>", esc(k), esc(v));
        }
        let labels: Vec<String> = a
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect();
        let _ = write!(
            s,
            "<small>{}<br>since {}</small>",
            labels.join(", "),
            esc(&crate::alert::format_go_time(&a.starts_at))
        );
        if !a.generator_url.is_empty() {
            let _ = write!(s, " <a href=\"{}\">source</a>", esc(&a.generator_url));
        }
        s.push_str("</div>");
    }
    let _ = write!(
        s,
        "<p><a href=\"{}\">Vigil</a></p></body></html>",
        esc(&d.external_url)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, PostableAlert};
    use crate::matchers::LabelSet;

    #[test]
    fn subject_and_colour() {
        let now = chrono::Utc::now();
        let p = PostableAlert {
            labels: [("alertname", "HighCpu"), ("severity", "critical")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let a = Alert::from_postable(p, now, chrono::Duration::minutes(5)).expect("valid");
        let d = NotificationData::new("r", "k", &LabelSet::new(), &[a], "http://v", now);
        assert_eq!(default_subject(&d), "[FIRING:1] [CRITICAL] HighCpu");
        assert!(default_html(&d).contains("#ff4444"));
        assert!(default_text(&d).contains("HighCpu"));
    }
}
