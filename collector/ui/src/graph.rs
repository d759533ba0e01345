//! `/graph`: Prometheus's expression browser with its URL parameters
//! (`g0.expr`, `g0.tab` 0 graph / 1 table, `g0.range_input`,
//! `g0.end_input`, `g0.step_input`, `g0.moment_input`, `g0.stacked`, and
//! more panels as `g1.…`; Prometheus 3's `g0.tab=graph|table` and
//! `g0.display_mode=stacked` too). The whole page is one GET form, so Enter runs the
//! query and the address bar always holds a URL that reproduces the view.
//! Tables are rendered here; the chart is drawn by `vigil.js` with uPlot
//! from the range query API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use crate::Ui;
use crate::html::{self, esc, q};
use crate::session::parse_form;
use crate::time::{format_duration_ms, format_time_ms, parse_duration_ms, parse_time_ms};

/// Most rows a table shows; the stats say how many there were.
const MAX_ROWS: usize = 10_000;
/// Most names in the page's own completion list, which serves browsers
/// without script; the script completes from the full lists of the API.
const MAX_COMPLETIONS: usize = 1_000;

/// One panel's parameters, as in the URL.
#[derive(Debug, Default, Clone)]
pub struct Panel {
    pub expr: String,
    /// 0 graph, 1 table.
    pub tab: u8,
    pub range_input: String,
    pub end_input: String,
    pub step_input: String,
    pub moment_input: String,
    pub stacked: bool,
}

/// Panels by index from the query string, plus the control buttons
/// (`add`, `remove`) that only shape the next URL.
pub fn parse_panels(pairs: &[(String, String)]) -> (Vec<Panel>, bool, Option<usize>) {
    let mut panels: BTreeMap<usize, Panel> = BTreeMap::new();
    let mut add = false;
    let mut remove = None;
    for (k, v) in pairs {
        if k == "add_panel" {
            add = true;
            continue;
        }
        if k == "remove_panel" {
            remove = v.parse().ok();
            continue;
        }
        let Some(rest) = k.strip_prefix('g') else {
            continue;
        };
        let Some((idx, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(idx) = idx.parse::<usize>() else {
            continue;
        };
        if idx > 100 {
            continue;
        }
        let p = panels.entry(idx).or_insert_with(|| Panel {
            tab: 1,
            ..Panel::default()
        });
        match field {
            "expr" => p.expr = v.clone(),
            // Prometheus 2 writes 0/1, Prometheus 3 graph/table.
            "tab" => p.tab = if v == "0" || v == "graph" { 0 } else { 1 },
            // Prometheus 3's way of saying stacked.
            "display_mode" => p.stacked = v == "stacked",
            "range_input" => p.range_input = v.clone(),
            "end_input" => p.end_input = v.clone(),
            "step_input" => p.step_input = v.clone(),
            "moment_input" => p.moment_input = v.clone(),
            "stacked" => p.stacked = v == "1",
            _ => {}
        }
    }
    (panels.into_values().collect(), add, remove)
}

/// The canonical query string of `panels`.
pub fn panels_query(panels: &[Panel]) -> String {
    let mut out = Vec::new();
    for (i, p) in panels.iter().enumerate() {
        out.push(format!("g{i}.expr={}", q(&p.expr)));
        out.push(format!("g{i}.tab={}", p.tab));
        if p.stacked {
            out.push(format!("g{i}.stacked=1"));
        }
        for (name, v) in [
            ("range_input", &p.range_input),
            ("end_input", &p.end_input),
            ("step_input", &p.step_input),
            ("moment_input", &p.moment_input),
        ] {
            if !v.is_empty() {
                out.push(format!("g{i}.{name}={}", q(v)));
            }
        }
    }
    out.join("&")
}

/// `GET /graph`
pub async fn graph(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let here = if raw.is_empty() {
        "/graph".to_string()
    } else {
        format!("/graph?{raw}")
    };
    let ctx = match ui.ctx(&headers, &here) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (mut panels, add, remove) = parse_panels(&parse_form(raw.as_bytes()));
    if add || remove.is_some() {
        if let Some(i) = remove
            && i < panels.len()
        {
            panels.remove(i);
        }
        if add {
            panels.push(Panel {
                tab: 1,
                ..Panel::default()
            });
        }
        return html::redirect(&format!("/graph?{}", panels_query(&panels)));
    }
    if panels.is_empty() {
        panels.push(Panel {
            tab: 1,
            ..Panel::default()
        });
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut body =
        String::from("<form class=\"graph\" method=\"get\" action=\"/graph\" id=\"graph-form\">");
    for (i, p) in panels.iter().enumerate() {
        body.push_str(&render_panel(&ui, i, p, panels.len(), now_ms).await);
    }
    body.push_str(
        "<p class=\"actions\"><button type=\"submit\" name=\"add_panel\" value=\"1\">Add panel</button></p></form>",
    );
    body.push_str(&completions(&ui).await);
    html::page(
        &ctx,
        "Graph",
        "/graph",
        &body,
        &["uplot.min.css", "uplot.min.js"],
    )
}

async fn render_panel(ui: &Ui, i: usize, p: &Panel, count: usize, now_ms: i64) -> String {
    let checked = |on: bool| if on { " checked" } else { "" };
    let mut s = format!(
        "<section class=\"panel\" id=\"panel-{i}\" aria-label=\"Panel {n}\">\
         <div class=\"exprrow\">\
         <input class=\"expr\" type=\"text\" name=\"g{i}.expr\" value=\"{expr}\" list=\"completions\" \
          placeholder=\"Expression (Enter runs it)\" aria-label=\"Expression\" autocomplete=\"off\" \
          spellcheck=\"false\" autocapitalize=\"off\"{autofocus}>\
         <button type=\"submit\" class=\"primary\">Execute</button>",
        n = i + 1,
        expr = esc(&p.expr),
        autofocus = if i == 0 { " autofocus" } else { "" },
    );
    if count > 1 {
        s.push_str(&format!(
            "<button type=\"submit\" name=\"remove_panel\" value=\"{i}\" title=\"Remove this panel\">Remove</button>"
        ));
    }
    s.push_str(&format!(
        "</div><div class=\"tabs\" role=\"radiogroup\" aria-label=\"View\">\
         <label><input type=\"radio\" class=\"autosubmit\" name=\"g{i}.tab\" value=\"1\"{t1}> Table</label>\
         <label><input type=\"radio\" class=\"autosubmit\" name=\"g{i}.tab\" value=\"0\"{t0}> Graph</label></div>",
        t1 = checked(p.tab == 1),
        t0 = checked(p.tab == 0),
    ));
    // Both tabs' inputs are always in the form, so switching keeps them.
    s.push_str(&format!(
        "<div class=\"controls\"{hide_table}><label>Evaluation time \
         <input type=\"text\" name=\"g{i}.moment_input\" value=\"{moment}\" placeholder=\"now\" size=\"19\"></label></div>",
        hide_table = if p.tab == 1 { "" } else { " hidden" },
        moment = esc(&p.moment_input),
    ));
    s.push_str(&format!(
        "<div class=\"controls\"{hide_graph}>\
         <label>Range <input type=\"text\" name=\"g{i}.range_input\" value=\"{range}\" placeholder=\"1h\" size=\"6\"></label>\
         <label>End <input type=\"text\" name=\"g{i}.end_input\" value=\"{end}\" placeholder=\"now\" size=\"19\"></label>\
         <label>Step <input type=\"text\" name=\"g{i}.step_input\" value=\"{step}\" placeholder=\"auto\" size=\"6\"></label>\
         <label><input type=\"checkbox\" class=\"autosubmit\" name=\"g{i}.stacked\" value=\"1\"{stacked}> Stacked</label></div>",
        hide_graph = if p.tab == 0 { "" } else { " hidden" },
        range = esc(&p.range_input),
        end = esc(&p.end_input),
        step = esc(&p.step_input),
        stacked = checked(p.stacked),
    ));
    if p.expr.trim().is_empty() {
        s.push_str("</section>");
        return s;
    }
    if p.tab == 1 {
        s.push_str(&table(ui, p, now_ms).await);
    } else {
        s.push_str(&chart(p, now_ms));
    }
    s.push_str("</section>");
    s
}

/// The table tab: an instant query, rendered here.
async fn table(ui: &Ui, p: &Panel, now_ms: i64) -> String {
    let at = if p.moment_input.trim().is_empty() {
        now_ms
    } else {
        match parse_time_ms(&p.moment_input) {
            Some(t) => t,
            None => {
                return html::error_box(
                    &format!("evaluation time {:?} is not a time", p.moment_input),
                    "",
                );
            }
        }
    };
    let started = Instant::now();
    let answer = ui
        .get(&format!(
            "/api/v1/query?query={}&time={}",
            q(&p.expr),
            at as f64 / 1000.0
        ))
        .await;
    let elapsed = started.elapsed();
    let data = match answer.data() {
        Ok(d) => d,
        Err(e) => return html::error_box(&e, &p.expr),
    };
    let result_type = data["resultType"].as_str().unwrap_or("");
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut samples = 0usize;
    match result_type {
        "vector" => {
            for r in data["result"].as_array().into_iter().flatten() {
                samples += 1;
                rows.push((
                    series_name(&r["metric"]),
                    r["value"][1].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        "matrix" => {
            for r in data["result"].as_array().into_iter().flatten() {
                let values: Vec<String> = r["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        samples += 1;
                        format!(
                            "{} @{}",
                            v[1].as_str().unwrap_or(""),
                            v[0].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect();
                rows.push((series_name(&r["metric"]), values.join("\n")));
            }
        }
        "scalar" | "string" => {
            samples = 1;
            rows.push((
                "scalar".into(),
                data["result"][1].as_str().unwrap_or("").to_string(),
            ));
        }
        _ => {}
    }
    let total = rows.len();
    let mut s = format!(
        "<p class=\"stats\">Load time: {} ms · Result series: {total} · Samples: {samples} · Evaluated at {} UTC</p>",
        elapsed.as_millis(),
        format_time_ms(at)
    );
    if rows.is_empty() {
        s.push_str("<p class=\"empty\">Empty query result</p>");
        return s;
    }
    s.push_str(
        "<table class=\"result sortable\"><thead><tr>\
         <th><button type=\"button\" class=\"sort\" data-col=\"0\">Series</button></th>\
         <th class=\"num\"><button type=\"button\" class=\"sort\" data-col=\"1\">Value</button></th>\
         </tr></thead><tbody>",
    );
    for (name, value) in rows.iter().take(MAX_ROWS) {
        s.push_str(&format!(
            "<tr><td class=\"series\">{}</td><td class=\"num\">{}</td></tr>",
            esc(name),
            esc(value)
        ));
    }
    s.push_str("</tbody></table>");
    if total > MAX_ROWS {
        s.push_str(&format!(
            "<p class=\"hint\">Showing {MAX_ROWS} of {total} series.</p>"
        ));
    }
    s
}

/// `name{a="x", b="y"}` as Prometheus's table shows a series.
pub fn series_name(metric: &Value) -> String {
    let Some(m) = metric.as_object() else {
        return "{}".into();
    };
    let name = m.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = m
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v.as_str().unwrap_or(""))))
        .collect();
    if labels.is_empty() && !name.is_empty() {
        return name.to_string();
    }
    format!("{name}{{{}}}", labels.join(", "))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The graph tab: a placeholder the script fills from the range API.
fn chart(p: &Panel, now_ms: i64) -> String {
    let range_ms = if p.range_input.trim().is_empty() {
        3_600_000
    } else {
        match parse_duration_ms(&p.range_input) {
            Some(r) => r,
            None => {
                return html::error_box(
                    &format!("range {:?} is not a duration (e.g. 1h, 30m)", p.range_input),
                    "",
                );
            }
        }
    };
    let end_ms = if p.end_input.trim().is_empty() {
        now_ms
    } else {
        match parse_time_ms(&p.end_input) {
            Some(t) => t,
            None => {
                return html::error_box(
                    &format!(
                        "end {:?} is not a time (YYYY-MM-DD HH:MM:SS, UTC)",
                        p.end_input
                    ),
                    "",
                );
            }
        }
    };
    // Prometheus's UI default: about 250 points across the range.
    let step_ms = if p.step_input.trim().is_empty() {
        (range_ms / 250 / 1000).max(1) * 1000
    } else {
        match parse_duration_ms(&p.step_input) {
            Some(s) => s,
            None => {
                return html::error_box(&format!("step {:?} is not a duration", p.step_input), "");
            }
        }
    };
    // The last point falls on the end itself, so the newest samples show.
    let start_ms = end_ms - (range_ms / step_ms.max(1)) * step_ms;
    format!(
        "<p class=\"stats chart-stats\" aria-live=\"polite\">Range {} ending {} UTC, step {}</p>\
         <div class=\"chart-error\"></div>\
         <div class=\"chart\" data-expr=\"{}\" data-start=\"{}\" data-end=\"{}\" data-step=\"{}\" data-stacked=\"{}\"></div>",
        format_duration_ms(range_ms),
        format_time_ms(end_ms),
        format_duration_ms(step_ms),
        esc(&p.expr),
        start_ms as f64 / 1000.0,
        end_ms as f64 / 1000.0,
        step_ms as f64 / 1000.0,
        if p.stacked { 1 } else { 0 },
    )
}

/// PromQL functions offered for completion.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "day_of_month",
    "day_of_week",
    "delta",
    "deriv",
    "exp",
    "floor",
    "group",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log2",
    "log10",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "minute",
    "month",
    "predict_linear",
    "present_over_time",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stddev_over_time",
    "stdvar",
    "stdvar_over_time",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "vector",
    "year",
];

/// A `<datalist>` of metric names, label names and functions for the
/// expression box.
async fn completions(ui: &Ui) -> String {
    // Functions first: the script takes its function list from here.
    let mut names: Vec<String> = FUNCTIONS.iter().map(|f| format!("{f}(")).collect();
    if let Ok(Value::Array(v)) = ui.get("/api/v1/label/__name__/values").await.data() {
        names.extend(v.iter().filter_map(|n| n.as_str().map(String::from)));
    }
    if let Ok(Value::Array(v)) = ui.get("/api/v1/labels").await.data() {
        names.extend(
            v.iter()
                .filter_map(|n| n.as_str())
                .filter(|n| *n != "__name__")
                .map(|n| format!("{{{n}=\"\"}}")),
        );
    }
    let mut s = String::from("<datalist id=\"completions\">");
    for n in names.iter().take(MAX_COMPLETIONS) {
        s.push_str(&format!("<option value=\"{}\">", esc(n)));
    }
    s.push_str("</datalist>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse_form(q.as_bytes())
    }

    #[test]
    fn prometheus_parameters_parse_and_round_trip() {
        let (p, add, rm) = parse_panels(&pairs(
            "g0.expr=rate(x%5B5m%5D)&g0.tab=0&g0.range_input=2h&g0.stacked=1&g1.expr=up&g1.tab=1",
        ));
        assert!(!add && rm.is_none());
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].expr, "rate(x[5m])");
        assert_eq!(p[0].tab, 0);
        assert!(p[0].stacked);
        assert_eq!(p[0].range_input, "2h");
        assert_eq!(p[1].tab, 1);
        let p3 = parse_panels(&pairs(
            "g0.expr=up&g0.tab=graph&g0.display_mode=stacked&g1.tab=table",
        ))
        .0;
        assert_eq!((p3[0].tab, p3[0].stacked, p3[1].tab), (0, true, 1));
        let again = parse_panels(&pairs(&panels_query(&p))).0;
        assert_eq!(again[0].expr, p[0].expr);
        assert_eq!(again[1].expr, "up");
    }

    #[test]
    fn series_names_are_prometheus_style() {
        let m = serde_json::json!({"__name__": "up", "job": "a\"b"});
        assert_eq!(series_name(&m), "up{job=\"a\\\"b\"}");
        assert_eq!(series_name(&serde_json::json!({"__name__": "up"})), "up");
        assert_eq!(series_name(&serde_json::json!({})), "{}");
    }
}
