//! `vigil slo generate`: turns a short SLO spec into a Prometheus rule file
//! of recording rules and multiwindow, multi-burn-rate alerts.
//!
//! The alerts are the ones the Google SRE workbook ("Alerting on SLOs",
//! alert 6) recommends and that Sloth and Pyrra generate: a *page* when the
//! error budget burns 14.4× too fast over 1 h (confirmed over 5 m) or 6×
//! over 6 h (confirmed over 30 m) — 2% and 5% of a 30-day budget gone —
//! and a *ticket* when it burns 3× over 1 d (confirmed over 2 h) or 1× over
//! 3 d (confirmed over 6 h). The short window makes an alert stop soon
//! after the burn stops, so no `for` is needed.
//!
//! The SLI is a ratio of two queries with a `{{.window}}` placeholder (as
//! Sloth writes them): `error_query` (or `good_query`) over `total_query`.
//! Any `by (...)` grouping in the queries is kept through the recording
//! rules into the alerts, so one spec covers every job of a service.
//!
//! ```
//! let spec = r#"
//! service: api
//! slos:
//!   - name: availability
//!     objective: 99.9
//!     sli:
//!       error_query: sum by (job) (rate(http_requests_total{code=~"5.."}[{{.window}}]))
//!       total_query: sum by (job) (rate(http_requests_total[{{.window}}]))
//! "#;
//! let rules = vigil_rules::slo::generate("api.slo.yml", spec).unwrap();
//! assert!(rules.contains("record: slo:sli_error:ratio_rate1h"));
//! assert!(vigil_rules::parse_rules("out.yml", &rules).is_ok());
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::duration::parse_duration;

/// The windows every SLI is recorded over: the alert pairs' windows.
const WINDOWS: [&str; 7] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"];

/// (long window, short window, burn-rate factor) per alert tier.
const PAGE_PAIRS: [(&str, &str, f64); 2] = [("1h", "5m", 14.4), ("6h", "30m", 6.0)];
const TICKET_PAIRS: [(&str, &str, f64); 2] = [("1d", "2h", 3.0), ("3d", "6h", 1.0)];

const PLACEHOLDER: &str = "{{.window}}";

/// A spec that cannot be turned into rules, with where and why.
#[derive(Debug, Error)]
pub enum SloError {
    #[error("{file}:{line}:{column}: {reason}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{file}: slo {slo:?}: {reason}")]
    Invalid {
        file: String,
        slo: String,
        reason: String,
    },
    #[error("{file}: {reason}")]
    Spec { file: String, reason: String },
}

/// The spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// Service name; becomes the `slo_service` label.
    pub service: String,
    /// Labels added to every generated rule (e.g. `team`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub slos: Vec<Slo>,
}

/// One objective of the service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Name of the objective; becomes the `slo_name` label.
    pub name: String,
    /// Target in percent of good events, e.g. `99.9`.
    pub objective: f64,
    /// Compliance period (default `30d`).
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub sli: Sli,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub alerting: AlertingSpec,
}

/// The SLI as a ratio of event counts over `{{.window}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sli {
    #[serde(default)]
    pub error_query: Option<String>,
    #[serde(default)]
    pub good_query: Option<String>,
    pub total_query: String,
}

/// How the burn-rate alerts are named and labelled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingSpec {
    /// Alert name (default: service and SLO name in CamelCase +
    /// `ErrorBudgetBurn`).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Severity of the fast-burn alert (default `critical`).
    #[serde(default)]
    pub page_severity: Option<String>,
    /// Severity of the slow-burn alert (default `warning`); `none` turns
    /// the ticket alert off.
    #[serde(default)]
    pub ticket_severity: Option<String>,
}

/// Reads a spec from `text` (named `file` in errors) and returns the rule
/// file, already validated by the same parser `vigil serve` uses.
pub fn generate(file: &str, text: &str) -> Result<String, SloError> {
    let spec: SloSpec = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        let msg = e.without_snippet().to_string();
        SloError::Yaml {
            file: file.to_string(),
            line,
            column,
            reason: msg.lines().next().unwrap_or("invalid YAML").to_string(),
        }
    })?;
    let out = render(file, &spec)?;
    if let Err(errs) = crate::parse_rules(file, &out) {
        let reasons: Vec<String> = errs.iter().map(|e| e.reason.clone()).collect();
        return Err(SloError::Spec {
            file: file.to_string(),
            reason: format!("the generated rules do not load: {}", reasons.join("; ")),
        });
    }
    Ok(out)
}

fn check_name(file: &str, what: &str, value: &str) -> Result<(), SloError> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(SloError::Spec {
            file: file.to_string(),
            reason: format!("{what} {value:?} must be non-empty letters, digits, '_' or '-'"),
        })
    }
}

fn render(file: &str, spec: &SloSpec) -> Result<String, SloError> {
    check_name(file, "service", &spec.service)?;
    if spec.slos.is_empty() {
        return Err(SloError::Spec {
            file: file.to_string(),
            reason: "slos: at least one SLO is required".into(),
        });
    }
    let mut names = std::collections::HashSet::new();
    let mut out = String::new();
    // The base name only, so the output does not depend on the directory
    // the command ran from.
    let base = std::path::Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| file.to_string());
    let _ = writeln!(
        out,
        "# Generated by `vigil slo generate {base}`; edit the spec, not this file.\n\
         # Multiwindow, multi-burn-rate alerts as in the Google SRE workbook."
    );
    out.push_str("groups:\n");
    for slo in &spec.slos {
        check_name(file, "slo name", &slo.name)?;
        if !names.insert(slo.name.as_str()) {
            return Err(SloError::Invalid {
                file: file.to_string(),
                slo: slo.name.clone(),
                reason: "is defined twice".into(),
            });
        }
        render_slo(file, spec, slo, &mut out)?;
    }
    Ok(out)
}

fn invalid(file: &str, slo: &Slo, reason: impl Into<String>) -> SloError {
    SloError::Invalid {
        file: file.to_string(),
        slo: slo.name.clone(),
        reason: reason.into(),
    }
}

fn render_slo(file: &str, spec: &SloSpec, slo: &Slo, out: &mut String) -> Result<(), SloError> {
    if !(slo.objective > 0.0 && slo.objective < 100.0) {
        return Err(invalid(
            file,
            slo,
            format!(
                "objective {} must be a percentage strictly between 0 and 100",
                slo.objective
            ),
        ));
    }
    // Kept as written: it names the recording (`ratio_rate28d`, not `4w`).
    let period = slo.window.as_deref().unwrap_or("30d").trim().to_string();
    let period_length =
        parse_duration(&period).map_err(|e| invalid(file, slo, format!("window: {e}")))?;
    if period_length < Duration::from_secs(86_400) {
        return Err(invalid(
            file,
            slo,
            "window must be at least 1d: burn rates are fractions of the period's budget",
        ));
    }
    let (bad, inverted) = match (&slo.sli.error_query, &slo.sli.good_query) {
        (Some(e), None) => (e.as_str(), false),
        (None, Some(g)) => (g.as_str(), true),
        _ => {
            return Err(invalid(
                file,
                slo,
                "sli needs exactly one of error_query and good_query",
            ));
        }
    };
    for (what, q) in [
        ("the event query", bad),
        ("total_query", &slo.sli.total_query),
    ] {
        if !q.contains(PLACEHOLDER) {
            return Err(invalid(
                file,
                slo,
                format!("{what} must use {PLACEHOLDER} as its range"),
            ));
        }
    }
    // The budget as a short decimal (100 - 99.9 is 0.0999…94 in binary).
    let budget = round_sig((100.0 - slo.objective) / 100.0);
    let objective = round_sig(slo.objective / 100.0);

    let mut labels = spec.labels.clone();
    labels.extend(slo.labels.clone());
    labels.insert("slo_service".into(), spec.service.clone());
    labels.insert("slo_name".into(), slo.name.clone());
    let selector = format!(
        "{{slo_service={}, slo_name={}}}",
        quote(&spec.service),
        quote(&slo.name)
    );

    // One group per SLO: rules of a group run in order, so the alerts see
    // this evaluation's recordings (across groups the order is unspecified
    // and an alert could judge a one-interval-old ratio).
    let _ = writeln!(
        out,
        "  - name: slo-{}-{}\n    rules:",
        spec.service, slo.name
    );
    for w in WINDOWS {
        let b = bad.replace(PLACEHOLDER, w);
        let t = slo.sli.total_query.replace(PLACEHOLDER, w);
        let expr = if inverted {
            format!("1 - (\n  ({b})\n/\n  ({t})\n)")
        } else {
            format!("(\n  {b}\n)\n/\n(\n  {t}\n)")
        };
        let mut l = labels.clone();
        l.insert("slo_window".into(), w.into());
        record(out, &format!("slo:sli_error:ratio_rate{w}"), &expr, &l);
    }
    // The period's ratio averages the 5m recordings, as Sloth does: a rate
    // over 30 days of raw samples on every evaluation would be the costliest
    // query of the whole rule set.
    let mut l = labels.clone();
    l.insert("slo_window".into(), period.clone());
    record(
        out,
        &format!("slo:sli_error:ratio_rate{period}"),
        &format!(
            "sum_over_time(slo:sli_error:ratio_rate5m{selector}[{period}])\n/ ignoring (slo_window)\ncount_over_time(slo:sli_error:ratio_rate5m{selector}[{period}])"
        ),
        &l,
    );

    record(
        out,
        "slo:objective:ratio",
        &format!("vector({objective})"),
        &labels,
    );
    record(
        out,
        "slo:error_budget:ratio",
        &format!("vector({budget})"),
        &labels,
    );
    record(
        out,
        "slo:current_burn_rate:ratio",
        &format!(
            "slo:sli_error:ratio_rate5m{selector}\n/ on (slo_service, slo_name) group_left\nslo:error_budget:ratio{selector}"
        ),
        &labels,
    );
    record(
        out,
        "slo:period_burn_rate:ratio",
        &format!(
            "slo:sli_error:ratio_rate{period}{selector}\n/ on (slo_service, slo_name) group_left\nslo:error_budget:ratio{selector}"
        ),
        &labels,
    );
    record(
        out,
        "slo:period_error_budget_remaining:ratio",
        &format!("1 - slo:period_burn_rate:ratio{selector}"),
        &labels,
    );

    let alert_name = slo.alerting.name.clone().unwrap_or_else(|| {
        format!(
            "{}{}ErrorBudgetBurn",
            camel(&spec.service),
            camel(&slo.name)
        )
    });
    if !alert_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(invalid(
            file,
            slo,
            format!("alerting.name {alert_name:?} is not a valid metric name"),
        ));
    }
    let page = slo
        .alerting
        .page_severity
        .clone()
        .unwrap_or_else(|| "critical".into());
    let ticket = slo
        .alerting
        .ticket_severity
        .clone()
        .unwrap_or_else(|| "warning".into());
    let describe = slo
        .description
        .clone()
        .unwrap_or_else(|| format!("{} {} SLO", spec.service, slo.name));
    let tiers = [("page", page, PAGE_PAIRS), ("ticket", ticket, TICKET_PAIRS)];
    for (tier, severity, pairs) in tiers {
        if severity == "none" && tier == "ticket" {
            continue;
        }
        let clauses: Vec<String> = pairs
            .iter()
            .map(|(long, short, factor)| {
                let threshold = round_sig(factor * budget);
                format!(
                    "(\n  max without (slo_window) (slo:sli_error:ratio_rate{short}{selector} > {threshold})\nand\n  max without (slo_window) (slo:sli_error:ratio_rate{long}{selector} > {threshold})\n)"
                )
            })
            .collect();
        let expr = clauses.join("\nor\n");
        let mut l = labels.clone();
        l.extend(slo.alerting.labels.clone());
        l.insert("severity".into(), severity);
        l.insert("slo_alert_tier".into(), tier.into());
        let (fast, slow) = (pairs[0], pairs[1]);
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "summary".to_string(),
            format!("{describe}: error budget burning too fast ({tier}){JOB_HINT}"),
        );
        annotations.insert(
            "description".to_string(),
            format!(
                "The error ratio is {{{{ $value | humanizePercentage }}}} over the short window, against a budget of {budget_pct} of events over {period} (objective {obj_pct}). At this rate the budget burns more than {f1}x too fast over {l1} (and {s1}) or {f2}x over {l2} (and {s2}).",
                budget_pct = percent(budget),
                obj_pct = percent(objective),
                f1 = fast.2,
                l1 = fast.0,
                s1 = fast.1,
                f2 = slow.2,
                l2 = slow.0,
                s2 = slow.1,
            ),
        );
        annotations.extend(slo.alerting.annotations.clone());
        alert(out, &alert_name, &expr, &l, &annotations);
    }
    Ok(())
}

/// SLIs are usually kept per job (`sum by (job)`); name it when present.
const JOB_HINT: &str = "{{ with $labels.job }} for job {{ . }}{{ end }}";

fn record(out: &mut String, name: &str, expr: &str, labels: &BTreeMap<String, String>) {
    let _ = writeln!(out, "      - record: {name}");
    block(out, "expr", expr);
    map(out, "labels", labels);
}

fn alert(
    out: &mut String,
    name: &str,
    expr: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) {
    let _ = writeln!(out, "      - alert: {name}");
    block(out, "expr", expr);
    map(out, "labels", labels);
    map(out, "annotations", annotations);
}

fn block(out: &mut String, key: &str, text: &str) {
    let _ = writeln!(out, "        {key}: |-");
    for line in text.lines() {
        let _ = writeln!(out, "          {line}");
    }
}

fn map(out: &mut String, key: &str, entries: &BTreeMap<String, String>) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "        {key}:");
    for (k, v) in entries {
        let _ = writeln!(out, "          {k}: {}", quote(v));
    }
}

/// A YAML double-quoted scalar (JSON string syntax is a subset of it).
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn camel(s: &str) -> String {
    s.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Rounds to 12 significant digits so that decimal inputs print as
/// written (`1 - 0.999` prints as `0.001`).
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 12 - x.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn percent(ratio: f64) -> String {
    format!("{}%", round_sig(ratio * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
service: api
labels:
  team: platform
slos:
  - name: availability
    objective: 99.9
    sli:
      error_query: sum by (job) (rate(http_requests_total{code=~"5.."}[{{.window}}]))
      total_query: sum by (job) (rate(http_requests_total[{{.window}}]))
  - name: latency
    objective: 99
    window: 28d
    sli:
      good_query: sum by (job) (rate(http_request_duration_seconds_bucket{le="2.5"}[{{.window}}]))
      total_query: sum by (job) (rate(http_request_duration_seconds_count[{{.window}}]))
    alerting:
      ticket_severity: none
"#;

    #[test]
    fn generates_loadable_rules_with_every_window() {
        let out = generate("spec.yml", SPEC).expect("valid spec");
        let groups = crate::parse_rules("out.yml", &out).expect("loads");
        assert_eq!(groups.len(), 2);
        for w in WINDOWS {
            assert!(
                out.contains(&format!("record: slo:sli_error:ratio_rate{w}\n")),
                "{w}"
            );
        }
        assert!(out.contains("record: slo:sli_error:ratio_rate30d\n"));
        assert!(out.contains("record: slo:sli_error:ratio_rate28d\n"));
        // 14.4 × 0.001 and 6 × 0.001, written as decimals.
        assert!(out.contains("> 0.0144)"), "{out}");
        assert!(out.contains("> 0.006)"), "{out}");
        assert!(out.contains("> 0.144)"), "latency page threshold: {out}");
        assert!(out.contains("alert: ApiAvailabilityErrorBudgetBurn"));
        // The latency SLO turned its ticket alert off.
        assert_eq!(out.matches("alert: ApiLatencyErrorBudgetBurn").count(), 1);
        assert_eq!(
            out.matches("alert: ApiAvailabilityErrorBudgetBurn").count(),
            2
        );
        assert!(out.contains("team: \"platform\""));
    }

    #[test]
    fn refuses_what_cannot_work() {
        let cases = [
            ("objective: 100", "strictly between 0 and 100"),
            ("objective: 0", "strictly between 0 and 100"),
        ];
        for (objective, want) in cases {
            let spec = SPEC.replacen("objective: 99.9", objective, 1);
            let err = generate("s.yml", &spec).expect_err(objective).to_string();
            assert!(err.contains(want), "{err}");
            assert!(err.starts_with("s.yml: slo \"availability\""), "{err}");
        }
        let both = SPEC.replacen(
            "      error_query:",
            "      good_query: x[{{.window}}]\n      error_query:",
            1,
        );
        let err = generate("s.yml", &both)
            .expect_err("both queries")
            .to_string();
        assert!(err.contains("exactly one of"), "{err}");
        let no_window = SPEC.replacen("[{{.window}}]))\n      total", "[5m]))\n      total", 1);
        let err = generate("s.yml", &no_window)
            .expect_err("no placeholder")
            .to_string();
        assert!(err.contains("{{.window}}"), "{err}");
        let typo = SPEC.replacen("objective: 99.9", "objectiv: 99.9", 1);
        let err = generate("s.yml", &typo).expect_err("typo").to_string();
        assert!(err.starts_with("s.yml:"), "{err}");
        let bad_promql = SPEC.replacen(
            "sum by (job) (rate(http_requests_total[",
            "sum by (job (rate(x[",
            1,
        );
        let err = generate("s.yml", &bad_promql)
            .expect_err("bad PromQL")
            .to_string();
        assert!(err.contains("do not load"), "{err}");
        let short = SPEC.replacen("window: 28d", "window: 1h", 1);
        let err = generate("s.yml", &short)
            .expect_err("short window")
            .to_string();
        assert!(err.contains("at least 1d"), "{err}");
    }

    #[test]
    fn budgets_print_as_decimals() {
        assert_eq!(round_sig((100.0 - 99.9) / 100.0), 0.001);
        assert_eq!(round_sig(14.4 * 0.001), 0.0144);
        assert_eq!(round_sig((100.0 - 99.95) / 100.0), 0.0005);
        assert_eq!(percent(0.001), "0.1%");
        assert_eq!(camel("api-gateway"), "ApiGateway");
    }
}
