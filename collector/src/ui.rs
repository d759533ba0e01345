//! What the web UI (`vigil-ui`) needs from the collector: how tokens map to
//! UI roles, the command line, and the configuration with secrets redacted.

use std::sync::Arc;

use crate::auth::{Access, Tokens};
use crate::config::Config;
use crate::server::App;

const REDACTED: &str = "<secret>";

/// The UI's options for this collector.
pub fn options(app: &App) -> vigil_ui::UiOptions {
    let tokens = app.tokens.clone();
    vigil_ui::UiOptions {
        login_required: !tokens.allows(Access::Read, None),
        anonymous_role: if tokens.allows(Access::Admin, None) {
            vigil_ui::Role::Admin
        } else {
            vigil_ui::Role::Read
        },
        check_token: Arc::new(move |t: &str| role_of(&tokens, t)),
        secure_cookies: app.cfg.tls.is_some(),
        flags: flags(std::env::args().skip(1)),
        config_text: redacted(&app.cfg),
    }
}

/// The role a token typed on the login page grants: none unless it reads.
fn role_of(tokens: &Tokens, token: &str) -> Option<vigil_ui::Role> {
    if !tokens.allows(Access::Read, Some(token)) {
        return None;
    }
    Some(if tokens.allows(Access::Admin, Some(token)) {
        vigil_ui::Role::Admin
    } else {
        vigil_ui::Role::Read
    })
}

/// `--name value` and `--name=value` pairs of the command line.
fn flags(args: impl Iterator<Item = String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        if let Some(flag) = a.strip_prefix("--") {
            match flag.split_once('=') {
                Some((k, v)) => out.push((k.to_string(), v.to_string())),
                None => {
                    let value = match args.peek() {
                        Some(v) if !v.starts_with("--") => args.next().unwrap_or_default(),
                        _ => "true".to_string(),
                    };
                    out.push((flag.to_string(), value));
                }
            }
        } else {
            out.push(("command".to_string(), a));
        }
    }
    out
}

/// `https://user:pass@host/` → `https://<secret>@host/`.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://{REDACTED}{}", &rest[at..]);
        }
    }
    url.to_string()
}

/// The effective configuration with header values and URL credentials
/// replaced. Passwords and tokens are only ever file paths in Vigil's
/// configuration, so the paths stay.
pub fn redacted(cfg: &Config) -> String {
    let mut c = cfg.clone();
    for rw in &mut c.remote_write {
        rw.url = redact_url(&rw.url);
        for v in rw.headers.values_mut() {
            *v = REDACTED.into();
        }
    }
    if let Some(q) = &mut c.rules.remote_query {
        q.url = redact_url(&q.url);
        for v in q.headers.values_mut() {
            *v = REDACTED.into();
        }
    }
    if let Some(u) = &mut c.external_url {
        *u = redact_url(u);
    }
    format!("{c:#?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pair_up() {
        let f = flags(
            ["serve", "--listen", "127.0.0.1:1", "--x=y", "--verbose"]
                .iter()
                .map(|s| s.to_string()),
        );
        assert_eq!(
            f,
            vec![
                ("command".into(), "serve".into()),
                ("listen".into(), "127.0.0.1:1".into()),
                ("x".into(), "y".into()),
                ("verbose".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn url_credentials_are_hidden() {
        assert_eq!(
            redact_url("https://u:p@h:9/api/v1/write"),
            "https://<secret>@h:9/api/v1/write"
        );
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
    }

    #[test]
    fn header_values_are_hidden() {
        let cfg = Config::parse(
            "remote_write:\n  - url: https://u:pw@example.invalid/api/v1/write\n    headers:\n      X-Scope-OrgID: tenant-secret\n",
            "test.yml",
        )
        .expect("config parses");
        let text = redacted(&cfg);
        assert!(!text.contains("tenant-secret"), "{text}");
        assert!(!text.contains("pw@"), "{text}");
        assert!(text.contains("X-Scope-OrgID"), "{text}");
    }

    #[test]
    fn tokens_map_to_roles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let read = dir.path().join("read");
        let admin = dir.path().join("admin");
        std::fs::write(&read, "r-token\n").expect("write");
        std::fs::write(&admin, "a-token\n").expect("write");
        let tokens = Tokens::load(&crate::config::AuthConfig {
            read_token_file: Some(read),
            admin_token_file: Some(admin),
            ..Default::default()
        })
        .expect("tokens load");
        assert_eq!(role_of(&tokens, "r-token"), Some(vigil_ui::Role::Read));
        assert_eq!(role_of(&tokens, "a-token"), Some(vigil_ui::Role::Admin));
        assert_eq!(role_of(&tokens, "wrong"), None);
    }
}
