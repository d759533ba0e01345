//! The read-only pages: `/rules`, `/agents` and `/status`, rendered from
//! the API's JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::html::{self, esc, label_chips};
use crate::time::since;
use crate::{Ui, graph};

/// `GET /`: the expression browser, as in Prometheus.
pub async fn root() -> Response {
    html::redirect("/graph")
}

fn graph_link(expr: &str, tab: u8) -> String {
    format!(
        "/graph?{}",
        graph::panels_query(&[graph::Panel {
            expr: expr.to_string(),
            tab,
            ..graph::Panel::default()
        }])
    )
}

/// `GET /rules`: groups with their threshold, recording and anomaly rules.
pub async fn rules(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let ctx = match ui.ctx(&headers, "/rules") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = chrono::Utc::now();
    let mut body = String::from("<h1>Rules</h1>");
    let groups = match ui.get("/api/v1/rules").await.data() {
        Ok(d) => d["groups"].as_array().cloned().unwrap_or_default(),
        Err(e) => {
            body.push_str(&html::error_box(&e, ""));
            Vec::new()
        }
    };
    if groups.is_empty() {
        body.push_str("<p class=\"empty\">No rule groups are loaded.</p>");
    }
    let empty = Map::new();
    for g in &groups {
        body.push_str(&format!(
            "<section class=\"group\"><h2>{name}</h2><p class=\"stats\">{file} · every {interval}s · \
             last evaluation {last} · took {took:.3}s</p>\
             <table class=\"sortable\"><thead><tr>\
             <th><button type=\"button\" class=\"sort\" data-col=\"0\">Rule</button></th>\
             <th><button type=\"button\" class=\"sort\" data-col=\"1\">Health</button></th>\
             <th><button type=\"button\" class=\"sort\" data-col=\"2\">State</button></th>\
             <th>Expression</th><th>Last evaluation</th><th>Error</th></tr></thead><tbody>",
            name = esc(g["name"].as_str().unwrap_or("")),
            file = esc(g["file"].as_str().unwrap_or("")),
            interval = g["interval"].as_f64().unwrap_or(0.0),
            last = esc(&since(g["lastEvaluation"].as_str().unwrap_or(""), now)),
            took = g["evaluationTime"].as_f64().unwrap_or(0.0),
        ));
        // Anomaly rules come as alerting rules in groups of their own files.
        let anomaly_file = g["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(".anomaly.yml") || f.ends_with(".anomaly.yaml"));
        for r in g["rules"].as_array().into_iter().flatten() {
            let kind = match r["type"].as_str().unwrap_or("") {
                "alerting" if anomaly_file => "anomaly",
                k => k,
            };
            let query_text = r["query"].as_str().unwrap_or("");
            let health = r["health"].as_str().unwrap_or("unknown");
            let mut extra = String::new();
            if kind == "anomaly" {
                extra.push_str(" <a href=\"/anomalies\">scores</a>");
            }
            if kind == "alerting" || kind == "anomaly" {
                let d = r["duration"].as_f64().unwrap_or(0.0);
                if d > 0.0 {
                    extra.push_str(&format!(" <span class=\"hint\">for {d}s</span>"));
                }
                let labels = r["labels"].as_object().unwrap_or(&empty);
                if !labels.is_empty() {
                    extra.push_str(&label_chips(labels));
                }
            }
            body.push_str(&format!(
                "<tr><td><span class=\"kind\">{kind}</span> <strong>{name}</strong>{extra}</td>\
                 <td><span class=\"health {health}\">{health}</span></td><td>{state}</td>\
                 <td><a href=\"{href}\"><code>{query}</code></a></td><td>{last}</td>\
                 <td class=\"error-text\">{err}</td></tr>",
                kind = esc(kind),
                name = esc(r["name"].as_str().unwrap_or("")),
                health = esc(health),
                state = esc(r["state"].as_str().unwrap_or("")),
                href = esc(&graph_link(query_text, 1)),
                query = esc(query_text),
                last = esc(&since(r["lastEvaluation"].as_str().unwrap_or(""), now)),
                err = esc(r["lastError"].as_str().unwrap_or("")),
            ));
        }
        body.push_str("</tbody></table></section>");
    }
    html::page(&ctx, "Rules", "/rules", &body, &[])
}

/// A JSON value as table text.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An array of objects as a sortable table, columns from the first keys seen.
fn object_table(rows: &[Value]) -> String {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.as_object().into_iter().flat_map(|o| o.keys()) {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let mut s = String::from("<table class=\"sortable\"><thead><tr>");
    for (i, c) in cols.iter().enumerate() {
        s.push_str(&format!(
            "<th><button type=\"button\" class=\"sort\" data-col=\"{i}\">{}</button></th>",
            esc(c)
        ));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for c in &cols {
            s.push_str(&format!("<td>{}</td>", esc(&cell(&r[c.as_str()]))));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// `GET /agents`: pushing agents (from the agents API where the collector
/// has one) and every `up` series with the time of its last sample.
pub async fn agents(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let ctx = match ui.ctx(&headers, "/agents") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut body = String::from("<h1>Agents and targets</h1>");
    let answer = ui.get("/api/vigil/v1/agents").await;
    if answer.status.is_success() {
        let data = if answer.json["status"] == "success" {
            answer.json["data"].clone()
        } else {
            answer.json.clone()
        };
        let rows = match &data {
            Value::Array(v) => v.clone(),
            Value::Object(o) => o
                .get("agents")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        body.push_str(&format!("<h2>Pushing agents ({})</h2>", rows.len()));
        if rows.is_empty() {
            body.push_str("<p class=\"empty\">No agent has pushed yet.</p>");
        } else if rows
            .iter()
            .all(|r| r.get("job").is_some() && r.get("up").is_some())
        {
            body.push_str(&agents_table(&rows, chrono::Utc::now()));
        } else {
            body.push_str(&object_table(&rows));
        }
    }
    // `up` and the age of its last sample, for scrape targets and agents
    // alike.
    let up = ui
        .get(&format!("/api/v1/query?query={}", html::q("up")))
        .await
        .data();
    let ts = ui
        .get(&format!(
            "/api/v1/query?query={}",
            html::q("time() - timestamp(up)")
        ))
        .await
        .data();
    body.push_str("<h2>Targets (<code>up</code>)</h2>");
    match (up, ts) {
        (Ok(up), Ok(ts)) => {
            let ages: Vec<(Value, String)> = ts["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        r["metric"].clone(),
                        r["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let results = up["result"].as_array().cloned().unwrap_or_default();
            if results.is_empty() {
                body.push_str(
                    "<p class=\"empty\">No <code>up</code> series in the last five minutes.</p>",
                );
            } else {
                body.push_str(
                    "<table class=\"sortable\"><thead><tr>\
                     <th><button type=\"button\" class=\"sort\" data-col=\"0\">Job</button></th>\
                     <th><button type=\"button\" class=\"sort\" data-col=\"1\">Instance</button></th>\
                     <th><button type=\"button\" class=\"sort\" data-col=\"2\">Health</button></th>\
                     <th class=\"num\"><button type=\"button\" class=\"sort\" data-col=\"3\">Last sample (s ago)</button></th>\
                     <th>Labels</th></tr></thead><tbody>",
                );
                for r in &results {
                    let m = &r["metric"];
                    let v = r["value"][1].as_str().unwrap_or("");
                    let health = if v == "1" { "up" } else { "down" };
                    let mut without_name = m.clone();
                    if let Some(o) = without_name.as_object_mut() {
                        o.remove("__name__");
                    }
                    let age = ages
                        .iter()
                        .find(|(am, _)| *am == without_name)
                        .and_then(|(_, a)| a.parse::<f64>().ok())
                        .map(|a| format!("{a:.0}"))
                        .unwrap_or_default();
                    let empty = Map::new();
                    body.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td><td><span class=\"health {health}\">{health}</span></td>\
                         <td class=\"num\">{age}</td><td>{}</td></tr>",
                        esc(m["job"].as_str().unwrap_or("")),
                        esc(m["instance"].as_str().unwrap_or("")),
                        label_chips(without_name.as_object().unwrap_or(&empty)),
                    ));
                }
                body.push_str("</tbody></table>");
            }
        }
        (Err(e), _) | (_, Err(e)) => body.push_str(&html::error_box(&e, "")),
    }
    html::page(&ctx, "Agents", "/agents", &body, &[])
}

/// The agents API's rows: job, instance, health, last push, interval.
fn agents_table(rows: &[Value], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut s = String::from(
        "<table class=\"sortable agents\"><thead><tr>\
         <th><button type=\"button\" class=\"sort\" data-col=\"0\">Job</button></th>\
         <th><button type=\"button\" class=\"sort\" data-col=\"1\">Instance</button></th>\
         <th><button type=\"button\" class=\"sort\" data-col=\"2\">Health</button></th>\
         <th><button type=\"button\" class=\"sort\" data-col=\"3\">Last push</button></th>\
         <th class=\"num\"><button type=\"button\" class=\"sort\" data-col=\"4\">Interval (s)</button></th>\
         <th class=\"num\"><button type=\"button\" class=\"sort\" data-col=\"5\">Pushes</button></th>\
         <th>Down since</th></tr></thead><tbody>",
    );
    for r in rows {
        let up = r["up"].as_bool().unwrap_or(false);
        let health = if up { "up" } else { "down" };
        let down_since = r["downSince"]
            .as_str()
            .map(|t| since(t, now))
            .unwrap_or_default();
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><span class=\"health {health}\">{health}</span></td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&cell(&r["job"])),
            esc(&cell(&r["instance"])),
            esc(&since(r["lastPush"].as_str().unwrap_or(""), now)),
            esc(&cell(&r["pushIntervalSeconds"])),
            esc(&cell(&r["pushes"])),
            esc(&down_since),
        ));
    }
    s.push_str("</tbody></table>");
    s
}

fn top_table(title: &str, rows: &Value, limit: usize) -> String {
    let mut s = format!(
        "<section class=\"top\"><h3>{}</h3><table><thead><tr><th>Name</th><th class=\"num\">Count</th></tr></thead><tbody>",
        esc(title)
    );
    for r in rows.as_array().into_iter().flatten().take(limit) {
        s.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(r["name"].as_str().unwrap_or("")),
            esc(&cell(&r["value"]))
        ));
    }
    s.push_str("</tbody></table></section>");
    s
}

/// `GET /status`: build, start time, flags, configuration (secrets
/// redacted by the collector) and TSDB cardinality.
pub async fn status(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let ctx = match ui.ctx(&headers, "/status") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = chrono::Utc::now();
    let mut body = String::from("<h1>Status</h1><h2>Build</h2><dl>");
    if let Ok(b) = ui.get("/api/v1/status/buildinfo").await.data() {
        for (k, label) in [
            ("vigilVersion", "Vigil version"),
            ("version", "Prometheus API version"),
            ("revision", "Revision"),
        ] {
            body.push_str(&format!("<dt>{label}</dt><dd>{}</dd>", esc(&cell(&b[k]))));
        }
    }
    body.push_str(&format!(
        "<dt>Started</dt><dd>{}</dd></dl>",
        esc(&since(&ui.started.to_rfc3339(), now))
    ));
    body.push_str("<h2>TSDB</h2>");
    match ui.get("/api/v1/status/tsdb?limit=10").await.data() {
        Ok(t) => {
            let h = &t["headStats"];
            body.push_str(&format!(
                "<dl><dt>Series</dt><dd>{}</dd><dt>Label pairs</dt><dd>{}</dd><dt>Chunks</dt><dd>{}</dd></dl><div class=\"tops\">",
                esc(&cell(&h["numSeries"])),
                esc(&cell(&h["numLabelPairs"])),
                esc(&cell(&h["chunkCount"])),
            ));
            body.push_str(&top_table(
                "Top metrics by series",
                &t["seriesCountByMetricName"],
                10,
            ));
            body.push_str(&top_table(
                "Top labels by value count",
                &t["labelValueCountByLabelName"],
                10,
            ));
            body.push_str(&top_table(
                "Top label pairs by series",
                &t["seriesCountByLabelValuePair"],
                10,
            ));
            body.push_str(&top_table(
                "Top labels by memory (bytes)",
                &t["memoryInBytesByLabelName"],
                10,
            ));
            body.push_str("</div>");
        }
        Err(e) => body.push_str(&html::error_box(&e, "")),
    }
    body.push_str(&cluster_section(&ui.get("/api/v2/status").await.json));
    body.push_str("<h2>Flags</h2><table><tbody>");
    for (k, v) in &ui.opts.flags {
        body.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td><code>{}</code></td></tr>",
            esc(k),
            esc(v)
        ));
    }
    body.push_str("</tbody></table><h2>Configuration</h2>");
    body.push_str(&format!(
        "<pre class=\"config\">{}</pre>",
        esc(&ui.opts.config_text)
    ));
    html::page(&ctx, "Status", "/status", &body, &[])
}

/// The alerting cluster as `/api/v2/status` reports it: this member,
/// `ready` / `settling` / `disabled`, and the members with their gossip
/// addresses.
fn cluster_section(status: &Value) -> String {
    let c = &status["cluster"];
    let state = c["status"].as_str().unwrap_or("unknown");
    let mut s = format!("<h2>Cluster</h2><dl><dt>Status</dt><dd>{}</dd>", esc(state));
    if state == "disabled" {
        s.push_str("</dl><p>Running alone (no <code>--cluster-listen</code>).</p>");
        return s;
    }
    let me = c["name"].as_str().unwrap_or("");
    s.push_str(&format!(
        "<dt>Name</dt><dd><code>{}</code></dd></dl><table><thead><tr><th scope=\"col\">Member</th><th scope=\"col\">Address</th></tr></thead><tbody>",
        esc(me)
    ));
    for p in c["peers"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("");
        s.push_str(&format!(
            "<tr><td><code>{}</code>{}</td><td><code>{}</code></td></tr>",
            esc(name),
            if name == me { " (this member)" } else { "" },
            esc(p["address"].as_str().unwrap_or("")),
        ));
    }
    s.push_str("</tbody></table>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_section_lists_members_or_says_alone() {
        let alone = cluster_section(
            &serde_json::json!({"cluster": {"name": "", "peers": [], "status": "disabled"}}),
        );
        assert!(
            alone.contains("disabled") && alone.contains("Running alone"),
            "{alone}"
        );
        let three = cluster_section(&serde_json::json!({"cluster": {
            "name": "B", "status": "ready",
            "peers": [{"name": "A", "address": "10.0.0.1:9804"}, {"name": "B", "address": "10.0.0.2:9804"}]
        }}));
        assert!(three.contains("ready"));
        assert!(
            three.contains("<code>A</code></td><td><code>10.0.0.1:9804</code>"),
            "{three}"
        );
        assert!(three.contains("<code>B</code> (this member)"), "{three}");
    }

    #[test]
    fn agents_render_health_and_escape() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T17:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let rows = serde_json::json!([
            {"job": "vigil-agent", "instance": "<b>web-1</b>", "up": true,
             "lastPush": "2026-12-06T16:59:45Z", "pushIntervalSeconds": 15.0, "pushes": 40},
            {"job": "vigil-agent", "instance": "web-2", "up": false,
             "lastPush": "2026-12-06T16:50:00Z", "pushIntervalSeconds": 15.0, "pushes": 3,
             "downSince": "2026-12-06T16:51:00Z"}
        ]);
        let html = agents_table(rows.as_array().expect("array"), now);
        assert!(html.contains("&lt;b&gt;web-1&lt;/b&gt;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("<span class=\"health up\">up</span>"));
        assert!(html.contains("<span class=\"health down\">down</span>"));
        assert!(html.contains("(15s ago)"), "{html}");
        assert!(html.contains("2026-12-06 16:51:00 UTC (9m ago)"), "{html}");
    }
}
