//! Rule templates: Prometheus's alert label/annotation expansion over
//! vigil-template.
//!
//! Prometheus prepends `{{$labels := .Labels}}{{$externalLabels :=
//! .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}` to
//! every template, names it `__alert_<name>`, and on an expansion error uses
//! `<error expanding template: …>` as the text. The `query` function runs a
//! PromQL query at the evaluation time; it reads the engine and storage from
//! a thread-local set around each expansion, so templates are parsed once
//! at load time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use vigil_promql::{Engine, QueryContext, Queryable, Value as QValue};
use vigil_template::{Template, Value};
use vigil_wire::Labels;

/// The definitions Prometheus prepends to every rule template.
pub const TEMPLATE_HEADER: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// What the `query` template function needs during one expansion.
pub(crate) struct QueryEnv {
    pub engine: Arc<Engine>,
    pub storage: Arc<dyn Queryable>,
    pub at_ms: i64,
}

thread_local! {
    static QUERY_ENV: RefCell<Option<QueryEnv>> = const { RefCell::new(None) };
}

/// Runs `f` with `env` available to the `query` template function.
pub(crate) fn with_query_env<R>(env: QueryEnv, f: impl FnOnce() -> R) -> R {
    QUERY_ENV.with(|c| *c.borrow_mut() = Some(env));
    let r = f();
    QUERY_ENV.with(|c| *c.borrow_mut() = None);
    r
}

fn sample_value(labels: &Labels, v: f64) -> Value {
    let mut m = BTreeMap::new();
    m.insert("Labels".to_string(), labels_value(labels));
    m.insert("Value".to_string(), Value::Float(v));
    Value::Map(m)
}

/// Labels as a template map (`$labels.instance`).
pub fn labels_value(labels: &Labels) -> Value {
    Value::Map(
        labels
            .iter()
            .map(|l| (l.name.clone(), Value::String(l.value.clone())))
            .collect(),
    )
}

fn query_func(args: &[Value]) -> Result<Value, String> {
    let [Value::String(q)] = args else {
        return Err("query takes one string argument".into());
    };
    QUERY_ENV.with(|c| {
        let env = c.borrow();
        let Some(env) = env.as_ref() else {
            return Err("query is not available in this context".into());
        };
        let v = match env.storage.instant_query(q, env.at_ms) {
            // Storage that evaluates PromQL itself (a remote query API).
            Some(v) => v.map_err(|e| e.to_string())?,
            None => env
                .engine
                .instant(env.storage.as_ref(), q, env.at_ms, &QueryContext::default())
                .map_err(|e| e.to_string())?,
        };
        Ok(Value::Array(match v {
            QValue::Vector(vs) => vs.iter().map(|s| sample_value(&s.labels, s.v)).collect(),
            QValue::Scalar { v, .. } => vec![sample_value(&Labels::empty(), v)],
            QValue::String { s, .. } => {
                let mut m = BTreeMap::new();
                m.insert("Labels".to_string(), Value::Map(BTreeMap::new()));
                m.insert("Value".to_string(), Value::String(s));
                vec![Value::Map(m)]
            }
            QValue::Matrix(_) => return Err("query result is a range vector".into()),
        }))
    })
}

fn url_escape_path(s: &str) -> String {
    vigil_template::funcs::query_escape(s)
}

/// Parses one label/annotation template with the header and Prometheus's
/// extra functions (`query`, `strvalue`, `args`, `graphLink`, `tableLink`,
/// `externalURL` via `$externalURL`, `parseDuration`, `toTime`).
pub fn parse_rule_template(name: &str, text: &str) -> Result<Template, vigil_template::ParseError> {
    Template::new(name)
        .func("query", query_func)
        .func("strvalue", |a| match a {
            [Value::Map(m)] => Ok(match m.get("Labels") {
                Some(Value::Map(l)) => l
                    .get("__value__")
                    .cloned()
                    .unwrap_or(Value::String(String::new())),
                _ => Value::String(String::new()),
            }),
            _ => Err("strvalue takes a sample".into()),
        })
        .func("args", |a| {
            Ok(Value::Map(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("arg{i}"), v.clone()))
                    .collect(),
            ))
        })
        .func("graphLink", |a| match a {
            [Value::String(e)] => Ok(Value::String(format!(
                "/graph?g0.expr={}&g0.tab=0",
                url_escape_path(e)
            ))),
            _ => Err("graphLink takes a string".into()),
        })
        .func("tableLink", |a| match a {
            [Value::String(e)] => Ok(Value::String(format!(
                "/graph?g0.expr={}&g0.tab=1",
                url_escape_path(e)
            ))),
            _ => Err("tableLink takes a string".into()),
        })
        .func("parseDuration", |a| match a {
            [Value::String(s)] => crate::duration::parse_duration(s)
                .map(|d| Value::Float(d.as_secs_f64()))
                .map_err(|e| e.to_string()),
            _ => Err("parseDuration takes a string".into()),
        })
        .func("toTime", |a| match a {
            [v] => Ok(Value::String(vigil_template::funcs::humanize_timestamp(
                vigil_template::funcs::to_float(v)?,
            ))),
            _ => Err("toTime takes one argument".into()),
        })
        .parse(&format!("{TEMPLATE_HEADER}{text}"))
}

/// The template name Prometheus uses for an alerting rule.
pub fn template_name(alert: &str) -> String {
    format!("__alert_{alert}")
}

/// The data every rule template sees.
pub(crate) fn alert_data(
    labels: &Labels,
    external_labels: &Value,
    external_url: &str,
    value: f64,
) -> Value {
    let mut m = BTreeMap::new();
    m.insert("Labels".to_string(), labels_value(labels));
    m.insert("ExternalLabels".to_string(), external_labels.clone());
    m.insert(
        "ExternalURL".to_string(),
        Value::String(external_url.to_string()),
    );
    m.insert("Value".to_string(), Value::Float(value));
    Value::Map(m)
}

/// Expands a parsed rule template; failures become Prometheus's inline
/// error text (and a warning), never an evaluation failure.
pub(crate) fn expand(t: &Template, data: &Value) -> String {
    match t.execute(data) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(template = t.name(), error = %e, "expanding alert template failed");
            format!(
                "<error expanding template: error executing template {}: {e}>",
                t.name()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_text(text: &str, labels: &Labels, value: f64) -> String {
        let t = match parse_rule_template("__alert_T", text) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let ext = labels_value(&Labels::from_pairs([("cluster", "eu1")]));
        expand(&t, &alert_data(labels, &ext, "http://vigil:9800", value))
    }

    #[test]
    fn prometheus_documented_examples() {
        let l = Labels::from_pairs([("instance", "db1:9187"), ("job", "postgres")]);
        assert_eq!(
            expand_text("{{ $labels.instance }} down", &l, 0.0),
            "db1:9187 down"
        );
        assert_eq!(
            expand_text("{{ $value | humanize }}B", &l, 123456789.0),
            "123.5MB"
        );
        assert_eq!(
            expand_text("{{ $value | humanizePercentage }}", &l, 0.9512),
            "95.12%"
        );
        assert_eq!(
            expand_text("{{ humanizeDuration $value }}", &l, 90.0),
            "1m 30s"
        );
        assert_eq!(
            expand_text("{{ printf \"%.1f\" $value }}%", &l, 97.25),
            "97.2%"
        );
        assert_eq!(
            expand_text("{{ $externalLabels.cluster }} {{ $externalURL }}", &l, 0.0),
            "eu1 http://vigil:9800"
        );
        assert_eq!(
            expand_text(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }},{{ end }}",
                &l,
                0.0
            ),
            "instance=db1:9187,job=postgres,"
        );
        assert_eq!(
            expand_text("{{ if gt $value 80.0 }}high{{ else }}ok{{ end }}", &l, 90.0),
            "high"
        );
        assert_eq!(expand_text("{{ $value }}", &l, 1e6), "1e+06");
    }

    #[test]
    fn execution_errors_become_inline_text() {
        let l = Labels::empty();
        let out = expand_text("{{ index $labels.x 3 }}", &l, 0.0);
        assert!(
            out.starts_with("<error expanding template: error executing template __alert_T: template: __alert_T:1:"),
            "{out}"
        );
    }
}
