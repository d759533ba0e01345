//! The JSON of `/api/v1/rules` and `/api/v1/alerts`, shaped exactly as
//! Prometheus 2.42 answers (field names, `omitempty`s, time and value
//! formats), so Grafana's alerting views read them.

use serde_json::{Map, Value as Json, json};
use vigil_wire::Labels;

use crate::alerting::{Alert, AlertingRule};
use crate::group::{Group, RuleRuntimeKind};
use crate::manager::RuleManager;

/// Go's `time.Time` JSON (RFC 3339 with trimmed nanoseconds, UTC); the
/// zero time when unset, as Prometheus prints never-evaluated rules.
pub fn rfc3339(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "0001-01-01T00:00:00Z".into();
    };
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let base = chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00".into());
    if frac == 0 {
        format!("{base}Z")
    } else {
        let f = format!("{frac:03}");
        format!("{base}.{}Z", f.trim_end_matches('0'))
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, the API's alert `value`.
pub fn format_value_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    // Rust: "1.5e3" → Go: "1.5e+03".
    let s = format!("{v:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.unsigned_abs())
}

/// A float as Go's `encoding/json` writes it: integral values without a
/// fraction (`60`, not `60.0`).
pub fn go_float(v: f64) -> Json {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn labels_json(l: &Labels) -> Json {
    let mut m = Map::new();
    for x in l.iter() {
        m.insert(x.name.clone(), Json::String(x.value.clone()));
    }
    Json::Object(m)
}

fn pairs_json(p: &[(String, String)]) -> Json {
    let mut m = Map::new();
    for (k, v) in p {
        m.insert(k.clone(), Json::String(v.clone()));
    }
    Json::Object(m)
}

fn alert_json(a: &Alert) -> Json {
    json!({
        "labels": labels_json(&a.labels),
        "annotations": pairs_json(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": rfc3339(Some(a.active_at_ms)),
        "value": format_value_e(a.value),
    })
}

fn alerting_rule_json(ar: &AlertingRule, rt: &crate::group::RuleRuntime) -> Json {
    let spec = &rt.spec;
    let (hold, keep, annotations) = match &spec.kind {
        crate::file::RuleKind::Alerting(a) => {
            (a.hold, a.keep_firing_for, pairs_json(&a.annotations))
        }
        _ => (Default::default(), Default::default(), json!({})),
    };
    let mut o = Map::new();
    o.insert("state".into(), json!(ar.state().as_str()));
    o.insert("name".into(), json!(spec.name));
    o.insert("query".into(), json!(spec.query_string()));
    o.insert("duration".into(), go_float(hold.as_secs_f64()));
    o.insert("keepFiringFor".into(), go_float(keep.as_secs_f64()));
    o.insert("labels".into(), pairs_json(&spec.labels));
    o.insert("annotations".into(), annotations);
    o.insert(
        "alerts".into(),
        Json::Array(ar.active_alerts().map(alert_json).collect()),
    );
    o.insert("health".into(), json!(rt.health.as_str()));
    if let Some(e) = &rt.last_error {
        o.insert("lastError".into(), json!(e));
    }
    o.insert(
        "evaluationTime".into(),
        go_float(rt.eval_duration.as_secs_f64()),
    );
    o.insert(
        "lastEvaluation".into(),
        json!(rfc3339(rt.last_eval_wall_ms)),
    );
    o.insert("type".into(), json!("alerting"));
    Json::Object(o)
}

fn recording_rule_json(rt: &crate::group::RuleRuntime) -> Json {
    let spec = &rt.spec;
    let mut o = Map::new();
    o.insert("name".into(), json!(spec.name));
    o.insert("query".into(), json!(spec.query_string()));
    if !spec.labels.is_empty() {
        o.insert("labels".into(), pairs_json(&spec.labels));
    }
    o.insert("health".into(), json!(rt.health.as_str()));
    if let Some(e) = &rt.last_error {
        o.insert("lastError".into(), json!(e));
    }
    o.insert(
        "evaluationTime".into(),
        go_float(rt.eval_duration.as_secs_f64()),
    );
    o.insert(
        "lastEvaluation".into(),
        json!(rfc3339(rt.last_eval_wall_ms)),
    );
    o.insert("type".into(), json!("recording"));
    Json::Object(o)
}

/// Which rules `/api/v1/rules?type=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleTypeFilter {
    All,
    Alert,
    Record,
}

impl RuleTypeFilter {
    /// Parses the `type` parameter as Prometheus does (`alert`, `record`,
    /// or absent/empty); anything else is an error message for `bad_data`.
    pub fn parse(t: Option<&str>) -> Result<Self, String> {
        match t.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => Ok(RuleTypeFilter::All),
            Some("alert") => Ok(RuleTypeFilter::Alert),
            Some("record") => Ok(RuleTypeFilter::Record),
            Some(other) => Err(format!("not supported value {other:?}")),
        }
    }
}

fn group_json(g: &Group, filter: RuleTypeFilter) -> Json {
    let rules: Vec<Json> = g
        .rules
        .iter()
        .filter_map(|r| match &r.kind {
            RuleRuntimeKind::Alerting(ar) if filter != RuleTypeFilter::Record => {
                Some(alerting_rule_json(ar, r))
            }
            RuleRuntimeKind::Recording if filter != RuleTypeFilter::Alert => {
                Some(recording_rule_json(r))
            }
            _ => None,
        })
        .collect();
    json!({
        "name": g.spec.name,
        "file": g.spec.file,
        "rules": rules,
        "interval": go_float(g.interval.as_secs_f64()),
        "limit": g.spec.limit,
        "evaluationTime": go_float(g.eval_duration.as_secs_f64()),
        "lastEvaluation": rfc3339(g.last_eval_wall_ms),
    })
}

impl RuleManager {
    /// The `data` of `/api/v1/rules`. `type_filter` is the `type` query
    /// parameter; an unsupported value yields all rules (validate it first
    /// with [`RuleTypeFilter::parse`] to answer `bad_data` as Prometheus).
    pub fn rules_json(&self, type_filter: Option<&str>) -> Json {
        let filter = RuleTypeFilter::parse(type_filter).unwrap_or(RuleTypeFilter::All);
        let groups = self.groups.lock().clone();
        let out: Vec<Json> = groups
            .iter()
            .map(|g| group_json(&g.lock(), filter))
            .collect();
        json!({ "groups": out })
    }

    /// The `data` of `/api/v1/alerts`: every pending or firing alert.
    pub fn alerts_json(&self) -> Json {
        let groups = self.groups.lock().clone();
        let mut alerts = Vec::new();
        for g in groups {
            let g = g.lock();
            for r in &g.rules {
                if let Some(ar) = r.alerting() {
                    alerts.extend(ar.active_alerts().map(alert_json));
                }
            }
        }
        json!({ "alerts": alerts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(Some(1_700_000_000_120)), "2023-11-14T22:13:20.12Z");
        assert_eq!(format_value_e(1.0), "1e+00");
        assert_eq!(format_value_e(0.85), "8.5e-01");
        assert_eq!(format_value_e(123456.0), "1.23456e+05");
        assert_eq!(format_value_e(f64::INFINITY), "+Inf");
        assert_eq!(
            RuleTypeFilter::parse(Some("alert")),
            Ok(RuleTypeFilter::Alert)
        );
        assert!(RuleTypeFilter::parse(Some("x")).is_err());
    }
}
