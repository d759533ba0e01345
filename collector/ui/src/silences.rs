//! `/silences`: the list (active, pending, expired), the form that creates
//! one with a preview of the alerts its matchers would mute, and expiry.
//! Creating and expiring go through the Alertmanager v2 silences API and
//! need an admin session and the form's CSRF token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::Ui;
use crate::html::{self, esc, label_chips, q};
use crate::session::{Ctx, Role, field, parse_form};
use crate::time::{parse_duration_ms, since};

/// One matcher as Alertmanager's API takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    pub is_equal: bool,
}

/// `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"` (quotes optional).
pub fn parse_matcher(s: &str) -> Result<Matcher, String> {
    let s = s.trim();
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let name = &s[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{s:?}: a matcher starts with a label name"));
    }
    let rest = s[name_end..].trim_start();
    let (is_equal, is_regex, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (true, true, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (false, true, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (false, false, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (true, false, r)
    } else {
        return Err(format!(
            "{s:?}: expected =, !=, =~ or !~ after the label name"
        ));
    };
    let rest = rest.trim();
    let value = if let Some(inner) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.chars();
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(c) => out.push(c),
                    None => break,
                },
                '"' => {
                    closed = true;
                    break;
                }
                c => out.push(c),
            }
        }
        if !closed || !chars.as_str().trim().is_empty() {
            return Err(format!("{s:?}: unbalanced quotes in the value"));
        }
        out
    } else {
        rest.to_string()
    };
    Ok(Matcher {
        name: name.to_string(),
        value,
        is_regex,
        is_equal,
    })
}

fn matcher_text(m: &Value) -> String {
    let op = match (
        m["isEqual"].as_bool().unwrap_or(true),
        m["isRegex"].as_bool().unwrap_or(false),
    ) {
        (true, false) => "=",
        (false, false) => "!=",
        (true, true) => "=~",
        (false, true) => "!~",
    };
    let v = m["value"]
        .as_str()
        .unwrap_or("")
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("{}{op}\"{v}\"", m["name"].as_str().unwrap_or(""))
}

/// `GET /silences`
pub async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match ui.ctx(&headers, "/silences") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let query = parse_form(raw.unwrap_or_default().as_bytes());
    let admin = ctx.session.role == Role::Admin;
    let now = chrono::Utc::now();
    let mut body = String::from("<h1>Silences</h1>");
    if let Some(id) = field(&query, "created") {
        body.push_str(&format!(
            "<p class=\"notice\" role=\"status\">Silence <a href=\"#s-{id}\">{id}</a> created.</p>",
            id = esc(id)
        ));
    }
    if admin {
        body.push_str("<p class=\"actions\"><a class=\"button primary\" href=\"/silences/new\">New silence</a></p>");
    } else {
        body.push_str(
            "<p class=\"hint\">Log in with the admin token to create or expire silences.</p>",
        );
    }
    let answer = ui.get("/api/v2/silences").await;
    let mut list = match answer.json {
        Value::Array(v) => v,
        _ => {
            body.push_str(&html::error_box(&answer.error(), ""));
            Vec::new()
        }
    };
    let rank = |s: &Value| match s["status"]["state"].as_str() {
        Some("active") => 0,
        Some("pending") => 1,
        _ => 2,
    };
    list.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| b["endsAt"].as_str().cmp(&a["endsAt"].as_str()))
    });
    if list.is_empty() {
        body.push_str("<p class=\"empty\">No silences.</p>");
    }
    for s in &list {
        let id = s["id"].as_str().unwrap_or("");
        let state = s["status"]["state"].as_str().unwrap_or("");
        let matchers: Vec<String> = s["matchers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(matcher_text)
            .collect();
        body.push_str(&format!(
            "<article class=\"silence {state}\" id=\"s-{id}\"><header><span class=\"state {state}\">{state_up}</span> \
             <code>{id}</code></header><p class=\"labels\">",
            state = esc(state),
            state_up = esc(&state.to_uppercase()),
            id = esc(id),
        ));
        for m in &matchers {
            body.push_str(&format!("<span class=\"label\">{}</span>", esc(m)));
        }
        body.push_str(&format!(
            "</p><dl><dt>Starts</dt><dd>{}</dd><dt>Ends</dt><dd>{}</dd><dt>Created by</dt><dd>{}</dd><dt>Comment</dt><dd>{}</dd></dl>",
            esc(&since(s["startsAt"].as_str().unwrap_or(""), now)),
            esc(&since(s["endsAt"].as_str().unwrap_or(""), now)),
            esc(s["createdBy"].as_str().unwrap_or("")),
            esc(s["comment"].as_str().unwrap_or("")),
        ));
        if admin && state != "expired" {
            body.push_str(&format!(
                "<form method=\"post\" action=\"/silences/{id}/expire\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\">Expire</button></form>",
                id = q(id),
                csrf = esc(&ctx.session.csrf)
            ));
        }
        body.push_str("</article>");
    }
    html::page(&ctx, "Silences", "/silences", &body, &[])
}

/// The new-silence form, filled from `form` (query or posted body).
async fn render_form(
    ui: &Ui,
    ctx: &Ctx,
    form: &[(String, String)],
    error: Option<&str>,
) -> Response {
    let mut matchers: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "matcher")
        .map(|(_, v)| v.clone())
        .collect();
    if let Some(text) = field(form, "matchers") {
        matchers.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    let duration = field(form, "duration").unwrap_or("2h");
    let created_by = field(form, "created_by").unwrap_or("");
    let comment = field(form, "comment").unwrap_or("");
    let mut body = String::from("<h1>New silence</h1>");
    if let Some(e) = error {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)));
    }
    body.push_str(&format!(
        "<form class=\"silence-form\" method=\"post\" action=\"/silences\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"matchers\">Matchers, one per line (<code>name=\"value\"</code>, <code>!=</code>, <code>=~</code>, <code>!~</code>)</label>\
         <textarea id=\"matchers\" name=\"matchers\" rows=\"{rows}\" spellcheck=\"false\" required>{m}</textarea>\
         <label for=\"duration\">Duration</label>\
         <input id=\"duration\" name=\"duration\" type=\"text\" value=\"{duration}\" required>\
         <label for=\"created_by\">Created by</label>\
         <input id=\"created_by\" name=\"created_by\" type=\"text\" value=\"{created_by}\" required>\
         <label for=\"comment\">Comment</label>\
         <input id=\"comment\" name=\"comment\" type=\"text\" value=\"{comment}\" required>\
         <p class=\"actions\"><button type=\"submit\" formmethod=\"get\" formaction=\"/silences/new\" formnovalidate>Preview</button> \
         <button type=\"submit\" class=\"primary\">Create silence</button></p></form>",
        csrf = esc(&ctx.session.csrf),
        rows = matchers.len().clamp(3, 12),
        m = esc(&matchers.join("\n")),
        duration = esc(duration),
        created_by = esc(created_by),
        comment = esc(comment),
    ));
    // Preview: the alerts these matchers select now.
    let parsed: Result<Vec<Matcher>, String> = matchers.iter().map(|m| parse_matcher(m)).collect();
    match parsed {
        Err(e) => body.push_str(&html::error_box(&e, "")),
        Ok(ms) if ms.is_empty() => {}
        Ok(_) => {
            let mut uri = String::from("/api/v2/alerts?");
            for m in &matchers {
                uri.push_str(&format!("filter={}&", q(m)));
            }
            let answer = ui.get(uri.trim_end_matches('&')).await;
            match answer.json {
                Value::Array(alerts) => {
                    body.push_str(&format!(
                        "<h2>Would mute {} alert{}</h2>",
                        alerts.len(),
                        if alerts.len() == 1 { "" } else { "s" }
                    ));
                    body.push_str("<ul class=\"preview\">");
                    for a in &alerts {
                        let empty = serde_json::Map::new();
                        body.push_str(&format!(
                            "<li>{}</li>",
                            label_chips(a["labels"].as_object().unwrap_or(&empty))
                        ));
                    }
                    body.push_str("</ul>");
                }
                _ => body.push_str(&html::error_box(&answer.error(), "")),
            }
        }
    }
    html::page(ctx, "New silence", "/silences", &body, &[])
}

/// `GET /silences/new?matcher=…&comment=…`
pub async fn new_form(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let ctx = match ui.ctx(&headers, &format!("/silences/new?{raw}")) {
        Ok(c) => c,
        Err(r) => return r,
    };
    render_form(&ui, &ctx, &parse_form(raw.as_bytes()), None).await
}

/// `POST /silences`: creates a silence.
pub async fn create(State(ui): State<Arc<Ui>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let session = match ui.check_form(&headers, &form, Role::Admin) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ctx = Ctx {
        session,
        set_cookie: None,
    };
    let fail = |msg: String| {
        let ui = ui.clone();
        let form = form.clone();
        let ctx = &ctx;
        async move {
            let mut r = render_form(&ui, ctx, &form, Some(&msg)).await;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
    };
    let matchers: Result<Vec<Matcher>, String> = field(&form, "matchers")
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_matcher)
        .collect();
    let matchers = match matchers {
        Ok(m) if !m.is_empty() => m,
        Ok(_) => return fail("a silence needs at least one matcher".into()).await,
        Err(e) => return fail(e).await,
    };
    let duration = field(&form, "duration").unwrap_or("");
    let Some(duration_ms) = parse_duration_ms(duration) else {
        return fail(format!(
            "duration {duration:?} is not a duration (e.g. 2h, 30m)"
        ))
        .await;
    };
    let start = chrono::Utc::now();
    let end = start + chrono::Duration::milliseconds(duration_ms);
    let silence = json!({
        "matchers": matchers.iter().map(|m| json!({
            "name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal,
        })).collect::<Vec<_>>(),
        "startsAt": start.to_rfc3339(),
        "endsAt": end.to_rfc3339(),
        "createdBy": field(&form, "created_by").unwrap_or("").trim(),
        "comment": field(&form, "comment").unwrap_or("").trim(),
    });
    let answer = ui
        .call(Method::POST, "/api/v2/silences", Some(silence))
        .await;
    if !answer.status.is_success() {
        return fail(answer.error()).await;
    }
    let id = answer.json["silenceID"].as_str().unwrap_or("").to_string();
    tracing::info!(silence = %id, "silence created from the UI");
    html::redirect(&format!("/silences?created={}#s-{}", q(&id), q(&id)))
}

/// `POST /silences/{id}/expire`
pub async fn expire(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    if let Err(r) = ui.check_form(&headers, &form, Role::Admin) {
        return r;
    }
    let answer = ui
        .call(Method::DELETE, &format!("/api/v2/silence/{}", q(&id)), None)
        .await;
    if !answer.status.is_success() {
        return html::plain(
            answer.status,
            &format!("expiring {id}: {}\n", answer.error()),
        );
    }
    tracing::info!(silence = %id, "silence expired from the UI");
    html::redirect("/silences")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_like_amtool() {
        assert_eq!(
            parse_matcher("alertname=\"High \\\"CPU\\\"\"").expect("parses"),
            Matcher {
                name: "alertname".into(),
                value: "High \"CPU\"".into(),
                is_regex: false,
                is_equal: true
            }
        );
        let m = parse_matcher("job!~api|db").expect("parses");
        assert!(m.is_regex && !m.is_equal && m.value == "api|db");
        let m = parse_matcher("a != \"b\"").expect("parses");
        assert!(!m.is_regex && !m.is_equal && m.value == "b");
        assert!(parse_matcher("=\"x\"").is_err());
        assert!(parse_matcher("a\"x\"").is_err());
        assert!(parse_matcher("a=\"x").is_err());
        assert_eq!(
            matcher_text(&json!({"name": "a", "value": "x\"y", "isRegex": true, "isEqual": false})),
            "a!~\"x\\\"y\""
        );
    }
}
