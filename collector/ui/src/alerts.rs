//! `/alerts`: the rule engine's firing and pending alerts (threshold and
//! anomaly rules), each with its labels, value, active-since time, a link to
//! its expression in `/graph`, whether a silence mutes it, and a button that
//! opens the silence form for it, and an acknowledge button (or who
//! acknowledged it and when). Alerts that reached alerting from outside
//! the rules (posted to `/api/v2/alerts`) are listed below.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::html::{self, esc, label_chips, q};
use crate::session::{Role, parse_form};
use crate::time::since;
use crate::{Ui, graph, incidents};

/// An Alertmanager alert whose labels include every label of `labels`
/// (alerting adds external labels).
fn am_match<'a>(am: &'a [Value], labels: &Map<String, Value>) -> Option<&'a Value> {
    am.iter().find(|a| {
        a["labels"]
            .as_object()
            .is_some_and(|al| labels.iter().all(|(k, v)| al.get(k) == Some(v)))
    })
}

/// The matchers that select exactly this label set, for a new silence.
pub fn matchers_for(labels: &Map<String, Value>) -> Vec<String> {
    labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_default()
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            format!("{k}=\"{v}\"")
        })
        .collect()
}

fn silence_link(labels: &Map<String, Value>, alertname: &str) -> String {
    let mut url = String::from("/silences/new?");
    for m in matchers_for(labels) {
        url.push_str(&format!("matcher={}&", q(&m)));
    }
    url.push_str(&format!(
        "comment={}",
        q(&format!("Silenced from the alert {alertname}"))
    ));
    url
}

/// `GET /alerts`
pub async fn alerts(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match ui.ctx(&headers, "/alerts") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let query = parse_form(raw.unwrap_or_default().as_bytes());
    let state_filter = crate::session::field(&query, "state").unwrap_or("");
    let admin = ctx.session.role == Role::Admin;
    let now = chrono::Utc::now();
    let rules = ui.get("/api/v1/rules?type=alert").await.data();
    let am: Vec<Value> = match ui.get("/api/v2/alerts").await.json {
        Value::Array(v) => v,
        _ => Vec::new(),
    };
    let acks = incidents::open_acks(&ui).await;
    let ack_of = |fp: &str| acks.iter().find(|(f, ..)| f == fp);
    let mut body = String::from("<h1>Alerts</h1>");
    if let Some(id) = crate::session::field(&query, "acked") {
        body.push_str(&format!(
            "<p class=\"notice\" role=\"status\">Acknowledged: <a href=\"/incidents/{}\">incident {}</a>.</p>",
            q(id),
            esc(id)
        ));
    }
    body.push_str(
        "<form class=\"filters\" method=\"get\" action=\"/alerts\"><label>Show \
         <select name=\"state\" class=\"autosubmit\">",
    );
    for (v, label) in [
        ("", "firing and pending"),
        ("firing", "firing"),
        ("pending", "pending"),
    ] {
        let sel = if v == state_filter { " selected" } else { "" };
        body.push_str(&format!("<option value=\"{v}\"{sel}>{label}</option>"));
    }
    body.push_str("</select></label> <button type=\"submit\">Apply</button></form>");
    let groups = match rules {
        Ok(d) => d["groups"].as_array().cloned().unwrap_or_default(),
        Err(e) => {
            body.push_str(&html::error_box(&e, ""));
            Vec::new()
        }
    };
    let mut rows = Vec::new();
    let mut covered: Vec<&Value> = Vec::new();
    for g in &groups {
        for r in g["rules"].as_array().into_iter().flatten() {
            let rule_name = r["name"].as_str().unwrap_or("");
            let query_text = r["query"].as_str().unwrap_or("");
            for a in r["alerts"].as_array().into_iter().flatten() {
                let st = a["state"].as_str().unwrap_or("");
                if !state_filter.is_empty() && st != state_filter {
                    continue;
                }
                let empty = Map::new();
                let labels = a["labels"].as_object().unwrap_or(&empty);
                let am_alert = am_match(&am, labels);
                if let Some(x) = am_alert {
                    covered.push(x);
                }
                let silenced: Vec<String> = am_alert
                    .and_then(|x| x["status"]["silencedBy"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect();
                let fingerprint = am_alert
                    .and_then(|x| x["fingerprint"].as_str())
                    .unwrap_or("")
                    .to_string();
                rows.push((
                    st.to_string(),
                    rule_name.to_string(),
                    query_text.to_string(),
                    a.clone(),
                    silenced,
                    fingerprint,
                ));
            }
        }
    }
    // Firing before pending, then by name.
    rows.sort_by(|x, y| (x.0 != "firing", &x.1).cmp(&(y.0 != "firing", &y.1)));
    let firing = rows.iter().filter(|r| r.0 == "firing").count();
    body.push_str(&format!(
        "<p class=\"stats\">{firing} firing · {} pending</p>",
        rows.len() - firing
    ));
    if rows.is_empty() {
        body.push_str("<p class=\"empty\">No alerts are firing or pending.</p>");
    }
    for (st, rule_name, query_text, a, silenced, fingerprint) in &rows {
        let empty = Map::new();
        let labels = a["labels"].as_object().unwrap_or(&empty);
        let graph_url = format!(
            "/graph?{}",
            graph::panels_query(&[graph::Panel {
                expr: query_text.clone(),
                tab: 1,
                ..graph::Panel::default()
            }])
        );
        body.push_str(&format!(
            "<article class=\"alert {st}\"><header><span class=\"state {st}\">{st_text}</span> \
             <strong class=\"alertname\">{name}</strong></header>{chips}\
             <dl><dt>Value</dt><dd>{value}</dd><dt>Active since</dt><dd>{active}</dd>",
            st = esc(st),
            st_text = esc(&st.to_uppercase()),
            name = esc(rule_name),
            chips = label_chips(labels),
            value = esc(a["value"].as_str().unwrap_or("")),
            active = esc(&since(a["activeAt"].as_str().unwrap_or(""), now)),
        ));
        for (k, v) in a["annotations"].as_object().into_iter().flatten() {
            body.push_str(&format!(
                "<dt>{}</dt><dd>{}</dd>",
                esc(k),
                esc(v.as_str().unwrap_or(""))
            ));
        }
        body.push_str("</dl><p class=\"actions\">");
        body.push_str(&format!(
            "<a class=\"button\" href=\"{}\">Graph: <code>{}</code></a> ",
            esc(&graph_url),
            esc(query_text)
        ));
        if !silenced.is_empty() {
            body.push_str("<span class=\"muted\">Silenced by ");
            for id in silenced {
                body.push_str(&format!(
                    "<a href=\"/silences#s-{id}\">{id}</a> ",
                    id = esc(id)
                ));
            }
            body.push_str("</span>");
        } else if admin {
            body.push_str(&format!(
                "<a class=\"button\" href=\"{}\">Silence</a>",
                esc(&silence_link(labels, rule_name))
            ));
        } else {
            body.push_str("<span class=\"hint\">Log in with the admin token to silence.</span>");
        }
        body.push_str("</p>");
        // Acknowledge: only alerts alerting holds (firing ones).
        if let Some((_, who, at, comment)) = ack_of(fingerprint) {
            body.push_str(&format!(
                "<p class=\"actions\">{}</p>",
                incidents::ack_line(who, at, comment, now)
            ));
        } else if admin && st == "firing" && !fingerprint.is_empty() {
            body.push_str(&format!(
                "<div class=\"actions\">{}</div>",
                incidents::ack_form(fingerprint, &ctx.session.csrf)
            ));
        }
        body.push_str("</article>");
    }
    // Alerts posted from outside the rules.
    let others: Vec<&Value> = am
        .iter()
        .filter(|a| !covered.iter().any(|c| std::ptr::eq(*c, *a)))
        .collect();
    if !others.is_empty() && state_filter != "pending" {
        body.push_str(&format!(
            "<h2>Received from other sources ({})</h2><table class=\"sortable\"><thead><tr>\
             <th><button type=\"button\" class=\"sort\" data-col=\"0\">Labels</button></th>\
             <th><button type=\"button\" class=\"sort\" data-col=\"1\">State</button></th>\
             <th><button type=\"button\" class=\"sort\" data-col=\"2\">Since</button></th><th>Source</th><th>Acknowledged</th></tr></thead><tbody>",
            others.len()
        ));
        for a in others {
            let empty = Map::new();
            let labels = a["labels"].as_object().unwrap_or(&empty);
            let source = a["generatorURL"]
                .as_str()
                .and_then(html::safe_href)
                .map(|u| format!("<a href=\"{}\">source</a>", esc(u)))
                .unwrap_or_default();
            let fp = a["fingerprint"].as_str().unwrap_or("");
            let ack = match ack_of(fp) {
                Some((_, who, at, comment)) => incidents::ack_line(who, at, comment, now),
                None if admin && a["status"]["state"] == "active" => {
                    incidents::ack_form(fp, &ctx.session.csrf)
                }
                None => String::new(),
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{source}</td><td>{ack}</td></tr>",
                label_chips(labels),
                esc(a["status"]["state"].as_str().unwrap_or("")),
                esc(&since(a["startsAt"].as_str().unwrap_or(""), now)),
            ));
        }
        body.push_str("</tbody></table>");
    }
    html::page(&ctx, "Alerts", "/alerts", &body, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_quote_values() {
        let l = serde_json::json!({"alertname": "A", "path": "C:\\x \"y\""});
        let m = matchers_for(l.as_object().expect("object"));
        assert_eq!(m, vec!["alertname=\"A\"", "path=\"C:\\\\x \\\"y\\\"\""]);
    }
}
