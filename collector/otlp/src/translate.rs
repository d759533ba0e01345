//! OTLP metrics → Prometheus series, the way Prometheus's own OTLP receiver
//! translates them (`UnderscoreEscapingWithSuffixes`): names split on
//! anything but letters and digits and joined with `_`, the unit appended
//! (`s` → `_seconds`, `{token}` annotations dropped, `By/s` →
//! `_bytes_per_second`), `_total` for monotonic sums, `_ratio` for gauges in
//! unit `1`, histograms as `_bucket{le}`/`_sum`/`_count`; attribute keys
//! sanitised to label names; `service.name` (prefixed by
//! `service.namespace/`) becomes `job`, `service.instance.id` becomes
//! `instance`, and the other resource attributes go to `target_info`.
//!
//! One translation for the agent and the collector: [`translate`] walks a
//! request and hands every point to a [`Sink`], which decides what storing
//! means (the agent keeps cumulative aggregates and accumulates delta
//! points; the collector appends timestamped samples and refuses delta
//! points, as Prometheus does without its delta-to-cumulative conversion).
//! GenAI data points that carry only the old `gen_ai.system` attribute also
//! get `gen_ai_provider_name` with the same value, so dashboards written for
//! the current semantic conventions see old instrumentation as well.
//!
//! Exponential histograms (native histograms in Prometheus, which Vigil
//! does not store) are refused by name and counted, never dropped silently.
//! Exemplars are not kept: the points they annotate are, and the count is
//! reported so the answer's `partial_success` message can say so.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric, number_data_point};
use vigil_wire::Labels;
use vigil_wire::remote_write::MetricType;

/// Result of translating one export request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OtlpOutcome {
    /// Data points stored.
    pub accepted: u64,
    /// Data points refused.
    pub rejected: u64,
    /// The first few reasons, each naming its metric, for the answer.
    pub errors: Vec<String>,
    /// Refused points by reason (`exponential_histogram`, `delta_temporality`,
    /// `series_limit`, `type_conflict`, `bad_histogram`, ...).
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// Exemplars on accepted points, not kept.
    pub exemplars_dropped: u64,
}

impl OtlpOutcome {
    /// How many reasons the answer names.
    const NAMED: usize = 5;

    pub fn reject(&mut self, n: u64, reason: &'static str, why: String) {
        self.rejected += n;
        *self.rejected_by_reason.entry(reason).or_insert(0) += n;
        if self.errors.len() < Self::NAMED && !self.errors.contains(&why) {
            self.errors.push(why);
        }
    }

    /// The message of an answer that refused something.
    pub fn refusal_message(&self) -> String {
        format!(
            "{} data points accepted, {} refused: {}",
            self.accepted,
            self.rejected,
            self.errors.join("; ")
        )
    }

    /// The warning for exemplars that were not kept, if any.
    pub fn exemplar_warning(&self) -> Option<String> {
        (self.exemplars_dropped > 0).then(|| {
            format!(
                "{} exemplars not kept: Vigil stores no exemplars (their data points were accepted)",
                self.exemplars_dropped
            )
        })
    }
}

/// The metric family a point belongs to, as Prometheus names it.
#[derive(Debug, Clone, Copy)]
pub struct Family<'a> {
    /// The translated name (`http_server_requests_total`), without the
    /// `_bucket`/`_sum`/`_count` suffixes.
    pub name: &'a str,
    /// The OTLP metric name, for messages.
    pub otlp_name: &'a str,
    pub help: &'a str,
    /// The Prometheus unit word (`seconds`), empty when none.
    pub unit: &'a str,
    pub kind: MetricType,
}

/// One float point: a gauge, a sum, or one series of a summary.
#[derive(Debug, Clone)]
pub struct ValuePoint<'a> {
    pub family: Family<'a>,
    /// `""`, or `_sum`/`_count` for a summary's totals.
    pub suffix: &'static str,
    /// Labels without `__name__`.
    pub labels: Labels,
    pub value: f64,
    /// Delta temporality: the value is an increase, not a running total.
    pub delta: bool,
    /// Milliseconds since the epoch; 0 when the point carries no time.
    pub time_ms: i64,
    /// OTLP's `FLAG_NO_RECORDED_VALUE`: the series ended (Prometheus writes
    /// a stale marker); `value` means nothing.
    pub no_value: bool,
}

/// One explicit-bucket histogram point.
#[derive(Debug, Clone)]
pub struct HistogramPoint<'a> {
    pub family: Family<'a>,
    pub labels: Labels,
    /// Upper bounds, ascending, without +Inf.
    pub bounds: &'a [f64],
    /// Per-bucket (not cumulative) counts, one more than `bounds`.
    pub counts: &'a [u64],
    pub sum: f64,
    pub count: u64,
    pub delta: bool,
    pub time_ms: i64,
    /// `FLAG_NO_RECORDED_VALUE`, as for [`ValuePoint::no_value`]; the
    /// counts mean nothing.
    pub no_value: bool,
}

/// Where translated points go.
pub trait Sink {
    type Error: std::fmt::Display;
    /// The `reason` label naming why an update was refused.
    fn reason(e: &Self::Error) -> &'static str;
    fn value(&mut self, p: ValuePoint<'_>) -> Result<(), Self::Error>;
    fn histogram(&mut self, p: HistogramPoint<'_>) -> Result<(), Self::Error>;
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
    let mut own: BTreeMap<String, String> = BTreeMap::new();
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

fn number(v: Option<&number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

/// OTLP's `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
fn no_value(flags: u32) -> bool {
    flags & 1 != 0
}

fn ms(nanos: u64) -> i64 {
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// The unit word of a family's metadata (Prometheus's `unit` metadata).
fn unit_word(unit: &str) -> String {
    let main = unit.split('/').next().unwrap_or("").trim();
    if main.is_empty() || main.contains(['{', '}']) {
        return String::new();
    }
    tokens(main_unit(main)).join("_")
}

/// The newest point time of a resource, for its `target_info` sample.
fn newest_time(rm: &opentelemetry_proto::tonic::metrics::v1::ResourceMetrics) -> u64 {
    let mut t = 0;
    for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
        let newest = match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.iter().map(|p| p.time_unix_nano).max(),
            Some(metric::Data::Sum(s)) => s.data_points.iter().map(|p| p.time_unix_nano).max(),
            Some(metric::Data::Histogram(h)) => {
                h.data_points.iter().map(|p| p.time_unix_nano).max()
            }
            Some(metric::Data::Summary(s)) => s.data_points.iter().map(|p| p.time_unix_nano).max(),
            _ => None,
        };
        t = t.max(newest.unwrap_or(0));
    }
    t
}

/// Translates an export request into `sink`, answering what was stored
/// and what was refused (by reason, naming the metric).
pub fn translate<S: Sink>(req: &ExportMetricsServiceRequest, sink: &mut S) -> OtlpOutcome {
    let mut out = OtlpOutcome::default();
    for rm in &req.resource_metrics {
        let res = rm
            .resource
            .as_ref()
            .map(|r| resource_labels(&r.attributes))
            .unwrap_or_default();
        if let Some(r) = &rm.resource {
            target_info(&res, &r.attributes, ms(newest_time(rm)), sink, &mut out);
        }
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                translate_metric(m, &res, sink, &mut out);
            }
        }
    }
    out
}

/// Prometheus's `target_info`: the resource attributes that did not become
/// `job`/`instance`, as labels of a constant 1 gauge. Emitted only for
/// resources that identify a target; not counted as a data point.
fn target_info<S: Sink>(
    res: &[(String, String)],
    attrs: &[KeyValue],
    time_ms: i64,
    sink: &mut S,
    out: &mut OtlpOutcome,
) {
    const IDENTIFYING: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];
    let rest: Vec<KeyValue> = attrs
        .iter()
        .filter(|kv| !IDENTIFYING.contains(&kv.key.as_str()))
        .cloned()
        .collect();
    if res.is_empty() || rest.is_empty() {
        return;
    }
    let labels = point_labels(res, &rest);
    let family = Family {
        name: "target_info",
        otlp_name: "target_info",
        help: "Target metadata",
        unit: "",
        kind: MetricType::Gauge,
    };
    let r = sink.value(ValuePoint {
        family,
        suffix: "",
        labels,
        value: 1.0,
        delta: false,
        time_ms,
        no_value: false,
    });
    if let Err(e) = r {
        out.reject(0, S::reason(&e), format!("target_info: {e}"));
    }
}

fn translate_metric<S: Sink>(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    res: &[(String, String)],
    sink: &mut S,
    out: &mut OtlpOutcome,
) {
    let Some(data) = &m.data else { return };
    let unit = unit_word(&m.unit);
    let apply = |r: Result<(), S::Error>, out: &mut OtlpOutcome| match r {
        Ok(()) => out.accepted += 1,
        Err(e) => out.reject(1, S::reason(&e), format!("{}: {e}", m.name)),
    };
    match data {
        metric::Data::Gauge(g) => {
            let name = metric_name(&m.name, &m.unit, NameKind::Gauge);
            let family = Family {
                name: &name,
                otlp_name: &m.name,
                help: &m.description,
                unit: &unit,
                kind: MetricType::Gauge,
            };
            for p in &g.data_points {
                out.exemplars_dropped += p.exemplars.len() as u64;
                let r = sink.value(ValuePoint {
                    family,
                    suffix: "",
                    labels: point_labels(res, &p.attributes),
                    value: number(p.value.as_ref()),
                    delta: false,
                    time_ms: ms(p.time_unix_nano),
                    no_value: no_value(p.flags),
                });
                apply(r, out);
            }
        }
        metric::Data::Sum(s) => {
            let delta = s.aggregation_temporality == AggregationTemporality::Delta as i32;
            let (kind, nk) = if s.is_monotonic {
                (MetricType::Counter, NameKind::MonotonicSum)
            } else {
                (MetricType::Gauge, NameKind::Other)
            };
            let name = metric_name(&m.name, &m.unit, nk);
            let family = Family {
                name: &name,
                otlp_name: &m.name,
                help: &m.description,
                unit: &unit,
                kind,
            };
            for p in &s.data_points {
                out.exemplars_dropped += p.exemplars.len() as u64;
                let r = sink.value(ValuePoint {
                    family,
                    suffix: "",
                    labels: point_labels(res, &p.attributes),
                    value: number(p.value.as_ref()),
                    delta,
                    time_ms: ms(p.time_unix_nano),
                    no_value: no_value(p.flags),
                });
                apply(r, out);
            }
        }
        metric::Data::Histogram(h) => {
            let delta = h.aggregation_temporality == AggregationTemporality::Delta as i32;
            let name = metric_name(&m.name, &m.unit, NameKind::Other);
            let family = Family {
                name: &name,
                otlp_name: &m.name,
                help: &m.description,
                unit: &unit,
                kind: MetricType::Histogram,
            };
            for p in &h.data_points {
                out.exemplars_dropped += p.exemplars.len() as u64;
                // A point without buckets is a single +Inf bucket.
                let single = [p.count];
                let counts: &[u64] = if p.bucket_counts.is_empty() {
                    &single
                } else {
                    &p.bucket_counts
                };
                let r = sink.histogram(HistogramPoint {
                    family,
                    labels: point_labels(res, &p.attributes),
                    bounds: &p.explicit_bounds,
                    counts,
                    sum: p.sum.unwrap_or(0.0),
                    count: p.count,
                    delta,
                    time_ms: ms(p.time_unix_nano),
                    no_value: no_value(p.flags),
                });
                apply(r, out);
            }
        }
        metric::Data::Summary(s) => {
            let name = metric_name(&m.name, &m.unit, NameKind::Other);
            let family = Family {
                name: &name,
                otlp_name: &m.name,
                help: &m.description,
                unit: &unit,
                kind: MetricType::Summary,
            };
            for p in &s.data_points {
                let labels = point_labels(res, &p.attributes);
                let time_ms = ms(p.time_unix_nano);
                let mut r = Ok(());
                for q in &p.quantile_values {
                    let mut ql = labels.clone();
                    ql.set("quantile", vigil_wire::exposition::format_value(q.quantile));
                    r = r.and_then(|()| {
                        sink.value(ValuePoint {
                            family,
                            suffix: "",
                            labels: ql,
                            value: q.value,
                            delta: false,
                            time_ms,
                            no_value: no_value(p.flags),
                        })
                    });
                }
                for (suffix, value) in [("_sum", p.sum), ("_count", p.count as f64)] {
                    r = r.and_then(|()| {
                        sink.value(ValuePoint {
                            family,
                            suffix,
                            labels: labels.clone(),
                            value,
                            delta: false,
                            time_ms,
                            no_value: no_value(p.flags),
                        })
                    });
                }
                apply(r, out);
            }
        }
        metric::Data::ExponentialHistogram(e) => {
            out.reject(
                e.data_points.len() as u64,
                "exponential_histogram",
                format!(
                    "{}: {} exponential histogram points refused: Vigil stores classic histograms only; configure explicit bucket boundaries (an explicit-bucket histogram view or OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=explicit_bucket_histogram)",
                    m.name,
                    e.data_points.len()
                ),
            );
        }
    }
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

    /// Checks what reaches a sink: valid names, valid labels.
    #[derive(Default)]
    struct Checking {
        points: u64,
    }

    impl Sink for Checking {
        type Error = String;
        fn reason(_: &String) -> &'static str {
            "test"
        }
        fn value(&mut self, p: ValuePoint<'_>) -> Result<(), String> {
            let name = format!("{}{}", p.family.name, p.suffix);
            assert!(vigil_wire::labels::is_valid_metric_name(&name), "{name:?}");
            for l in p.labels.iter() {
                assert!(
                    vigil_wire::labels::is_valid_label_name(&l.name),
                    "{:?}",
                    l.name
                );
            }
            self.points += 1;
            if p.value.is_nan() {
                return Err("NaN".into());
            }
            Ok(())
        }
        fn histogram(&mut self, p: HistogramPoint<'_>) -> Result<(), String> {
            assert!(vigil_wire::labels::is_valid_metric_name(p.family.name));
            for l in p.labels.iter() {
                assert!(
                    vigil_wire::labels::is_valid_label_name(&l.name),
                    "{:?}",
                    l.name
                );
            }
            self.points += 1;
            if p.counts.len() != p.bounds.len() + 1 {
                return Err("bad".into());
            }
            Ok(())
        }
    }

    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1 as pb;
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv() -> impl Strategy<Value = KeyValue> {
        ("\\PC{0,12}", "\\PC{0,8}", any::<i64>(), any::<bool>()).prop_map(|(k, s, i, str_value)| {
            KeyValue {
                key: k,
                value: Some(AnyValue {
                    value: Some(if str_value {
                        any_value::Value::StringValue(s)
                    } else {
                        any_value::Value::IntValue(i)
                    }),
                }),
                ..Default::default()
            }
        })
    }

    fn metric() -> impl Strategy<Value = pb::Metric> {
        (
            "\\PC{0,20}",
            "\\PC{0,6}",
            0..5u8,
            proptest::collection::vec(kv(), 0..4),
            proptest::collection::vec(any::<f64>(), 0..4),
            proptest::collection::vec(0..10u64, 0..5),
            any::<f64>(),
            0..3i32,
            any::<bool>(),
        )
            .prop_map(
                |(name, unit, kind, attributes, bounds, counts, v, temporality, mono)| {
                    let data = match kind {
                        0 => metric::Data::Gauge(pb::Gauge {
                            data_points: vec![pb::NumberDataPoint {
                                attributes,
                                value: Some(number_data_point::Value::AsDouble(v)),
                                ..Default::default()
                            }],
                        }),
                        1 => metric::Data::Sum(pb::Sum {
                            data_points: vec![pb::NumberDataPoint {
                                attributes,
                                value: Some(number_data_point::Value::AsDouble(v)),
                                time_unix_nano: u64::MAX,
                                ..Default::default()
                            }],
                            aggregation_temporality: temporality,
                            is_monotonic: mono,
                        }),
                        2 => metric::Data::Histogram(pb::Histogram {
                            data_points: vec![pb::HistogramDataPoint {
                                attributes,
                                count: counts.iter().sum(),
                                sum: Some(v),
                                bucket_counts: counts,
                                explicit_bounds: bounds,
                                ..Default::default()
                            }],
                            aggregation_temporality: temporality,
                        }),
                        3 => metric::Data::Summary(pb::Summary {
                            data_points: vec![pb::SummaryDataPoint {
                                attributes,
                                sum: v,
                                count: 3,
                                quantile_values: bounds
                                    .iter()
                                    .map(|q| pb::summary_data_point::ValueAtQuantile {
                                        quantile: *q,
                                        value: v,
                                    })
                                    .collect(),
                                ..Default::default()
                            }],
                        }),
                        _ => metric::Data::ExponentialHistogram(pb::ExponentialHistogram {
                            data_points: vec![pb::ExponentialHistogramDataPoint::default()],
                            aggregation_temporality: temporality,
                        }),
                    };
                    pb::Metric {
                        name,
                        unit,
                        data: Some(data),
                        ..Default::default()
                    }
                },
            )
    }

    proptest! {
        // Any request the decoder can produce: no panic, every name and
        // label valid, every point either accepted or refused.
        #[test]
        fn translation_never_panics_and_accounts_for_every_point(
            resource in proptest::collection::vec(kv(), 0..4),
            metrics in proptest::collection::vec(metric(), 0..6),
        ) {
            let total = metrics.len() as u64;
            let req = ExportMetricsServiceRequest {
                resource_metrics: vec![pb::ResourceMetrics {
                    resource: Some(Resource { attributes: resource, ..Default::default() }),
                    scope_metrics: vec![pb::ScopeMetrics { metrics, ..Default::default() }],
                    ..Default::default()
                }],
            };
            let mut sink = Checking::default();
            let out = translate(&req, &mut sink);
            prop_assert_eq!(out.accepted + out.rejected, total);
        }
    }
}
