//! Sessions: the login page trades a read or admin token for a random
//! session id held in an `HttpOnly`, `SameSite=Strict` cookie. Each session
//! carries its own CSRF token, which every state-changing form must echo.
//! Scripts may instead send the API's bearer token with each request.
//! Sessions live in memory: a restart asks for the token again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use rand::RngCore;

use crate::Ui;
use crate::html::{self, esc};

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read pages and query.
    Read,
    /// Also create and expire silences.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// One logged-in (or, where no login is required, anonymous) browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub role: Role,
    pub csrf: String,
    /// Opened by typing a token (rather than anonymously).
    pub logged_in: bool,
    expires: Instant,
}

const COOKIE: &str = "vigil_session";
const LOGIN_COOKIE: &str = "vigil_login";
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Beyond this many sessions the oldest are dropped, so a flood of logins
/// cannot grow memory without bound.
const MAX_SESSIONS: usize = 4096;

/// The session store.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

pub(crate) fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares without an early exit, so timing does not reveal a prefix.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    fn open(&self, role: Role, logged_in: bool) -> Session {
        let s = Session {
            id: random_hex(),
            role,
            csrf: random_hex(),
            logged_in,
            expires: Instant::now() + LIFETIME,
        };
        let mut map = self.map.lock();
        let now = Instant::now();
        map.retain(|_, v| v.expires > now);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, v)| v.expires)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(s.id.clone(), s.clone());
        s
    }

    /// The live session named by the request's cookie.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let map = self.map.lock();
        let s = map.get(id)?;
        (s.expires > Instant::now()).then(|| s.clone())
    }

    /// The role of the request's session, for the API middleware.
    pub fn role(&self, headers: &HeaderMap) -> Option<Role> {
        self.from_headers(headers).map(|s| s.role)
    }

    fn close(&self, id: &str) {
        self.map.lock().remove(id);
    }
}

/// The session of a page request, and the cookie to set when it was just
/// opened.
pub struct Ctx {
    pub session: Session,
    pub set_cookie: Option<String>,
}

impl Ui {
    pub(crate) fn session_cookie(&self, id: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            if self.opts.secure_cookies {
                "; Secure"
            } else {
                ""
            }
        )
    }

    /// The request's session; where no login is required, an anonymous one
    /// is opened (it carries the CSRF token). Otherwise a redirect to the
    /// login page, coming back to `here` afterwards.
    // The error is the response itself, returned at once by every handler.
    #[allow(clippy::result_large_err)]
    pub(crate) fn ctx(&self, headers: &HeaderMap, here: &str) -> Result<Ctx, Response> {
        if let Some(session) = self.sessions.from_headers(headers) {
            return Ok(Ctx {
                session,
                set_cookie: None,
            });
        }
        if let Some(session) = self.bearer(headers) {
            return Ok(Ctx {
                session,
                set_cookie: None,
            });
        }
        if self.opts.login_required {
            let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
            return Err(html::redirect(&format!("/login?next={next}")));
        }
        let session = self.sessions.open(self.opts.anonymous_role, false);
        let set_cookie = Some(self.session_cookie(&session.id, LIFETIME.as_secs()));
        Ok(Ctx {
            session,
            set_cookie,
        })
    }

    /// A request carrying the API's bearer token (scripts, curl) gets the
    /// token's role for this request only, without a session.
    fn bearer(&self, headers: &HeaderMap) -> Option<Session> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let role = (self.opts.check_token)(token)?;
        Some(Session {
            id: String::new(),
            role,
            csrf: String::new(),
            logged_in: false,
            expires: Instant::now(),
        })
    }

    /// Checks a state-changing form: the session exists, the CSRF token
    /// matches and the role suffices.
    #[allow(clippy::result_large_err)]
    pub(crate) fn check_form(
        &self,
        headers: &HeaderMap,
        form: &[(String, String)],
        need: Role,
    ) -> Result<Session, Response> {
        // A bearer token is never sent by a browser on its own, so a request
        // carrying one is not a forged form post: no CSRF token needed.
        if let Some(session) = self.bearer(headers) {
            if need == Role::Admin && session.role != Role::Admin {
                return Err(html::plain(
                    StatusCode::FORBIDDEN,
                    "this needs the admin token\n",
                ));
            }
            return Ok(session);
        }
        let Some(session) = self.sessions.from_headers(headers) else {
            return Err(html::plain(
                StatusCode::FORBIDDEN,
                "no session: log in again\n",
            ));
        };
        let token = field(form, "csrf").unwrap_or("");
        if !same(token, &session.csrf) {
            return Err(html::plain(
                StatusCode::FORBIDDEN,
                "CSRF token missing or wrong: reload the page and try again\n",
            ));
        }
        if need == Role::Admin && session.role != Role::Admin {
            return Err(html::plain(
                StatusCode::FORBIDDEN,
                "this needs the admin token: log in with it\n",
            ));
        }
        Ok(session)
    }
}

/// Parses an `application/x-www-form-urlencoded` body or query.
pub(crate) fn parse_form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// The first value of `name`.
pub(crate) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Only same-site paths: `//host` and `/\host` would leave the site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => n,
        _ => "/graph",
    }
}

fn login_page(ui: &Ui, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    // Login CSRF: the form echoes a nonce also set as a cookie, so another
    // site cannot log a browser into a session of its choosing.
    let nonce = random_hex();
    let mut body = String::new();
    body.push_str("<main class=\"login\"><h1>Vigil</h1>");
    if let Some(e) = error {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)));
    }
    if !ui.opts.login_required {
        body.push_str(
            "<p class=\"hint\">Reading needs no token here; log in with the admin token to create and expire silences.</p>",
        );
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{nonce}\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"token\">Token (read or admin)</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" autofocus required>\
         <button type=\"submit\">Log in</button></form></main>",
        next = esc(next)
    ));
    let mut resp = html::document("Log in", None, &body, &[]);
    *resp.status_mut() = status;
    if let Ok(v) = format!(
        "{LOGIN_COOKIE}={nonce}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if ui.opts.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    )
    .parse()
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /login`
pub async fn login_form(State(ui): State<Arc<Ui>>, RawQuery(q): RawQuery) -> Response {
    let q = parse_form(q.unwrap_or_default().as_bytes());
    login_page(&ui, safe_next(field(&q, "next")), None, StatusCode::OK)
}

/// `POST /login`: token → session cookie.
pub async fn login(State(ui): State<Arc<Ui>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let next = safe_next(field(&form, "next")).to_string();
    let nonce_ok = match (cookie(&headers, LOGIN_COOKIE), field(&form, "csrf")) {
        (Some(c), Some(f)) => same(c, f),
        _ => false,
    };
    if !nonce_ok {
        return login_page(
            &ui,
            &next,
            Some("The login form expired; try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = field(&form, "token").unwrap_or("").trim();
    let Some(role) = (!token.is_empty())
        .then(|| (ui.opts.check_token)(token))
        .flatten()
    else {
        tracing::info!("UI login refused: wrong token");
        return login_page(
            &ui,
            &next,
            Some("That token is not accepted."),
            StatusCode::UNAUTHORIZED,
        );
    };
    if let Some(old) = ui.sessions.from_headers(&headers) {
        ui.sessions.close(&old.id);
    }
    let s = ui.sessions.open(role, true);
    tracing::info!(role = role.name(), "UI login");
    let mut resp = html::redirect(&next);
    if let Ok(v) = ui.session_cookie(&s.id, LIFETIME.as_secs()).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(State(ui): State<Arc<Ui>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let session = match ui.check_form(&headers, &form, Role::Read) {
        Ok(s) => s,
        Err(r) => return r,
    };
    ui.sessions.close(&session.id);
    let mut resp = html::redirect("/login");
    if let Ok(v) = ui.session_cookie("", 0).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_site() {
        assert_eq!(safe_next(Some("/alerts?x=1")), "/alerts?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/graph");
        assert_eq!(safe_next(Some("/\\evil.example/")), "/graph");
        assert_eq!(safe_next(Some("https://evil.example/")), "/graph");
        assert_eq!(safe_next(None), "/graph");
    }

    #[test]
    fn sessions_open_find_close_and_stay_bounded() {
        let s = Sessions::default();
        let a = s.open(Role::Admin, true);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("other=1; {COOKIE}={}", a.id)
                .parse()
                .expect("header value"),
        );
        assert_eq!(s.role(&h), Some(Role::Admin));
        s.close(&a.id);
        assert_eq!(s.role(&h), None);
        for _ in 0..MAX_SESSIONS + 10 {
            s.open(Role::Read, false);
        }
        assert!(s.map.lock().len() <= MAX_SESSIONS);
    }
}
