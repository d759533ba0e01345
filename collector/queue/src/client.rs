//! HTTP client settings as Prometheus's `http_config` carries them, for
//! remote_write senders and for remote query APIs.
//!
//! Secrets come from files only (`bearer_token_file`, `basic_auth.
//! password_file`), never from the configuration text, and are re-read on
//! every request, as Prometheus does, so a rotated token is picked up
//! without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use thiserror::Error;

/// Why a client could not be built or a credential not read.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("header {name:?}: {reason}")]
    Header { name: String, reason: String },
    #[error("tls_config: {0}")]
    Tls(String),
    #[error("building the HTTP client: {0}")]
    Build(String),
}

/// `tls_config`: a pinned CA (replacing the system roots), a client
/// certificate, the expected server name, or no verification at all —
/// rustls configured by `vigil-tls`, the one TLS client implementation of
/// the agent and the collector.
pub type TlsOptions = vigil_tls::ClientTls;

/// `basic_auth`, with the password read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: Option<PathBuf>,
}

/// Everything needed to talk to one HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Extra request headers (e.g. `X-Scope-OrgID` for Mimir tenants).
    pub headers: BTreeMap<String, String>,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuth>,
    pub tls: TlsOptions,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            headers: BTreeMap::new(),
            bearer_token_file: None,
            basic_auth: None,
            tls: TlsOptions::default(),
            timeout: Duration::from_secs(30),
            user_agent: concat!("vigil/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// A built client plus the headers and credentials every request carries.
#[derive(Debug, Clone)]
pub struct HttpClient {
    pub client: reqwest::Client,
    headers: HeaderMap,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<BasicAuth>,
}

fn read_secret(what: &'static str, path: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| ClientError::File {
            what,
            path: path.to_path_buf(),
            source,
        })
}

impl HttpClient {
    /// Builds the client; files named by the options must be readable now
    /// (a typo fails at start-up, not at the first send).
    pub fn new(opts: &HttpOptions) -> Result<Self, ClientError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &opts.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| ClientError::Header {
                name: k.clone(),
                reason: e.to_string(),
            })?;
            let value = HeaderValue::from_str(v).map_err(|e| ClientError::Header {
                name: k.clone(),
                reason: e.to_string(),
            })?;
            headers.insert(name, value);
        }
        if opts.bearer_token_file.is_some() && opts.basic_auth.is_some() {
            return Err(ClientError::Build(
                "at most one of bearer_token_file and basic_auth may be set".into(),
            ));
        }
        let mut b = reqwest::Client::builder()
            .timeout(opts.timeout)
            .user_agent(opts.user_agent.clone());
        // Without any tls_config setting reqwest's own rustls set-up (the
        // same platform verifier) serves; a plain http:// client then never
        // touches the system roots.
        if opts.tls != TlsOptions::default() {
            let tls =
                vigil_tls::client_config(&opts.tls).map_err(|e| ClientError::Tls(e.to_string()))?;
            b = b.tls_backend_preconfigured(tls);
        }
        let client = b.build().map_err(|e| ClientError::Build(e.to_string()))?;
        let me = Self {
            client,
            headers,
            bearer_token_file: opts.bearer_token_file.clone(),
            basic_auth: opts.basic_auth.clone(),
        };
        // Fail now on an unreadable credential file.
        me.auth_header()?;
        Ok(me)
    }

    /// The `Authorization` header for the next request, from the current
    /// content of the credential file.
    pub fn auth_header(&self) -> Result<Option<HeaderValue>, ClientError> {
        let raw = if let Some(f) = &self.bearer_token_file {
            format!("Bearer {}", read_secret("bearer_token_file", f)?)
        } else if let Some(ba) = &self.basic_auth {
            let password = match &ba.password_file {
                Some(f) => read_secret("basic_auth.password_file", f)?,
                None => String::new(),
            };
            format!(
                "Basic {}",
                base64(format!("{}:{password}", ba.username).as_bytes())
            )
        } else {
            return Ok(None);
        };
        let mut v = HeaderValue::from_str(&raw).map_err(|_| ClientError::Header {
            name: "Authorization".into(),
            reason: "the credential is not a valid header value".into(),
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    /// A request with the configured headers and credentials.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let mut headers = self.headers.clone();
        if let Some(v) = self.auth_header()? {
            headers.insert(AUTHORIZATION, v);
        }
        Ok(self.client.request(method, url).headers(headers))
    }
}

/// Standard base64 with padding (RFC 4648), for basic auth.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
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
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o, "{i:?}");
        }
    }

    #[test]
    fn credentials_are_read_from_files_on_every_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "one\n").expect("write");
        let c = HttpClient::new(&HttpOptions {
            bearer_token_file: Some(token.clone()),
            ..HttpOptions::default()
        })
        .expect("client");
        let h = c.auth_header().expect("read").expect("set");
        assert_eq!(h.to_str().expect("ascii"), "Bearer one");
        assert!(h.is_sensitive());
        std::fs::write(&token, "two").expect("rotate");
        let h = c.auth_header().expect("read").expect("set");
        assert_eq!(h.to_str().expect("ascii"), "Bearer two");
    }

    #[test]
    fn basic_auth_uses_the_password_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\n").expect("write");
        let c = HttpClient::new(&HttpOptions {
            basic_auth: Some(BasicAuth {
                username: "user".into(),
                password_file: Some(pw),
            }),
            ..HttpOptions::default()
        })
        .expect("client");
        let h = c.auth_header().expect("read").expect("set");
        assert_eq!(h.to_str().expect("ascii"), "Basic dXNlcjpzZWNyZXQ=");
    }

    #[test]
    fn missing_files_fail_at_build_time() {
        let err = HttpClient::new(&HttpOptions {
            bearer_token_file: Some("/nonexistent/token".into()),
            ..HttpOptions::default()
        })
        .expect_err("missing file");
        assert!(err.to_string().contains("bearer_token_file"), "{err}");
        let err = HttpClient::new(&HttpOptions {
            tls: TlsOptions {
                cert_file: Some("/x".into()),
                ..TlsOptions::default()
            },
            ..HttpOptions::default()
        })
        .expect_err("cert without key");
        assert!(err.to_string().contains("together"), "{err}");
    }
}
