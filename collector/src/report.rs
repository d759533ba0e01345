//! Reports over a period, which the design documents ask for (performance,
//! MTTR and cost): the incidents with their time to acknowledge and to
//! resolve, the noisiest alerts, each SLO's error rate and the error budget
//! left, LLM spend per tenant and model against the budgets, and the agents
//! and scrape targets that went down.
//!
//! `vigil report` prints one as Markdown, HTML or JSON; the scheduled
//! digest ([`digest`]) mails and posts one. Every figure comes from PromQL
//! through a [`Source`], so the same report is built in-process by the
//! collector, against a collector's HTTP API, or against Prometheus itself.
//! Incidents come from the alerting store's history when the source has it,
//! otherwise from the `ALERTS` series the rules write (to the query step).

pub mod digest;
pub mod source;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use vigil_wire::Labels;

/// A range query's answer: each series' labels and points.
pub type Matrix = Vec<(Labels, Vec<(i64, f64)>)>;

/// Where the report's figures come from.
pub trait Source {
    /// An instant query at `at_ms`: each series' labels and value.
    fn instant(&self, expr: &str, at_ms: i64) -> Result<Vec<(Labels, f64)>, String>;
    /// A range query: each series' labels and points.
    fn range(&self, expr: &str, start_ms: i64, end_ms: i64, step_ms: i64)
    -> Result<Matrix, String>;
    /// The incidents the alerting store recorded in the period, when this
    /// source has that history; `None` derives them from `ALERTS`.
    fn incidents(&self, _from_ms: i64, _to_ms: i64) -> Result<Option<Vec<Incident>>, String> {
        Ok(None)
    }
}

/// One alert episode: from firing to resolution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub alertname: String,
    pub severity: String,
    /// The alert's labels without `__name__` and `alertstate`.
    pub labels: BTreeMap<String, String>,
    pub start_ms: i64,
    /// `None` while it still fires at the end of the period.
    pub end_ms: Option<i64>,
    /// When it was first acknowledged, if it was.
    pub acknowledged_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentSummary {
    pub count: usize,
    pub acknowledged: usize,
    pub resolved: usize,
    /// Mean time to acknowledge, over the acknowledged incidents.
    pub mtta_seconds: Option<f64>,
    /// Mean time to resolve, over the resolved incidents.
    pub mttr_seconds: Option<f64>,
    /// `alerting store` or `ALERTS series (to the step)`.
    pub history: String,
    pub list: Vec<Incident>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoisyAlert {
    pub alertname: String,
    pub episodes: usize,
    pub firing_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    pub service: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub objective: Option<f64>,
    /// The mean error ratio over the report's period.
    pub period_error_ratio: Option<f64>,
    /// That ratio over the error budget (1 means spending exactly on plan).
    pub period_burn_rate: Option<f64>,
    /// The share of the SLO window's error budget left at the period's end.
    pub budget_remaining: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spend {
    pub tenant: String,
    pub model: String,
    pub usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub budget: String,
    pub labels: BTreeMap<String, String>,
    pub monthly_usd: f64,
    pub month_to_date_usd: Option<f64>,
    pub forecast_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmSpend {
    pub total_usd: f64,
    pub by_tenant_model: Vec<Spend>,
    pub budgets: Vec<BudgetStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Downtime {
    pub job: String,
    pub instance: String,
    pub episodes: usize,
    pub down_seconds: f64,
    pub down_at_end: bool,
}

/// A whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// The range queries' resolution: episode starts and ends are exact
    /// to this.
    pub step_seconds: f64,
    pub incidents: IncidentSummary,
    pub noisiest_alerts: Vec<NoisyAlert>,
    pub slos: Vec<SloStatus>,
    pub llm_spend: LlmSpend,
    pub agents_down: Vec<Downtime>,
    /// Sections that could not be computed, with the reason (the report is
    /// still produced: a digest with a hole says so).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "markdown" | "md" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown report format {other:?} (markdown, html or json)"
            )),
        }
    }
}

/// How many rows the "noisiest alerts" table keeps.
const NOISIEST: usize = 10;

/// The range-query step for a period: at least 15 s (a usual evaluation
/// interval), and at most 10,000 points per series (Prometheus refuses
/// more than 11,000).
pub fn step_for(from_ms: i64, to_ms: i64) -> i64 {
    ((to_ms - from_ms) / 10_000).max(15_000)
}

/// Alerts that are not incidents: the always-firing `Watchdog` and
/// anything with `severity="none"` (dead-man's switches, info routing).
fn is_incident(labels: &Labels) -> bool {
    labels.get("alertname") != Some("Watchdog") && labels.get("severity") != Some("none")
}

fn label_map(labels: &Labels, skip: &[&str]) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|l| l.name != "__name__" && !skip.contains(&l.name.as_str()))
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Runs of consecutive points (no gap wider than one step) in each
/// series: `(labels, first point, the step after the last point or None
/// when the run reaches the period's end)`.
fn runs(
    series: &[(Labels, Vec<(i64, f64)>)],
    step_ms: i64,
    to_ms: i64,
    keep: impl Fn(f64) -> bool,
) -> Vec<(Labels, i64, Option<i64>)> {
    let mut out = Vec::new();
    for (labels, points) in series {
        let mut open: Option<(i64, i64)> = None;
        for &(t, v) in points {
            if !keep(v) {
                if let Some((start, last)) = open.take() {
                    out.push((labels.clone(), start, Some(last + step_ms)));
                }
                continue;
            }
            open = match open {
                Some((start, last)) if t - last <= step_ms => Some((start, t)),
                Some((start, last)) => {
                    out.push((labels.clone(), start, Some(last + step_ms)));
                    Some((t, t))
                }
                None => Some((t, t)),
            };
        }
        if let Some((start, last)) = open {
            let end = if to_ms - last < step_ms {
                None
            } else {
                Some(last + step_ms)
            };
            out.push((labels.clone(), start, end));
        }
    }
    out
}

/// Builds the report for `[from_ms, to_ms]`.
pub fn build(source: &dyn Source, from_ms: i64, to_ms: i64) -> Report {
    let step = step_for(from_ms, to_ms);
    let secs = ((to_ms - from_ms) / 1000).max(1);
    let mut errors = Vec::new();

    let (incidents, history) = match source.incidents(from_ms, to_ms) {
        Ok(Some(list)) => (list, "alerting store"),
        other => {
            if let Err(e) = other {
                errors.push(format!(
                    "incident history: {e}; derived from ALERTS instead"
                ));
            }
            let derived = source
                .range("ALERTS{alertstate=\"firing\"}", from_ms, to_ms, step)
                .map(|series| {
                    runs(&series, step, to_ms, |_| true)
                        .into_iter()
                        .filter(|(l, _, _)| is_incident(l))
                        .map(|(l, start, end)| Incident {
                            alertname: l.get("alertname").unwrap_or_default().to_string(),
                            severity: l.get("severity").unwrap_or_default().to_string(),
                            labels: label_map(&l, &["alertstate"]),
                            start_ms: start,
                            end_ms: end,
                            acknowledged_ms: None,
                        })
                        .collect::<Vec<_>>()
                });
            match derived {
                Ok(list) => (list, "ALERTS series (to the step)"),
                Err(e) => {
                    errors.push(format!("incidents: {e}"));
                    (Vec::new(), "unavailable")
                }
            }
        }
    };
    let mut incidents = incidents;
    incidents.sort_by(|a, b| {
        a.start_ms
            .cmp(&b.start_ms)
            .then(a.alertname.cmp(&b.alertname))
    });
    let mean = |xs: &[f64]| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    let tta: Vec<f64> = incidents
        .iter()
        .filter_map(|i| i.acknowledged_ms.map(|a| (a - i.start_ms) as f64 / 1000.0))
        .collect();
    let ttr: Vec<f64> = incidents
        .iter()
        .filter_map(|i| i.end_ms.map(|e| (e - i.start_ms) as f64 / 1000.0))
        .collect();

    let mut noisy: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for i in &incidents {
        let e = noisy.entry(&i.alertname).or_default();
        e.0 += 1;
        e.1 +=
            (i.end_ms.unwrap_or(to_ms).min(to_ms) - i.start_ms.max(from_ms)).max(0) as f64 / 1000.0;
    }
    let mut noisiest: Vec<NoisyAlert> = noisy
        .into_iter()
        .map(|(name, (episodes, firing_seconds))| NoisyAlert {
            alertname: name.to_string(),
            episodes,
            firing_seconds,
        })
        .collect();
    noisiest.sort_by(|a, b| {
        b.episodes
            .cmp(&a.episodes)
            .then(b.firing_seconds.total_cmp(&a.firing_seconds))
            .then(a.alertname.cmp(&b.alertname))
    });
    noisiest.truncate(NOISIEST);

    let incident_summary = IncidentSummary {
        count: incidents.len(),
        acknowledged: tta.len(),
        resolved: ttr.len(),
        mtta_seconds: mean(&tta),
        mttr_seconds: mean(&ttr),
        history: history.to_string(),
        list: incidents,
    };

    let slos = slo_status(source, to_ms, secs, &mut errors);
    let llm_spend = llm_spend(source, to_ms, secs, &mut errors);

    let agents_down = match source.range("up", from_ms, to_ms, step) {
        Ok(series) => {
            let mut per: BTreeMap<(String, String), Downtime> = BTreeMap::new();
            for (l, start, end) in runs(&series, step, to_ms, |v| v == 0.0) {
                let key = (
                    l.get("job").unwrap_or_default().to_string(),
                    l.get("instance").unwrap_or_default().to_string(),
                );
                let d = per.entry(key.clone()).or_insert_with(|| Downtime {
                    job: key.0,
                    instance: key.1,
                    episodes: 0,
                    down_seconds: 0.0,
                    down_at_end: false,
                });
                d.episodes += 1;
                d.down_seconds += (end.unwrap_or(to_ms) - start) as f64 / 1000.0;
                d.down_at_end |= end.is_none();
            }
            per.into_values().collect()
        }
        Err(e) => {
            errors.push(format!("agents: {e}"));
            Vec::new()
        }
    };

    Report {
        from: rfc3339(from_ms),
        to: rfc3339(to_ms),
        step_seconds: step as f64 / 1000.0,
        incidents: incident_summary,
        noisiest_alerts: noisiest,
        slos,
        llm_spend,
        agents_down,
        errors,
    }
}

fn slo_status(
    source: &dyn Source,
    to_ms: i64,
    secs: i64,
    errors: &mut Vec<String>,
) -> Vec<SloStatus> {
    let key = |l: &Labels| {
        (
            l.get("slo_service").unwrap_or_default().to_string(),
            l.get("slo_name").unwrap_or_default().to_string(),
        )
    };
    let mut query = |expr: &str| match source.instant(expr, to_ms) {
        Ok(v) => v,
        Err(e) => {
            errors.push(format!("SLOs: {expr}: {e}"));
            Vec::new()
        }
    };
    let objectives: BTreeMap<_, f64> = query("slo:objective:ratio")
        .into_iter()
        .map(|(l, v)| (key(&l), v))
        .collect();
    let remaining = query("slo:period_error_budget_remaining:ratio");
    let period: Vec<(Labels, f64)> = query(&format!(
        "avg_over_time(slo:sli_error:ratio_rate5m[{secs}s])"
    ));
    let mut rows: BTreeMap<BTreeMap<String, String>, SloStatus> = BTreeMap::new();
    let mut row = |l: &Labels| -> BTreeMap<String, String> {
        let labels = label_map(l, &["slo_window"]);
        let (service, name) = key(l);
        rows.entry(labels.clone()).or_insert_with(|| SloStatus {
            objective: objectives.get(&(service.clone(), name.clone())).copied(),
            service,
            name,
            labels: labels.clone(),
            period_error_ratio: None,
            period_burn_rate: None,
            budget_remaining: None,
        });
        labels
    };
    let mut updates = Vec::new();
    for (l, v) in &remaining {
        updates.push((row(l), Some(*v), None));
    }
    for (l, v) in &period {
        updates.push((row(l), None, Some(*v)));
    }
    for (k, remaining, ratio) in updates {
        if let Some(r) = rows.get_mut(&k) {
            if remaining.is_some() {
                r.budget_remaining = remaining;
            }
            if let Some(ratio) = ratio {
                r.period_error_ratio = Some(ratio);
                r.period_burn_rate = r.objective.filter(|o| *o < 1.0).map(|o| ratio / (1.0 - o));
            }
        }
    }
    rows.into_values().collect()
}

fn llm_spend(source: &dyn Source, to_ms: i64, secs: i64, errors: &mut Vec<String>) -> LlmSpend {
    let mut by_tenant_model: Vec<Spend> = match source.instant(
        &format!("sum by (tenant, model) (increase(llm_cost_usd_total[{secs}s]))"),
        to_ms,
    ) {
        Ok(v) => v
            .into_iter()
            .map(|(l, usd)| Spend {
                tenant: l.get("tenant").unwrap_or_default().to_string(),
                model: l.get("model").unwrap_or_default().to_string(),
                usd,
            })
            .collect(),
        Err(e) => {
            errors.push(format!("LLM spend: {e}"));
            Vec::new()
        }
    };
    by_tenant_model.sort_by(|a, b| {
        b.usd
            .total_cmp(&a.usd)
            .then(a.tenant.cmp(&b.tenant))
            .then(a.model.cmp(&b.model))
    });
    let mut budgets: BTreeMap<String, BudgetStatus> = BTreeMap::new();
    for (metric, which) in [
        ("llm_budget_usd", 0),
        ("llm_spend_month_to_date_usd", 1),
        ("llm_spend_forecast_month_usd", 2),
    ] {
        let rows = match source.instant(metric, to_ms) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("LLM budgets: {metric}: {e}"));
                continue;
            }
        };
        for (l, v) in rows {
            let name = l.get("budget").unwrap_or_default().to_string();
            let b = budgets.entry(name.clone()).or_insert_with(|| BudgetStatus {
                budget: name,
                labels: label_map(&l, &["budget"]),
                monthly_usd: f64::NAN,
                month_to_date_usd: None,
                forecast_usd: None,
            });
            match which {
                0 => b.monthly_usd = v,
                1 => b.month_to_date_usd = Some(v),
                _ => b.forecast_usd = Some(v),
            }
        }
    }
    LlmSpend {
        total_usd: by_tenant_model.iter().map(|s| s.usd).sum(),
        by_tenant_model,
        budgets: budgets
            .into_values()
            .filter(|b| b.monthly_usd.is_finite())
            .collect(),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// `1h 02m`, `3m 20s`, `45s`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.round() as i64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

fn opt_duration(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), human_duration)
}

fn pct(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.*}%", digits, v * 100.0))
}

fn usd(v: f64) -> String {
    format!("${v:.2}")
}

/// The report's tables as rows of cells, shared by the Markdown and HTML
/// renderings so both always say the same.
struct Table {
    title: &'static str,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    empty: &'static str,
}

fn tables(r: &Report) -> (Vec<String>, Vec<Table>) {
    let i = &r.incidents;
    let summary = vec![
        format!("Period: {} to {}", r.from, r.to),
        format!(
            "Incidents: {} ({} acknowledged, {} resolved); mean time to acknowledge {}, mean time to resolve {} (from the {})",
            i.count,
            i.acknowledged,
            i.resolved,
            opt_duration(i.mtta_seconds),
            opt_duration(i.mttr_seconds),
            i.history
        ),
        format!("LLM spend: {}", usd(r.llm_spend.total_usd)),
    ];
    let fmt_time = |ms: i64| rfc3339(ms);
    let incidents = Table {
        title: "Incidents",
        head: vec![
            "Alert",
            "Severity",
            "Labels",
            "Started",
            "To acknowledge",
            "To resolve",
        ],
        rows: i
            .list
            .iter()
            .map(|x| {
                vec![
                    x.alertname.clone(),
                    x.severity.clone(),
                    x.labels
                        .iter()
                        .filter(|(k, _)| !["alertname", "severity"].contains(&k.as_str()))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    fmt_time(x.start_ms),
                    opt_duration(x.acknowledged_ms.map(|a| (a - x.start_ms) as f64 / 1000.0)),
                    x.end_ms.map_or_else(
                        || "still firing".to_string(),
                        |e| human_duration((e - x.start_ms) as f64 / 1000.0),
                    ),
                ]
            })
            .collect(),
        empty: "No incidents.",
    };
    let noisy = Table {
        title: "Noisiest alerts",
        head: vec!["Alert", "Episodes", "Time firing"],
        rows: r
            .noisiest_alerts
            .iter()
            .map(|n| {
                vec![
                    n.alertname.clone(),
                    n.episodes.to_string(),
                    human_duration(n.firing_seconds),
                ]
            })
            .collect(),
        empty: "No alert fired.",
    };
    let slos = Table {
        title: "SLOs",
        head: vec![
            "Service",
            "SLO",
            "Objective",
            "Error rate (period)",
            "Burn rate (period)",
            "Error budget left",
        ],
        rows: r
            .slos
            .iter()
            .map(|s| {
                vec![
                    s.service.clone(),
                    s.name.clone(),
                    pct(s.objective, 2),
                    pct(s.period_error_ratio, 3),
                    s.period_burn_rate
                        .map_or_else(|| "-".into(), |b| format!("{b:.2}x")),
                    pct(s.budget_remaining, 1),
                ]
            })
            .collect(),
        empty: "No SLO recording rules found (see `vigil slo generate`).",
    };
    let spend = Table {
        title: "LLM spend by tenant and model",
        head: vec!["Tenant", "Model", "Spend"],
        rows: r
            .llm_spend
            .by_tenant_model
            .iter()
            .map(|s| vec![s.tenant.clone(), s.model.clone(), usd(s.usd)])
            .collect(),
        empty: "No LLM spend recorded.",
    };
    let budgets = Table {
        title: "LLM budgets (this month)",
        head: vec!["Budget", "Monthly", "Spent", "Forecast", "Status"],
        rows: r
            .llm_spend
            .budgets
            .iter()
            .map(|b| {
                let spent = b.month_to_date_usd.unwrap_or(0.0);
                let forecast = b.forecast_usd.unwrap_or(spent);
                let status = if spent > b.monthly_usd {
                    "over budget"
                } else if forecast > b.monthly_usd {
                    "forecast over"
                } else {
                    "ok"
                };
                vec![
                    b.budget.clone(),
                    usd(b.monthly_usd),
                    b.month_to_date_usd.map_or_else(|| "-".into(), usd),
                    b.forecast_usd.map_or_else(|| "-".into(), usd),
                    status.to_string(),
                ]
            })
            .collect(),
        empty: "No budgets configured (`llm.budgets` in vigil.yml).",
    };
    let down = Table {
        title: "Agents and targets that went down",
        head: vec![
            "Job",
            "Instance",
            "Times down",
            "Time down",
            "Down at the end",
        ],
        rows: r
            .agents_down
            .iter()
            .map(|d| {
                vec![
                    d.job.clone(),
                    d.instance.clone(),
                    d.episodes.to_string(),
                    human_duration(d.down_seconds),
                    if d.down_at_end { "yes" } else { "no" }.to_string(),
                ]
            })
            .collect(),
        empty: "None went down.",
    };
    (summary, vec![incidents, noisy, slos, spend, budgets, down])
}

/// Markdown cells cannot hold `|` or line breaks.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn render(r: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(r).unwrap_or_default(),
        Format::Markdown => render_markdown(r),
        Format::Html => render_html(r),
    }
}

pub fn render_markdown(r: &Report) -> String {
    let (summary, tables) = tables(r);
    let mut out = String::from("# Vigil report\n\n");
    for line in summary {
        let _ = writeln!(out, "- {}", md_cell(&line));
    }
    for t in tables {
        let _ = write!(out, "\n## {}\n\n", t.title);
        if t.rows.is_empty() {
            let _ = writeln!(out, "{}", t.empty);
            continue;
        }
        let _ = writeln!(out, "| {} |", t.head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(t.head.len()));
        for row in t.rows {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    if !r.errors.is_empty() {
        out.push_str("\n## Could not compute\n\n");
        for e in &r.errors {
            let _ = writeln!(out, "- {}", md_cell(e));
        }
    }
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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

pub fn render_html(r: &Report) -> String {
    let (summary, tables) = tables(r);
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Vigil report</title>\
         <style>body{font-family:system-ui,sans-serif;max-width:60em;margin:1em auto;padding:0 1em}\
         table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #999;padding:.25em .5em;text-align:left}</style>\
         </head><body>\n<h1>Vigil report</h1>\n<ul>\n",
    );
    for line in summary {
        let _ = writeln!(out, "<li>{}</li>", esc(&line));
    }
    out.push_str("</ul>\n");
    for t in tables {
        let _ = writeln!(out, "<h2>{}</h2>", esc(t.title));
        if t.rows.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", esc(t.empty));
            continue;
        }
        out.push_str("<table><tr>");
        for h in &t.head {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr>\n");
        for row in t.rows {
            out.push_str("<tr>");
            for c in row {
                let _ = write!(out, "<td>{}</td>", esc(&c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    if !r.errors.is_empty() {
        out.push_str("<h2>Could not compute</h2>\n<ul>\n");
        for e in &r.errors {
            let _ = writeln!(out, "<li>{}</li>", esc(e));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// A source answering from fixed tables, for the arithmetic only: the
    /// end-to-end test builds reports from a real collector.
    struct Fixed {
        range: BTreeMap<&'static str, Matrix>,
        instant: BTreeMap<String, Vec<(Labels, f64)>>,
    }

    impl Source for Fixed {
        fn instant(&self, expr: &str, _at: i64) -> Result<Vec<(Labels, f64)>, String> {
            Ok(self.instant.get(expr).cloned().unwrap_or_default())
        }
        fn range(&self, expr: &str, _s: i64, _e: i64, _st: i64) -> Result<Matrix, String> {
            self.range
                .get(expr)
                .cloned()
                .ok_or_else(|| format!("no data for {expr}"))
        }
    }

    #[test]
    fn runs_split_on_gaps_and_stay_open_at_the_end() {
        let s = vec![(
            labels(&[("a", "1")]),
            vec![(0, 1.0), (15_000, 1.0), (60_000, 1.0), (75_000, 1.0)],
        )];
        let r = runs(&s, 15_000, 80_000, |_| true);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].1, r[0].2), (0, Some(30_000)));
        assert_eq!((r[1].1, r[1].2), (60_000, None));
        // Values filtered out end a run.
        let s = vec![(
            labels(&[]),
            vec![(0, 1.0), (15_000, 0.0), (30_000, 0.0), (45_000, 1.0)],
        )];
        let r = runs(&s, 15_000, 600_000, |v| v == 0.0);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].1, r[0].2), (15_000, Some(45_000)));
    }

    #[test]
    fn incidents_from_alerts_skip_the_watchdog_and_compute_mttr() {
        let step = step_for(0, 3_600_000);
        assert_eq!(step, 15_000);
        let firing = |from: i64, to: i64| {
            (from..=to)
                .step_by(15_000)
                .map(|t| (t, 1.0))
                .collect::<Vec<_>>()
        };
        let mut range = BTreeMap::new();
        range.insert(
            "ALERTS{alertstate=\"firing\"}",
            vec![
                (
                    labels(&[
                        ("__name__", "ALERTS"),
                        ("alertname", "HighLatency"),
                        ("alertstate", "firing"),
                        ("severity", "page"),
                    ]),
                    [firing(60_000, 300_000), firing(900_000, 1_200_000)].concat(),
                ),
                (
                    labels(&[
                        ("__name__", "ALERTS"),
                        ("alertname", "Watchdog"),
                        ("alertstate", "firing"),
                        ("severity", "none"),
                    ]),
                    firing(0, 3_600_000),
                ),
            ],
        );
        range.insert(
            "up",
            vec![(
                labels(&[("job", "node"), ("instance", "a")]),
                [
                    firing(0, 600_000),
                    vec![(615_000, 0.0), (630_000, 0.0)],
                    firing(645_000, 3_600_000),
                ]
                .concat(),
            )],
        );
        let mut instant = BTreeMap::new();
        instant.insert(
            "sum by (tenant, model) (increase(llm_cost_usd_total[3600s]))".to_string(),
            vec![
                (labels(&[("tenant", "acme"), ("model", "m")]), 2.5),
                (labels(&[("tenant", "beta"), ("model", "m")]), 4.0),
            ],
        );
        instant.insert(
            "llm_budget_usd".into(),
            vec![(labels(&[("budget", "acme"), ("tenant", "acme")]), 100.0)],
        );
        instant.insert(
            "llm_spend_month_to_date_usd".into(),
            vec![(labels(&[("budget", "acme"), ("tenant", "acme")]), 120.0)],
        );
        let src = Fixed { range, instant };
        let r = build(&src, 0, 3_600_000);
        assert_eq!(r.incidents.count, 2, "{:?}", r.incidents);
        assert_eq!(r.incidents.resolved, 2);
        // 60s..315s and 900s..1215s: 255 s and 315 s.
        assert_eq!(r.incidents.mttr_seconds, Some(285.0));
        assert_eq!(r.noisiest_alerts[0].alertname, "HighLatency");
        assert_eq!(r.noisiest_alerts[0].episodes, 2);
        assert_eq!(r.agents_down.len(), 1);
        assert_eq!(r.agents_down[0].down_seconds, 30.0);
        assert_eq!(r.llm_spend.total_usd, 6.5);
        assert_eq!(r.llm_spend.by_tenant_model[0].tenant, "beta");
        assert_eq!(r.llm_spend.budgets[0].month_to_date_usd, Some(120.0));
        let md = render_markdown(&r);
        assert!(
            md.contains("| acme | $100.00 | $120.00 | - | over budget |"),
            "{md}"
        );
        assert!(md.contains("mean time to resolve 4m 45s"), "{md}");
        assert!(!md.contains("Watchdog"), "{md}");
    }

    #[test]
    fn html_escapes_label_values() {
        let mut r = build(
            &Fixed {
                range: BTreeMap::new(),
                instant: BTreeMap::new(),
            },
            0,
            60_000,
        );
        r.incidents.list.push(Incident {
            alertname: "<script>alert(1)</script>".into(),
            severity: "page".into(),
            labels: BTreeMap::new(),
            start_ms: 0,
            end_ms: None,
            acknowledged_ms: None,
        });
        let html = render_html(&r);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        // The missing range data is reported, not hidden.
        assert!(
            r.errors.iter().any(|e| e.contains("incidents")),
            "{:?}",
            r.errors
        );
    }

    #[test]
    fn human_durations_read_at_a_glance() {
        assert_eq!(human_duration(45.0), "45s");
        assert_eq!(human_duration(200.0), "3m 20s");
        assert_eq!(human_duration(3720.0), "1h 02m");
        assert_eq!(human_duration(90_000.0), "1d 1h");
    }
}
