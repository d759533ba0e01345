//! `/anomalies`: every anomaly rule with a detector, its watched series and
//! their latest anomaly score; each series links to a `/graph` view of three
//! panels over time: the series' value (the rule's expression narrowed to
//! that series), its `vigil_anomaly_score`, and the `ALERTS` it raised (the
//! flagged points). The view is a plain `/graph` URL, so it can be shared.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::Ui;
use crate::graph::{Panel, panels_query};
use crate::html::{self, esc, label_chips, q};
use crate::session::{field, parse_form};

/// A PromQL string literal.
fn lit(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// The `/graph` panels for one scored series. `labels` are the score
/// series' labels without `__name__` and `rule`.
pub fn anomaly_view(rule: &str, expr: &str, labels: &Map<String, Value>, range: &str) -> String {
    let selector: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", lit(v.as_str().unwrap_or(""))))
        .collect();
    let mut score = vec![format!("rule={}", lit(rule))];
    score.extend(selector.iter().cloned());
    let mut alerts = vec![format!("alertname={}", lit(rule))];
    alerts.extend(selector.iter().cloned());
    let on: Vec<&str> = labels.keys().map(String::as_str).collect();
    let value = if expr.is_empty() {
        String::new()
    } else if on.is_empty() {
        expr.to_string()
    } else {
        format!(
            "({expr}) and on({}) vigil_anomaly_score{{{}}}",
            on.join(", "),
            score.join(", ")
        )
    };
    let panel = |e: String| Panel {
        expr: e,
        tab: 0,
        range_input: range.to_string(),
        ..Panel::default()
    };
    let mut panels = Vec::new();
    if !value.is_empty() {
        panels.push(panel(value));
    }
    panels.push(panel(format!(
        "vigil_anomaly_score{{{}}}",
        score.join(", ")
    )));
    panels.push(panel(format!("ALERTS{{{}}}", alerts.join(", "))));
    format!("/graph?{}", panels_query(&panels))
}

/// The expression of alerting rule `name`, from `/api/v1/rules`.
fn rule_expr(rules: &Value, name: &str) -> String {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .find(|r| r["name"] == name && r["type"] == "alerting")
        .and_then(|r| r["query"].as_str())
        .unwrap_or("")
        .to_string()
}

/// `GET /anomalies[?range=6h]`
pub async fn anomalies(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match ui.ctx(&headers, "/anomalies") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let query = parse_form(raw.unwrap_or_default().as_bytes());
    let range = field(&query, "range").unwrap_or("6h").to_string();
    let mut body = format!(
        "<h1>Anomalies</h1><form class=\"filters\" method=\"get\" action=\"/anomalies\">\
         <label>Range <input type=\"text\" name=\"range\" value=\"{}\" size=\"6\"></label> \
         <button type=\"submit\">Apply</button></form>",
        esc(&range)
    );
    let rules = ui
        .get("/api/v1/rules?type=alert")
        .await
        .data()
        .unwrap_or(Value::Null);
    let scores = ui
        .get(&format!("/api/v1/query?query={}", q("vigil_anomaly_score")))
        .await
        .data();
    let mut series: Vec<(String, Map<String, Value>, String)> = match scores {
        Ok(d) => d["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let mut m = r["metric"].as_object()?.clone();
                m.remove("__name__");
                let rule = m.remove("rule")?.as_str()?.to_string();
                Some((rule, m, r["value"][1].as_str().unwrap_or("").to_string()))
            })
            .collect(),
        Err(e) => {
            body.push_str(&html::error_box(&e, ""));
            Vec::new()
        }
    };
    series.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    if series.is_empty() {
        body.push_str(
            "<p class=\"empty\">No anomaly scores yet: anomaly rules score a series once its detector has seen enough points.</p>",
        );
    }
    let mut current = None;
    for (rule, labels, score) in &series {
        if current != Some(rule) {
            if current.is_some() {
                body.push_str("</tbody></table></section>");
            }
            current = Some(rule);
            let expr = rule_expr(&rules, rule);
            body.push_str(&format!(
                "<section class=\"group\"><h2>{}</h2><p class=\"stats\"><code>{}</code></p>\
                 <table class=\"sortable\"><thead><tr>\
                 <th><button type=\"button\" class=\"sort\" data-col=\"0\">Series</button></th>\
                 <th class=\"num\"><button type=\"button\" class=\"sort\" data-col=\"1\">Latest score</button></th>\
                 <th>Over time</th></tr></thead><tbody>",
                esc(rule),
                esc(&expr)
            ));
        }
        let expr = rule_expr(&rules, rule);
        body.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td><a href=\"{}\">value, score and alerts</a></td></tr>",
            label_chips(labels),
            esc(score),
            esc(&anomaly_view(rule, &expr, labels, &range)),
        ));
    }
    if current.is_some() {
        body.push_str("</tbody></table></section>");
    }
    html::page(&ctx, "Anomalies", "/anomalies", &body, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_narrows_the_expression_to_the_series() {
        let labels = serde_json::json!({"instance": "a\"b"});
        let url = anomaly_view(
            "CpuAnomaly",
            "rate(x[5m])",
            labels.as_object().expect("object"),
            "6h",
        );
        let (panels, _, _) =
            crate::graph::parse_panels(&parse_form(url.trim_start_matches("/graph?").as_bytes()));
        assert_eq!(panels.len(), 3);
        assert_eq!(
            panels[0].expr,
            "(rate(x[5m])) and on(instance) vigil_anomaly_score{rule=\"CpuAnomaly\", instance=\"a\\\"b\"}"
        );
        assert_eq!(
            panels[1].expr,
            "vigil_anomaly_score{rule=\"CpuAnomaly\", instance=\"a\\\"b\"}"
        );
        assert_eq!(
            panels[2].expr,
            "ALERTS{alertname=\"CpuAnomaly\", instance=\"a\\\"b\"}"
        );
        assert!(panels.iter().all(|p| p.tab == 0 && p.range_input == "6h"));
    }
}
