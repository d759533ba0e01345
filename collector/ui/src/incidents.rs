//! `/incidents`: every alert episode kept by alerting (list, and a page per
//! incident with its timeline: start, notifications, acknowledgements,
//! escalations, notes, end), the form that adds a note, and the
//! acknowledge action behind the button on `/alerts`. Writes go through
//! Vigil's incident API and need an admin session and the form's CSRF
//! token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::Ui;
use crate::html::{self, esc, label_chips, q};
use crate::session::{Role, field, parse_form};
use crate::time::since;

/// The open incidents' acknowledgements by fingerprint, for `/alerts`:
/// (author, time, comment) of the latest ack.
pub async fn open_acks(ui: &Ui) -> Vec<(String, String, String, String)> {
    let Ok(list) = ui
        .get("/api/vigil/v1/incidents?state=open&limit=10000")
        .await
        .data()
    else {
        return Vec::new();
    };
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let last = i["acks"].as_array()?.last()?;
            Some((
                i["fingerprint"].as_str()?.to_string(),
                last["author"].as_str().unwrap_or("").to_string(),
                last["at"].as_str().unwrap_or("").to_string(),
                last["comment"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// The acknowledge form of one alert (admin only).
pub fn ack_form(fingerprint: &str, csrf: &str) -> String {
    format!(
        "<form class=\"ack\" method=\"post\" action=\"/alerts/ack\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"fingerprint\" value=\"{fp}\">\
         <input name=\"author\" type=\"text\" placeholder=\"Your name\" aria-label=\"Your name\" required> \
         <input name=\"comment\" type=\"text\" placeholder=\"Comment\" aria-label=\"Comment\"> \
         <button type=\"submit\">Acknowledge</button></form>",
        csrf = esc(csrf),
        fp = esc(fingerprint),
    )
}

/// "Acknowledged by … at …" for an alert card.
pub fn ack_line(author: &str, at: &str, comment: &str, now: DateTime<Utc>) -> String {
    let mut s = format!(
        "<span class=\"acked\">Acknowledged by <strong>{}</strong> at {}",
        esc(author),
        esc(&since(at, now))
    );
    if !comment.is_empty() {
        s.push_str(&format!(": {}", esc(comment)));
    }
    s.push_str("</span>");
    s
}

/// `POST /alerts/ack`: acknowledges an alert, back to `/alerts`.
pub async fn ack(State(ui): State<Arc<Ui>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    if let Err(r) = ui.check_form(&headers, &form, Role::Admin) {
        return r;
    }
    let answer = ui
        .call(
            Method::POST,
            "/api/vigil/v1/alerts/ack",
            Some(json!({
                "fingerprint": field(&form, "fingerprint").unwrap_or(""),
                "author": field(&form, "author").unwrap_or(""),
                "comment": field(&form, "comment").unwrap_or(""),
            })),
        )
        .await;
    if !answer.status.is_success() {
        return html::plain(
            answer.status,
            &format!("acknowledging: {}\n", answer.error()),
        );
    }
    let id = answer.json["data"]["id"].as_str().unwrap_or("").to_string();
    tracing::info!(incident = %id, "alert acknowledged from the UI");
    html::redirect(&format!("/alerts?acked={}", q(&id)))
}

fn alertname(i: &Value) -> &str {
    i["labels"]["alertname"].as_str().unwrap_or("")
}

fn state_badge(i: &Value) -> String {
    let st = i["state"].as_str().unwrap_or("");
    let css = if st == "open" { "firing" } else { "inactive" };
    format!(
        "<span class=\"state {css}\">{}</span>",
        esc(&st.to_uppercase())
    )
}

fn peak(i: &Value) -> String {
    match i["peakValue"].as_f64() {
        Some(v) => format!("{v}"),
        None => "—".into(),
    }
}

/// `GET /incidents?state=open|closed`
pub async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let ctx = match ui.ctx(&headers, &format!("/incidents?{raw}")) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let query = parse_form(raw.as_bytes());
    let state = field(&query, "state").unwrap_or("");
    let now = Utc::now();
    let mut body = String::from(
        "<h1>Incidents</h1><form class=\"filters\" method=\"get\" action=\"/incidents\"><label>Show \
         <select name=\"state\" class=\"autosubmit\">",
    );
    for (v, label) in [("", "all"), ("open", "open"), ("closed", "closed")] {
        let sel = if v == state { " selected" } else { "" };
        body.push_str(&format!("<option value=\"{v}\"{sel}>{label}</option>"));
    }
    body.push_str("</select></label> <button type=\"submit\">Apply</button></form>");
    let mut uri = String::from("/api/vigil/v1/incidents?limit=500");
    if matches!(state, "open" | "closed") {
        uri.push_str(&format!("&state={state}"));
    }
    let list = match ui.get(&uri).await.data() {
        Ok(Value::Array(v)) => v,
        Ok(_) => Vec::new(),
        Err(e) => {
            body.push_str(&html::error_box(&e, ""));
            Vec::new()
        }
    };
    if list.is_empty() {
        body.push_str("<p class=\"empty\">No incidents.</p>");
    } else {
        body.push_str(
            "<table class=\"sortable incidents\"><thead><tr>\
             <th><button type=\"button\" class=\"sort\" data-col=\"0\">State</button></th>\
             <th><button type=\"button\" class=\"sort\" data-col=\"1\">Alert</button></th>\
             <th>Labels</th>\
             <th><button type=\"button\" class=\"sort\" data-col=\"3\">Started</button></th>\
             <th><button type=\"button\" class=\"sort\" data-col=\"4\">Ended</button></th>\
             <th class=\"num\"><button type=\"button\" class=\"sort\" data-col=\"5\">Peak</button></th>\
             <th>Acknowledged</th>\
             <th class=\"num\"><button type=\"button\" class=\"sort\" data-col=\"7\">Notifications</button></th>\
             <th class=\"num\"><button type=\"button\" class=\"sort\" data-col=\"8\">Escalations</button></th>\
             </tr></thead><tbody>",
        );
        let empty = Map::new();
        for i in &list {
            let id = i["id"].as_str().unwrap_or("");
            let acked = i["acks"]
                .as_array()
                .and_then(|a| a.last())
                .map(|a| {
                    format!(
                        "{} ({})",
                        esc(a["author"].as_str().unwrap_or("")),
                        esc(&since(a["at"].as_str().unwrap_or(""), now))
                    )
                })
                .unwrap_or_default();
            let mut labels = i["labels"].as_object().cloned().unwrap_or_default();
            labels.remove("alertname");
            body.push_str(&format!(
                "<tr><td>{badge}</td><td><a href=\"/incidents/{href}\">{name}</a></td><td>{chips}</td>\
                 <td>{start}</td><td>{end}</td><td class=\"num\">{peak}</td><td>{acked}</td>\
                 <td class=\"num\">{notes}</td><td class=\"num\">{esc_n}</td></tr>",
                badge = state_badge(i),
                href = q(id),
                name = esc(alertname(i)),
                chips = label_chips(if labels.is_empty() { &empty } else { &labels }),
                start = esc(&since(i["startsAt"].as_str().unwrap_or(""), now)),
                end = esc(&i["endsAt"].as_str().map(|e| since(e, now)).unwrap_or_default()),
                peak = esc(&peak(i)),
                notes = i["notifications"].as_array().map_or(0, Vec::len),
                esc_n = i["escalations"].as_array().map_or(0, Vec::len),
            ));
        }
        body.push_str("</tbody></table>");
    }
    html::page(&ctx, "Incidents", "/incidents", &body, &[])
}

/// One line of the timeline: (time, kind, html).
fn timeline(i: &Value) -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    out.push((
        s(&i["startsAt"]),
        "start",
        format!("Started firing: <strong>{}</strong>", esc(alertname(i))),
    ));
    for n in i["notifications"].as_array().into_iter().flatten() {
        let ok = n["status"] == "ok";
        let mut text = format!(
            "{} notification to <strong>{}</strong> ({}) {}",
            esc(n["alertStatus"].as_str().unwrap_or("")),
            esc(n["receiver"].as_str().unwrap_or("")),
            esc(n["integration"].as_str().unwrap_or("")),
            if ok { "delivered" } else { "failed" },
        );
        if n["escalation"] == true {
            text.push_str(" (escalation)");
        }
        if let Some(e) = n["error"].as_str() {
            text.push_str(&format!(": <span class=\"error-text\">{}</span>", esc(e)));
        }
        out.push((s(&n["at"]), "notification", text));
    }
    for a in i["acks"].as_array().into_iter().flatten() {
        let mut text = format!(
            "Acknowledged by <strong>{}</strong>",
            esc(a["author"].as_str().unwrap_or(""))
        );
        if let Some(c) = a["comment"].as_str().filter(|c| !c.is_empty()) {
            text.push_str(&format!(": {}", esc(c)));
        }
        out.push((s(&a["at"]), "ack", text));
    }
    for e in i["escalations"].as_array().into_iter().flatten() {
        out.push((
            s(&e["at"]),
            "escalation",
            format!(
                "Escalated to <strong>{}</strong> (unacknowledged after {})",
                esc(e["receiver"].as_str().unwrap_or("")),
                esc(e["after"].as_str().unwrap_or(""))
            ),
        ));
    }
    for n in i["notes"].as_array().into_iter().flatten() {
        out.push((
            s(&n["at"]),
            "note",
            format!(
                "Note by <strong>{}</strong>: {}",
                esc(n["author"].as_str().unwrap_or("")),
                esc(n["text"].as_str().unwrap_or(""))
            ),
        ));
    }
    if let Some(end) = i["endsAt"].as_str() {
        out.push((end.to_string(), "end", "Resolved".to_string()));
    }
    // RFC 3339 in UTC: compare as instants, not text.
    out.sort_by_key(|(t, kind, _)| {
        (
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_nanos_opt().unwrap_or(0))
                .unwrap_or(0),
            *kind == "end",
        )
    });
    out
}

/// `GET /incidents/{id}`
pub async fn detail(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match ui.ctx(&headers, &format!("/incidents/{}", q(&id))) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = Utc::now();
    let answer = ui.get(&format!("/api/vigil/v1/incidents/{}", q(&id))).await;
    let i = match answer.data() {
        Ok(i) => i,
        Err(e) => {
            let body = format!(
                "<h1>Incident</h1>{}<p><a href=\"/incidents\">All incidents</a></p>",
                html::error_box(&e, "")
            );
            return html::page(&ctx, "Incident", "/incidents", &body, &[]);
        }
    };
    let empty = Map::new();
    let mut body = format!(
        "<h1>{badge} {name}</h1>{chips}<dl><dt>Incident</dt><dd><code>{id}</code></dd>\
         <dt>Fingerprint</dt><dd><code>{fp}</code></dd><dt>Started</dt><dd>{start}</dd>\
         <dt>Ended</dt><dd>{end}</dd><dt>Peak value</dt><dd>{peak}</dd>",
        badge = state_badge(&i),
        name = esc(alertname(&i)),
        chips = label_chips(i["labels"].as_object().unwrap_or(&empty)),
        id = esc(&id),
        fp = esc(i["fingerprint"].as_str().unwrap_or("")),
        start = esc(&since(i["startsAt"].as_str().unwrap_or(""), now)),
        end = esc(&i["endsAt"]
            .as_str()
            .map(|e| since(e, now))
            .unwrap_or_else(|| "still firing".into())),
        peak = esc(&peak(&i)),
    );
    for (k, v) in i["annotations"].as_object().into_iter().flatten() {
        body.push_str(&format!(
            "<dt>{}</dt><dd>{}</dd>",
            esc(k),
            esc(v.as_str().unwrap_or(""))
        ));
    }
    body.push_str("</dl><h2>Timeline</h2><ol class=\"timeline\">");
    for (t, kind, text) in timeline(&i) {
        body.push_str(&format!(
            "<li class=\"{kind}\"><time>{}</time> {text}</li>",
            esc(&since(&t, now))
        ));
    }
    body.push_str("</ol>");
    if let Some(d) = i["notificationsDropped"].as_u64().filter(|d| *d > 0) {
        body.push_str(&format!(
            "<p class=\"hint\">{d} older notification records were dropped (the newest are kept).</p>"
        ));
    }
    if ctx.session.role == Role::Admin {
        body.push_str(&format!(
            "<h2>Add a note</h2><form class=\"silence-form note\" method=\"post\" action=\"/incidents/{href}/notes\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"author\">Your name</label><input id=\"author\" name=\"author\" type=\"text\" required>\
             <label for=\"text\">Note</label><textarea id=\"text\" name=\"text\" rows=\"3\" required></textarea>\
             <p class=\"actions\"><button type=\"submit\" class=\"primary\">Add note</button></p></form>",
            href = q(&id),
            csrf = esc(&ctx.session.csrf),
        ));
    } else {
        body.push_str("<p class=\"hint\">Log in with the admin token to add notes.</p>");
    }
    body.push_str("<p><a href=\"/incidents\">All incidents</a></p>");
    html::page(&ctx, "Incident", "/incidents", &body, &[])
}

/// `POST /incidents/{id}/notes`
pub async fn add_note(
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
        .call(
            Method::POST,
            &format!("/api/vigil/v1/incidents/{}/notes", q(&id)),
            Some(json!({
                "author": field(&form, "author").unwrap_or(""),
                "text": field(&form, "text").unwrap_or(""),
            })),
        )
        .await;
    if !answer.status.is_success() {
        return html::plain(
            answer.status,
            &format!("adding the note: {}\n", answer.error()),
        );
    }
    html::redirect(&format!("/incidents/{}", q(&id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_orders_events_and_escapes() {
        let i = json!({
            "labels": {"alertname": "<b>Disk</b>"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "2026-01-01T01:00:00Z",
            "notifications": [{"at": "2026-01-01T00:00:01.5Z", "receiver": "team", "integration": "webhook[0]",
                               "status": "ok", "alertStatus": "firing", "escalation": false},
                              {"at": "2026-01-01T00:20:00Z", "receiver": "boss", "integration": "email[0]",
                               "status": "failed", "error": "<503>", "alertStatus": "firing", "escalation": true}],
            "acks": [{"at": "2026-01-01T00:00:01Z", "author": "ann<", "comment": "on it"}],
            "escalations": [{"at": "2026-01-01T00:15:00Z", "receiver": "boss", "after": "15m"}],
            "notes": [{"at": "2026-01-01T00:30:00Z", "author": "bob", "text": "<script>x</script>"}],
        });
        let t = timeline(&i);
        let kinds: Vec<&str> = t.iter().map(|(_, k, _)| *k).collect();
        assert_eq!(
            kinds,
            vec![
                "start",
                "ack",
                "notification",
                "escalation",
                "notification",
                "note",
                "end"
            ]
        );
        let all: String = t.iter().map(|(_, _, h)| h.as_str()).collect();
        assert!(
            !all.contains("<script>") && !all.contains("<b>Disk"),
            "{all}"
        );
        assert!(
            all.contains("&lt;503&gt;") && all.contains("ann&lt;"),
            "{all}"
        );
    }

    #[test]
    fn ack_form_carries_csrf_and_fingerprint() {
        let f = ack_form("00ff\"", "tok");
        assert!(f.contains("name=\"csrf\" value=\"tok\""));
        assert!(f.contains("value=\"00ff&quot;\""), "{f}");
    }
}
