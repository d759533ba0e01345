//! HTTP clients for receivers, built from `http_config` (auth, TLS, proxy,
//! redirects, custom headers) and the shared POST-and-classify logic.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use vigil_template::funcs::query_escape;

use super::NotifyError;
use crate::config::{GlobalConfig, HttpConfig, TlsConfig, read_secret_file, secret_value};

/// A client plus the settings of the headers every request carries.
#[derive(Debug, Clone)]
pub struct HttpClient {
    pub client: reqwest::Client,
    cfg: HttpConfig,
}

fn read(p: &std::path::Path) -> Result<String, String> {
    read_secret_file(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

fn header_value(s: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(s).map_err(|e| format!("invalid header value: {e}"))?;
    v.set_sensitive(true);
    Ok(v)
}

impl HttpClient {
    pub fn new(cfg: Option<&HttpConfig>, timeout: Duration) -> Result<Self, String> {
        let default = HttpConfig::default();
        let cfg = cfg.unwrap_or(&default);
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("Vigil-Alertmanager/", env!("CARGO_PKG_VERSION")));
        if cfg.follow_redirects == Some(false) {
            b = b.redirect(reqwest::redirect::Policy::none());
        }
        if let Some(p) = &cfg.proxy_url {
            let usable = reqwest::Url::parse(p)
                .ok()
                .filter(|u| u.has_host())
                .and_then(|_| reqwest::Proxy::all(p).ok());
            match usable {
                Some(proxy) => b = b.proxy(proxy),
                None => {
                    // As in Alertmanager, such a file loads and every send
                    // through it fails (and is counted and logged as such).
                    tracing::error!(proxy_url = %p, "proxy_url is not an absolute URL; notifications through it will fail");
                    b = b.proxy(
                        reqwest::Proxy::all("http://invalid-proxy-url.invalid")
                            .map_err(|e| format!("invalid proxy_url: {e}"))?,
                    );
                }
            }
        } else if cfg.proxy_from_environment != Some(true) {
            b = b.no_proxy();
        }
        if let Some(tls) = &cfg.tls_config {
            b = apply_tls(b, tls)?;
        }
        let client = b
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Self {
            client,
            cfg: cfg.clone(),
        })
    }

    /// The client of a receiver: its own `http_config`, else the global one.
    pub fn for_receiver(
        own: Option<&HttpConfig>,
        global: &GlobalConfig,
        timeout: Duration,
    ) -> Result<Self, String> {
        Self::new(own.or(global.http_config.as_ref()), timeout)
    }

    /// The auth and custom headers, with `*_file` secrets read now, per
    /// request, as Alertmanager does: a rotated file takes effect without a
    /// reload, and a missing one fails the send (retried), not the start.
    pub fn headers(&self) -> Result<HeaderMap, NotifyError> {
        self.headers_now().map_err(NotifyError::retryable)
    }

    fn headers_now(&self) -> Result<HeaderMap, String> {
        let cfg = &self.cfg;
        let mut headers = HeaderMap::new();
        if let Some(ba) = &cfg.basic_auth {
            let user = match &ba.username_file {
                Some(f) => read(f)?,
                None => ba.username.clone(),
            };
            let pass = secret_value(ba.password.as_ref(), ba.password_file.as_deref())
                .map_err(|e| format!("cannot read password_file: {e}"))?
                .unwrap_or_default();
            let token = base64(&format!("{user}:{pass}"));
            headers.insert(AUTHORIZATION, header_value(&format!("Basic {token}"))?);
        }
        if let Some(a) = &cfg.authorization {
            let cred = secret_value(a.credentials.as_ref(), a.credentials_file.as_deref())
                .map_err(|e| format!("cannot read credentials_file: {e}"))?
                .unwrap_or_default();
            headers.insert(
                AUTHORIZATION,
                header_value(&format!("{} {cred}", a.auth_type))?,
            );
        }
        if let Some(tok) = secret_value(cfg.bearer_token.as_ref(), cfg.bearer_token_file.as_deref())
            .map_err(|e| format!("cannot read bearer_token_file: {e}"))?
        {
            headers.insert(AUTHORIZATION, header_value(&format!("Bearer {tok}"))?);
        }
        if let Some(hs) = &cfg.http_headers {
            for (name, vals) in hs {
                let hn = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
                for v in &vals.values {
                    headers.append(hn.clone(), header_value(v)?);
                }
                for s in &vals.secrets {
                    headers.append(hn.clone(), header_value(&s.0)?);
                }
                for f in &vals.files {
                    headers.append(hn.clone(), header_value(&read(f)?)?);
                }
            }
        }
        Ok(headers)
    }

    /// POSTs a JSON body (configured headers, then `Content-Type`). 2xx is
    /// success; 429 and 5xx and transport errors are retried; other
    /// statuses are permanent failures.
    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<(), NotifyError> {
        let req = self.client.post(url).headers(self.headers()?).json(body);
        let (status, text) = execute(req).await?;
        check_status(status, &text, &[429])
    }

    /// A request carrying `body` as JSON, `Content-Type` set before the
    /// configured headers, the way the Alertmanager 0.25 notifiers build it.
    pub fn json_request(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
        body: &serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }

    /// POSTs `body` as JSON with [`HttpClient::json_request`] and judges
    /// the answer with [`check_status`].
    pub async fn post_json_checked(
        &self,
        url: impl reqwest::IntoUrl,
        body: &serde_json::Value,
        retry_codes: &[u16],
    ) -> Result<(), NotifyError> {
        let req = self.json_request(reqwest::Method::POST, url, body);
        let (status, text) = self.send(req).await?;
        check_status(status, &text, retry_codes)
    }

    /// Sends a request with the configured headers; returns the status and
    /// the first bytes of the answer. Transport errors are retried, as
    /// Alertmanager retries them.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, String), NotifyError> {
        execute(req.headers(self.headers()?)).await
    }
}

/// Sends a finished request; transport errors are retried.
async fn execute(req: reqwest::RequestBuilder) -> Result<(u16, String), NotifyError> {
    let resp = req
        .send()
        .await
        .map_err(|e| NotifyError::retryable(format!("request failed: {}", redact(&e))))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    Ok((status, body))
}

/// Alertmanager's `Retrier.Check`: 2xx succeeds; 5xx and the listed codes
/// are retried; anything else fails for good.
pub fn check_status(status: u16, body: &str, retry_codes: &[u16]) -> Result<(), NotifyError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body: String = body.chars().take(256).collect();
    let msg = format!("unexpected status code {status}: {body}");
    if (500..600).contains(&status) || retry_codes.contains(&status) {
        Err(NotifyError::retryable(msg))
    } else {
        Err(NotifyError::permanent(msg))
    }
}

/// Go's `url.Values.Encode`: keys sorted, `QueryEscape`d (space as `+`).
pub fn form_encode(pairs: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Appends `suffix` to the path of `base` the way Alertmanager does
/// (`u.Path += suffix`), so `http://h/api/` + `v2/alerts` is `/api/v2/alerts`.
pub fn join_path(base: &str, suffix: &str) -> Result<reqwest::Url, NotifyError> {
    let mut u = reqwest::Url::parse(base)
        .map_err(|e| NotifyError::permanent(format!("invalid URL {base:?}: {e}")))?;
    let path = format!("{}{suffix}", u.path());
    u.set_path(&path);
    Ok(u)
}

/// Alertmanager's `TruncateInRunes`: at most `n` characters, the last one
/// replaced by `…` when cut.
pub fn truncate_runes(s: &str, n: usize) -> (String, bool) {
    if s.chars().count() <= n {
        return (s.to_string(), false);
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    (out, true)
}

/// Alertmanager's `TruncateInBytes`: at most `n` bytes, ending in `…`
/// when cut, never splitting a character.
pub fn truncate_bytes(s: &str, n: usize) -> (String, bool) {
    if s.len() <= n {
        return (s.to_string(), false);
    }
    let mut end = n.saturating_sub('…'.len_utf8());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}…", &s[..end]), true)
}

/// Errors can embed URLs carrying secrets (Slack webhooks); drop them.
fn redact(e: &reqwest::Error) -> String {
    e.without_url_ref().to_string()
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let kind = if self.is_timeout() {
            "timeout"
        } else if self.is_connect() {
            "connection failed"
        } else if self.is_body() || self.is_decode() {
            "bad response body"
        } else {
            "error"
        };
        let mut source = std::error::Error::source(self);
        let mut detail = String::new();
        while let Some(s) = source {
            detail = s.to_string();
            source = s.source();
        }
        if detail.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}: {detail}")
        }
    }
}

fn apply_tls(
    mut b: reqwest::ClientBuilder,
    tls: &TlsConfig,
) -> Result<reqwest::ClientBuilder, String> {
    let ca = match (&tls.ca, &tls.ca_file) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(f)) => Some(read(f)?),
        _ => None,
    };
    if let Some(ca) = ca {
        for c in reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|e| format!("invalid CA: {e}"))?
        {
            b = b.add_root_certificate(c);
        }
    }
    let cert = match (&tls.cert, &tls.cert_file) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(f)) => Some(read(f)?),
        _ => None,
    };
    let key = secret_value(tls.key.as_ref(), tls.key_file.as_deref())
        .map_err(|e| format!("cannot read key_file: {e}"))?;
    if let (Some(cert), Some(key)) = (cert, key) {
        let pem = format!("{cert}\n{key}");
        b = b.identity(
            reqwest::Identity::from_pem(pem.as_bytes())
                .map_err(|e| format!("invalid client certificate: {e}"))?,
        );
    }
    if tls.insecure_skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    if let Some(v) = &tls.min_version {
        let ver = match v.as_str() {
            "TLS12" => reqwest::tls::Version::TLS_1_2,
            "TLS13" => reqwest::tls::Version::TLS_1_3,
            other => {
                return Err(format!(
                    "unsupported min_version {other:?} (TLS12 or TLS13)"
                ));
            }
        };
        b = b.tls_version_min(ver);
    }
    Ok(b)
}

/// Standard base64 with padding, for basic auth.
pub fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(""), "");
        assert_eq!(base64("f"), "Zg==");
        assert_eq!(base64("fo"), "Zm8=");
        assert_eq!(base64("foo"), "Zm9v");
        assert_eq!(base64("user:pass"), "dXNlcjpwYXNz");
    }
}
