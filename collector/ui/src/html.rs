//! HTML building: escaping, the page layout, and the security headers every
//! UI response carries. Pages are built with `format!`, whose templates the
//! compiler checks; every value from outside goes through [`esc`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::assets;
use crate::session::{Ctx, Role};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// No inline script or style, nothing from other origins; the chart's
/// canvas and the query API are same-origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A 303 to a same-site path.
pub fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    secure(resp)
}

/// A plain-text answer (errors of form posts).
pub fn plain(status: StatusCode, text: &str) -> Response {
    secure((status, text.to_string()).into_response())
}

/// A complete HTML document. `nav` is the header bar (absent on the login
/// page); `extra_css`/`extra_js` name further assets.
pub fn document(title: &str, nav: Option<&str>, body: &str, extra: &[&str]) -> Response {
    let mut links = format!(
        "<link rel=\"stylesheet\" href=\"{}\">",
        assets::url("vigil.css")
    );
    let mut scripts = String::new();
    for name in extra {
        if name.ends_with(".css") {
            links.push_str(&format!(
                "<link rel=\"stylesheet\" href=\"{}\">",
                assets::url(name)
            ));
        } else {
            scripts.push_str(&format!(
                "<script src=\"{}\" defer></script>",
                assets::url(name)
            ));
        }
    }
    scripts.push_str(&format!(
        "<script src=\"{}\" defer></script>",
        assets::url("vigil.js")
    ));
    let doc = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{title} · Vigil</title>{links}{scripts}</head><body>{nav}{body}</body></html>",
        title = esc(title),
        nav = nav.unwrap_or(""),
    );
    secure(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], doc).into_response())
}

const NAV: &[(&str, &str)] = &[
    ("/graph", "Graph"),
    ("/alerts", "Alerts"),
    ("/rules", "Rules"),
    ("/silences", "Silences"),
    ("/agents", "Agents"),
    ("/anomalies", "Anomalies"),
    ("/incidents", "Incidents"),
    ("/status", "Status"),
];

/// A page with the navigation bar, setting the session cookie if it was
/// just opened.
pub fn page(ctx: &Ctx, title: &str, active: &str, body: &str, extra: &[&str]) -> Response {
    let mut nav =
        String::from("<header class=\"bar\"><a class=\"brand\" href=\"/graph\">Vigil</a><nav>");
    for (href, label) in NAV {
        let current = if *href == active {
            " aria-current=\"page\""
        } else {
            ""
        };
        nav.push_str(&format!("<a href=\"{href}\"{current}>{label}</a>"));
    }
    nav.push_str("</nav><div class=\"who\">");
    let s = &ctx.session;
    if s.logged_in {
        nav.push_str(&format!(
            "<span class=\"role\">{}</span><form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
            s.role.name(),
            esc(&s.csrf)
        ));
    } else if s.id.is_empty() {
        nav.push_str(&format!(
            "<span class=\"role\">{} (bearer token)</span>",
            s.role.name()
        ));
    } else if s.role != Role::Admin {
        nav.push_str("<span class=\"role\">read</span><a href=\"/login\">Log in</a>");
    } else {
        nav.push_str("<span class=\"role\" title=\"No read or admin token is configured\">open access</span>");
    }
    nav.push_str("</div></header>");
    let body = format!("<main>{body}</main>");
    let mut resp = document(title, Some(&nav), &body, extra);
    if let Some(c) = &ctx.set_cookie
        && let Ok(v) = HeaderValue::from_str(c)
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Renders `{a="x", b="y"}` as escaped label chips.
pub fn label_chips(labels: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut out = String::from("<span class=\"labels\">");
    for (k, v) in labels {
        out.push_str(&format!(
            "<span class=\"label\">{}=\"{}\"</span>",
            esc(k),
            esc(v.as_str().unwrap_or_default())
        ));
    }
    out.push_str("</span>");
    out
}

/// An error box: the message and, when it names a `line:column`, the
/// expression with a caret under that place.
pub fn error_box(message: &str, expr: &str) -> String {
    let mut out = format!(
        "<div class=\"error\" role=\"alert\"><p>{}</p>",
        esc(message)
    );
    if let Some((line, col)) = error_position(message)
        && let Some(text) = expr.lines().nth(line.saturating_sub(1))
    {
        let col = col.max(1);
        let pad: String = text
            .chars()
            .take(col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "<pre class=\"caret\">{}\n{}^</pre>",
            esc(text),
            pad
        ));
    }
    out.push_str("</div>");
    out
}

/// `1:5: parse error: …` → (1, 5).
pub fn error_position(message: &str) -> Option<(usize, usize)> {
    let mut parts = message.splitn(3, ':');
    let line = parts.next()?.trim().parse().ok()?;
    let col = parts.next()?.trim().parse().ok()?;
    Some((line, col))
}

/// A link target from outside (a generator URL): only http(s) or a
/// same-site path, never `javascript:`.
pub fn safe_href(url: &str) -> Option<&str> {
    let lower = url.trim_start().to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with('/'))
        .then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>\"&"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"
        );
    }

    #[test]
    fn error_caret_points_at_the_column() {
        assert_eq!(error_position("1:5: parse error: x"), Some((1, 5)));
        assert_eq!(error_position("parse error: x"), None);
        let b = error_box("1:5: parse error: unclosed left parenthesis", "sum(");
        assert!(b.contains("<pre class=\"caret\">sum(\n    ^</pre>"), "{b}");
    }

    #[test]
    fn only_web_links() {
        assert_eq!(safe_href("javascript:alert(1)"), None);
        assert_eq!(safe_href(" JAVASCRIPT:alert(1)"), None);
        assert!(safe_href("http://x/graph?g0.expr=up").is_some());
    }
}
