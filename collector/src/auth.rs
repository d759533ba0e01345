//! Bearer-token authentication for the three classes of endpoints: ingest
//! (one token per agent), read (Grafana) and admin. A request without the
//! right token gets 401 and never reaches a handler, so it touches nothing.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::config::AuthConfig;

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("reading token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {0} is empty")]
    Empty(String),
}

/// Which token a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    Ingest,
    Read,
    Admin,
}

/// Classifies a request by method and path.
pub fn required_access(method: &Method, path: &str) -> Access {
    match path {
        "/-/healthy" | "/-/ready" => Access::Open,
        "/-/reload" | "/-/quit" => Access::Admin,
        "/api/v1/write" | "/v1/metrics" => Access::Ingest,
        p if p.starts_with("/api/v1/import/") => Access::Ingest,
        "/api/v2/alerts" if method == Method::POST => Access::Ingest,
        p if p.starts_with("/api/v2/silence")
            && (method == Method::POST || method == Method::DELETE) =>
        {
            Access::Admin
        }
        p if p.starts_with("/api/v1/admin/") => Access::Admin,
        // Acknowledging alerts and annotating incidents.
        "/api/vigil/v1/alerts/ack" if method == Method::POST => Access::Admin,
        p if p.starts_with("/api/vigil/v1/incidents/") && method == Method::POST => Access::Admin,
        // Forgetting a retired agent.
        p if p.starts_with("/api/vigil/v1/agents/") && method == Method::DELETE => Access::Admin,
        _ => Access::Read,
    }
}

/// The loaded tokens.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    /// (agent name, token)
    ingest: Vec<(String, String)>,
    read: Option<String>,
    admin: Option<String>,
}

fn read_token(path: &Path) -> Result<String, AuthError> {
    let raw = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let token = raw.trim().to_string();
    if token.is_empty() {
        return Err(AuthError::Empty(path.display().to_string()));
    }
    Ok(token)
}

impl Tokens {
    pub fn load(cfg: &AuthConfig) -> Result<Tokens, AuthError> {
        let mut ingest = Vec::new();
        for path in &cfg.ingest_token_files {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            ingest.push((name, read_token(path)?));
        }
        Ok(Tokens {
            ingest,
            read: cfg.read_token_file.as_deref().map(read_token).transpose()?,
            admin: cfg
                .admin_token_file
                .as_deref()
                .map(read_token)
                .transpose()?,
        })
    }

    pub fn is_enabled(&self) -> bool {
        !self.ingest.is_empty() || self.read.is_some() || self.admin.is_some()
    }

    /// Whether `presented` grants `access`. A class without any token
    /// configured is open; admin implies read.
    pub fn allows(&self, access: Access, presented: Option<&str>) -> bool {
        let eq =
            |want: &str| presented.is_some_and(|p| constant_time_eq(p.as_bytes(), want.as_bytes()));
        match access {
            Access::Open => true,
            Access::Ingest => self.ingest.is_empty() || self.ingest.iter().any(|(_, t)| eq(t)),
            Access::Read => match (&self.read, &self.admin) {
                (None, None) => true,
                (r, a) => r.as_deref().is_some_and(eq) || a.as_deref().is_some_and(eq),
            },
            Access::Admin => self.admin.as_deref().is_none_or(eq),
        }
    }
}

/// The agent an ingest request came from: the name of the ingest token it
/// presented (the token file's name without extension). Set by
/// [`middleware`] as a request extension; absent without authentication.
#[derive(Debug, Clone)]
pub struct AgentIdentity(pub std::sync::Arc<str>);

impl Tokens {
    /// The name of the ingest token `presented`, if it is one.
    pub fn ingest_agent(&self, presented: Option<&str>) -> Option<&str> {
        let p = presented?;
        self.ingest
            .iter()
            .find(|(_, t)| constant_time_eq(p.as_bytes(), t.as_bytes()))
            .map(|(name, _)| name.as_str())
    }
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the middleware checks: bearer tokens, and for reads the web UI's
/// session cookie.
#[derive(Clone)]
pub struct Guard {
    pub tokens: Arc<Tokens>,
    pub sessions: Arc<vigil_ui::Sessions>,
}

/// Axum middleware enforcing [`Tokens`]. The web UI's pages check their
/// session themselves (and send a browser to the login page rather than
/// answering 401); a logged-in browser may also read the query API with its
/// session cookie, which is how the graph fetches its data. Nothing that
/// changes state is reachable by cookie: the UI's forms carry CSRF tokens.
pub async fn middleware(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let tokens = &guard.tokens;
    let path = req.uri().path();
    if vigil_ui::is_ui_path(path) {
        return next.run(req).await;
    }
    let access = required_access(req.method(), path);
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if tokens.allows(access, presented) {
        if access == Access::Ingest
            && let Some(agent) = tokens.ingest_agent(presented)
        {
            let agent = AgentIdentity(Arc::from(agent));
            req.extensions_mut().insert(agent);
        }
        return next.run(req).await;
    }
    if access == Access::Read && guard.sessions.role(req.headers()).is_some() {
        return next.run(req).await;
    }
    tracing::debug!(path = %req.uri().path(), ?access, "request refused: missing or wrong token");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_tokens() {
        let t = Tokens {
            ingest: vec![("agent-1".into(), "i1".into())],
            read: Some("r".into()),
            admin: Some("a".into()),
        };
        assert!(t.allows(Access::Ingest, Some("i1")));
        assert!(!t.allows(Access::Ingest, Some("r")));
        assert!(!t.allows(Access::Ingest, None));
        assert!(t.allows(Access::Read, Some("r")));
        assert!(t.allows(Access::Read, Some("a")));
        assert!(!t.allows(Access::Read, Some("i1")));
        assert!(!t.allows(Access::Admin, Some("r")));
        assert!(t.allows(Access::Open, None));
        assert_eq!(t.ingest_agent(Some("i1")), Some("agent-1"));
        assert_eq!(t.ingest_agent(Some("r")), None);
        assert_eq!(t.ingest_agent(None), None);
        let open = Tokens::default();
        assert!(open.allows(Access::Admin, None));
    }

    #[test]
    fn routes_are_classified() {
        assert_eq!(
            required_access(&Method::POST, "/api/v1/write"),
            Access::Ingest
        );
        assert_eq!(required_access(&Method::GET, "/api/v1/query"), Access::Read);
        assert_eq!(
            required_access(&Method::POST, "/api/v1/query"),
            Access::Read
        );
        assert_eq!(required_access(&Method::POST, "/-/reload"), Access::Admin);
        assert_eq!(
            required_access(&Method::POST, "/api/v2/silences"),
            Access::Admin
        );
        assert_eq!(
            required_access(&Method::GET, "/api/v2/silences"),
            Access::Read
        );
        assert_eq!(
            required_access(&Method::POST, "/api/v2/alerts"),
            Access::Ingest
        );
        assert_eq!(required_access(&Method::GET, "/-/healthy"), Access::Open);
        assert_eq!(
            required_access(&Method::DELETE, "/api/vigil/v1/agents/vigil-agent/web-1"),
            Access::Admin
        );
        assert_eq!(
            required_access(&Method::GET, "/api/vigil/v1/agents"),
            Access::Read
        );
        assert_eq!(
            required_access(&Method::POST, "/api/vigil/v1/alerts/ack"),
            Access::Admin
        );
        assert_eq!(
            required_access(&Method::POST, "/api/vigil/v1/incidents/x-1/notes"),
            Access::Admin
        );
        assert_eq!(
            required_access(&Method::GET, "/api/vigil/v1/incidents"),
            Access::Read
        );
    }
}
