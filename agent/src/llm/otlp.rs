//! OTLP metrics → Prometheus series, the way Prometheus's own OTLP receiver
//! translates them (`UnderscoreEscapingWithSuffixes`): names split on
//! anything but letters and digits and joined with `_`, the unit appended
//! (`s` → `_seconds`, `{token}` annotations dropped, `By/s` →
//! `_bytes_per_second`), `_total` for monotonic sums, `_ratio` for gauges in
//! unit `1`, histograms as `_bucket{le}`/`_sum`/`_count`; attribute keys
//! sanitised to label names; `service.name` (prefixed by
//! `service.namespace/`) becomes `job` and `service.instance.id` becomes
//! `instance`.
//!
//! Cumulative points replace the stored value; delta points are
//! accumulated, so delta-temporality SDKs end up cumulative too. GenAI data
//! points that carry only the old `gen_ai.system` attribute also get
//! `gen_ai_provider_name` with the same value, so dashboards written for the
//! current semantic conventions see old instrumentation as well.
//! GenAI histograms also feed the `llm_*` series ([`super::genai`]).
//! Exponential histograms (native histograms in Prometheus, which the text
//! format cannot carry) are refused by name and counted; the HTTP door
//! answers 400 when anything was refused (the rest of the request is kept).
//! Exemplars are not kept: the points they annotate are, and the answer's
//! `partial_success` message (OTLP's warning) and a counter say so, since
//! SDKs attach them by default to points recorded inside a sampled trace.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric, number_data_point};
use vigil_wire::Labels;
use vigil_wire::remote_write::MetricType;

use super::genai::{self, Pricing};
use super::{Aggregator, UpdateError};

/// Result of translating one export request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OtlpOutcome {
    pub accepted: u64,
    pub rejected: u64,
    /// The first few reasons, for the answer's message.
    pub errors: Vec<String>,
    /// Rejected points by reason (`exponential_histogram`,
    /// `series_limit`, `type_conflict`, `bad_histogram`).
    pub rejected_by_reason: std::collections::BTreeMap<&'static str, u64>,
    /// Exemplars on accepted points, not kept.
    pub exemplars_dropped: u64,
}

impl OtlpOutcome {
    fn reject(&mut self, n: u64, reason: &'static str, why: String) {
        self.rejected += n;
        *self.rejected_by_reason.entry(reason).or_insert(0) += n;
        if self.errors.len() < 5 {
            self.errors.push(why);
        }
    }
}

/// The metric label naming why an update was refused.
pub fn reason(e: &UpdateError) -> &'static str {
    match e {
        UpdateError::TypeConflict { .. } => "type_conflict",
        UpdateError::SeriesLimit(_) => "series_limit",
        UpdateError::BadHistogram { .. } => "bad_histogram",
    }
}

/// OTLP unit → Prometheus unit word (Prometheus's `unitMap`).
fn main_unit(u: &str) -> &str {
    match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// OTLP per-unit → Prometheus word (Prometheus's `perUnitMap`).
fn per_unit(u: &str) -> &str {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The kind of OTLP metric, as far as naming cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Gauge,
    MonotonicSum,
    Other,
}

/// Builds the Prometheus metric name for an OTLP metric.
pub fn metric_name(name: &str, unit: &str, kind: NameKind) -> String {
    let mut toks = tokens(name);
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    if !main.is_empty() && !main.contains(['{', '}']) {
        let prom = tokens(main_unit(main)).join("_");
        if !prom.is_empty() && !toks.contains(&prom) {
            toks.push(prom);
        }
    }
    if let Some(per) = parts.next().map(str::trim)
        && !per.is_empty()
        && !per.contains(['{', '}'])
    {
        let prom = tokens(per_unit(per)).join("_");
        if !prom.is_empty() && !toks.contains(&prom) {
            toks.push("per".into());
            toks.push(prom);
        }
    }
    if kind == NameKind::MonotonicSum {
        toks.retain(|t| t != "total");
        toks.push("total".into());
    }
    if unit == "1" && kind == NameKind::Gauge {
        toks.retain(|t| t != "ratio");
        toks.push("ratio".into());
    }
    let mut out = toks.join("_");
    if out.is_empty() {
        return "_".into();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    // Non-ASCII letters and digits survive the split but are not valid in
    // classic Prometheus names.
    out.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Sanitises an attribute key into a label name (Prometheus's
/// `NormalizeLabel`).
pub fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    } else if s.starts_with('_') && !s.starts_with("__") {
        s.insert_str(0, "key");
    }
    s
}

fn any_value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| any_value_string(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|p| format!("{}:{}", p.key, any_value_string(p.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        // Dictionary-encoded strings need the request's string table, which
        // plain OTLP/HTTP exporters never send; leave the label empty.
        Some(_) => String::new(),
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

/// Builds a point's labels: resource-derived `job`/`instance`, then the
/// point's attributes (which win on collision, values joined with `;` as
/// Prometheus does when two keys sanitise to one name).
fn point_labels(resource: &[(String, String)], attrs: &[KeyValue]) -> Labels {
    let mut pairs: Vec<(String, String)> = resource.to_vec();
    let mut own: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for kv in attrs {
        let name = label_name(&kv.key);
        if name.is_empty() {
            continue;
        }
        let val = any_value_string(kv.value.as_ref());
        own.entry(name)
            .and_modify(|v| {
                v.push(';');
                v.push_str(&val);
            })
            .or_insert(val);
    }
    if attr(attrs, "gen_ai.provider.name").is_none()
        && let Some(sys) = attr(attrs, "gen_ai.system")
    {
        own.entry("gen_ai_provider_name".into())
            .or_insert_with(|| any_value_string(sys.value.as_ref()));
    }
    pairs.retain(|(k, _)| !own.contains_key(k));
    pairs.extend(own);
    Labels::from_pairs(pairs)
}

fn resource_labels(attrs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let name = attr(attrs, "service.name").map(|kv| any_value_string(kv.value.as_ref()));
    let ns = attr(attrs, "service.namespace").map(|kv| any_value_string(kv.value.as_ref()));
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        let job = match ns.filter(|n| !n.is_empty()) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        out.push(("job".to_string(), job));
    }
    if let Some(inst) =
        attr(attrs, "service.instance.id").map(|kv| any_value_string(kv.value.as_ref()))
        && !inst.is_empty()
    {
        out.push(("instance".to_string(), inst));
    }
    out
}

/// Prometheus's `target_info`: the resource attributes that did not become
/// `job`/`instance`, as labels of a constant 1 gauge. Emitted only for
/// resources that identify a target.
fn target_info(
    res: &[(String, String)],
    attrs: &[KeyValue],
    agg: &mut Aggregator,
) -> Result<(), UpdateError> {
    const IDENTIFYING: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];
    let rest: Vec<KeyValue> = attrs
        .iter()
        .filter(|kv| !IDENTIFYING.contains(&kv.key.as_str()))
        .cloned()
        .collect();
    if res.is_empty() || rest.is_empty() {
        return Ok(());
    }
    let labels = point_labels(res, &rest);
    agg.value(
        "target_info",
        "Target metadata",
        MetricType::Gauge,
        "",
        labels,
        1.0,
        false,
    )
}

fn number(v: Option<&number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

/// Translates an export request into the aggregator.
pub fn ingest(
    req: &ExportMetricsServiceRequest,
    agg: &mut Aggregator,
    pricing: &dyn Pricing,
    on_refused: impl Fn(&UpdateError),
) -> OtlpOutcome {
    let mut out = OtlpOutcome::default();
    for rm in &req.resource_metrics {
        let res = rm
            .resource
            .as_ref()
            .map(|r| resource_labels(&r.attributes))
            .unwrap_or_default();
        if let Some(r) = &rm.resource
            && let Err(e) = target_info(&res, &r.attributes, agg)
        {
            on_refused(&e);
        }
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let Some(data) = &m.data else { continue };
                let apply = |r: Result<(), UpdateError>, out: &mut OtlpOutcome| match r {
                    Ok(()) => out.accepted += 1,
                    Err(e) => {
                        on_refused(&e);
                        out.reject(1, reason(&e), format!("{}: {e}", m.name));
                    }
                };
                match data {
                    metric::Data::Gauge(g) => {
                        let name = metric_name(&m.name, &m.unit, NameKind::Gauge);
                        for p in &g.data_points {
                            out.exemplars_dropped += p.exemplars.len() as u64;
                            let labels = point_labels(&res, &p.attributes);
                            let r = agg.value(
                                &name,
                                &m.description,
                                MetricType::Gauge,
                                "",
                                labels,
                                number(p.value.as_ref()),
                                false,
                            );
                            apply(r, &mut out);
                        }
                    }
                    metric::Data::Sum(s) => {
                        let delta =
                            s.aggregation_temporality == AggregationTemporality::Delta as i32;
                        let (kind, nk) = if s.is_monotonic {
                            (MetricType::Counter, NameKind::MonotonicSum)
                        } else {
                            (MetricType::Gauge, NameKind::Other)
                        };
                        let name = metric_name(&m.name, &m.unit, nk);
                        for p in &s.data_points {
                            out.exemplars_dropped += p.exemplars.len() as u64;
                            let labels = point_labels(&res, &p.attributes);
                            let r = agg.value(
                                &name,
                                &m.description,
                                kind,
                                "",
                                labels,
                                number(p.value.as_ref()),
                                delta,
                            );
                            apply(r, &mut out);
                        }
                    }
                    metric::Data::Histogram(h) => {
                        let delta =
                            h.aggregation_temporality == AggregationTemporality::Delta as i32;
                        let name = metric_name(&m.name, &m.unit, NameKind::Other);
                        for p in &h.data_points {
                            out.exemplars_dropped += p.exemplars.len() as u64;
                            let labels = point_labels(&res, &p.attributes);
                            // A point without buckets is a single +Inf bucket.
                            let counts = if p.bucket_counts.is_empty() {
                                vec![p.count]
                            } else {
                                p.bucket_counts.clone()
                            };
                            let source = genai::is_source(&name).then(|| labels.clone());
                            let r = agg.histogram(
                                &name,
                                &m.description,
                                labels,
                                &p.explicit_bounds,
                                &counts,
                                p.sum.unwrap_or(0.0),
                                p.count,
                                delta,
                            );
                            if let (Ok(inc), Some(labels)) = (&r, source) {
                                let point = genai::Point {
                                    bounds: &p.explicit_bounds,
                                    increase: inc,
                                };
                                for e in genai::derive(agg, &name, &labels, &point, pricing) {
                                    on_refused(&e);
                                }
                            }
                            apply(r.map(|_| ()), &mut out);
                        }
                    }
                    metric::Data::Summary(s) => {
                        let name = metric_name(&m.name, &m.unit, NameKind::Other);
                        for p in &s.data_points {
                            let labels = point_labels(&res, &p.attributes);
                            let mut r = Ok(());
                            for q in &p.quantile_values {
                                let mut ql = labels.clone();
                                ql.set(
                                    "quantile",
                                    vigil_wire::exposition::format_value(q.quantile),
                                );
                                r = r.and(agg.value(
                                    &name,
                                    &m.description,
                                    MetricType::Summary,
                                    "",
                                    ql,
                                    q.value,
                                    false,
                                ));
                            }
                            r = r.and(agg.value(
                                &name,
                                &m.description,
                                MetricType::Summary,
                                "_sum",
                                labels.clone(),
                                p.sum,
                                false,
                            ));
                            r = r.and(agg.value(
                                &name,
                                &m.description,
                                MetricType::Summary,
                                "_count",
                                labels,
                                p.count as f64,
                                false,
                            ));
                            apply(r, &mut out);
                        }
                    }
                    metric::Data::ExponentialHistogram(e) => {
                        out.reject(
                            e.data_points.len() as u64,
                            "exponential_histogram",
                            format!("{}: {} exponential histogram points refused: Vigil stores classic histograms only; configure explicit bucket boundaries (an explicit-bucket histogram view or OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=explicit_bucket_histogram)", m.name, e.data_points.len()),
                        );
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn genai_names_translate_like_prometheus() {
        assert_eq!(
            metric_name("gen_ai.client.token.usage", "{token}", NameKind::Other),
            "gen_ai_client_token_usage"
        );
        assert_eq!(
            metric_name("gen_ai.client.operation.duration", "s", NameKind::Other),
            "gen_ai_client_operation_duration_seconds"
        );
        assert_eq!(
            metric_name("http.server.requests", "{request}", NameKind::MonotonicSum),
            "http_server_requests_total"
        );
        assert_eq!(
            metric_name("requests.total", "", NameKind::MonotonicSum),
            "requests_total"
        );
        assert_eq!(
            metric_name("net.io", "By/s", NameKind::Other),
            "net_io_bytes_per_second"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", NameKind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("latency.seconds", "s", NameKind::Other),
            "latency_seconds"
        );
        assert_eq!(metric_name("2xx", "", NameKind::Gauge), "_2xx");
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("gen_ai.request.model"), "gen_ai_request_model");
        assert_eq!(label_name("1st"), "key_1st");
        assert_eq!(label_name("_x"), "key_x");
        assert_eq!(label_name("__x"), "__x");
    }

    proptest! {
        #[test]
        fn names_are_always_valid(name in "\\PC{0,30}", unit in "\\PC{0,8}") {
            for kind in [NameKind::Gauge, NameKind::MonotonicSum, NameKind::Other] {
                let n = metric_name(&name, &unit, kind);
                prop_assert!(vigil_wire::labels::is_valid_metric_name(&n), "{n:?}");
            }
            let l = label_name(&name);
            prop_assert!(l.is_empty() || vigil_wire::labels::is_valid_label_name(&l), "{l:?}");
        }
    }
}
