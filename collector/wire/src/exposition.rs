//! The Prometheus text exposition format (version 0.0.4), read and written.
//!
//! The parser accepts what Prometheus's own text parser accepts, including
//! the OpenMetrics `# EOF` and `# UNIT` lines and OpenMetrics exemplars
//! (`value [ts] # {labels} value [ts]`, validated and flagged on the sample
//! so that a caller that cannot store them says so), and reports the line
//! number and reason of the first error. The writer produces output
//! Prometheus scrapes unchanged.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thiserror::Error;

use crate::labels::{LabelError, LabelLimits, Labels, METRIC_NAME_LABEL, is_valid_metric_name};
use crate::remote_write::MetricType;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    /// The line carried an OpenMetrics exemplar (parsed and valid; not
    /// kept).
    pub has_exemplar: bool,
}

/// `# HELP` / `# TYPE` / `# UNIT` information for one metric family.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FamilyMetadata {
    pub metric_type: Option<MetricType>,
    pub help: Option<String>,
    pub unit: Option<String>,
}

/// A whole parsed exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<ParsedSample>,
    pub metadata: BTreeMap<String, FamilyMetadata>,
}

#[derive(Debug, Clone, PartialEq, Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Parses a text exposition.
pub fn parse(text: &str, limits: &LabelLimits) -> Result<Exposition, ParseError> {
    let mut samples = Vec::new();
    let metadata = parse_each(text, limits, |s| samples.push(s))?;
    Ok(Exposition { samples, metadata })
}

/// Parses a text exposition, handing each sample line to `on_sample` as it
/// is read, and answers the families' metadata. A caller that groups or
/// reduces samples as they come (a bulk import) never holds a label set per
/// sample. On an error, the samples before the bad line have been handed
/// over already; callers that must be all-or-nothing keep them aside.
pub fn parse_each(
    text: &str,
    limits: &LabelLimits,
    mut on_sample: impl FnMut(ParsedSample),
) -> Result<BTreeMap<String, FamilyMetadata>, ParseError> {
    let mut metadata = BTreeMap::new();
    for (idx, raw_line) in text.lines().enumerate() {
        let line_no = idx + 1;
        let err = |reason: String| ParseError {
            line: line_no,
            reason,
        };
        let line = raw_line.trim_start();
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, &mut metadata).map_err(err)?;
            continue;
        }
        on_sample(parse_sample_line(line, limits).map_err(err)?);
    }
    Ok(metadata)
}

fn parse_comment(comment: &str, meta: &mut BTreeMap<String, FamilyMetadata>) -> Result<(), String> {
    let comment = comment.trim_start();
    let (keyword, rest) = match comment.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim_start()),
        None => (comment.trim_end(), ""),
    };
    match keyword {
        "HELP" | "TYPE" | "UNIT" => {
            let (name, body) = match rest.split_once(char::is_whitespace) {
                Some((n, b)) => (n, b),
                None => (rest.trim_end(), ""),
            };
            if !is_valid_metric_name(name) {
                return Err(format!("invalid metric name {name:?} in # {keyword}"));
            }
            let entry = meta.entry(name.to_string()).or_default();
            match keyword {
                "HELP" => entry.help = Some(unescape_help(body)),
                "UNIT" => entry.unit = Some(body.trim().to_string()),
                _ => {
                    let t = body.trim();
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "summary",
                        "untyped",
                        "unknown",
                        "info",
                        "stateset",
                    ];
                    if !known.contains(&t) {
                        return Err(format!("unknown metric type {t:?}"));
                    }
                    entry.metric_type = Some(MetricType::from_prometheus_str(t));
                }
            }
            Ok(())
        }
        // Any other comment (including OpenMetrics' `# EOF`) is ignored.
        _ => Ok(()),
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_sample_line(line: &str, limits: &LabelLimits) -> Result<ParsedSample, String> {
    let bytes = line.as_bytes();
    let mut pos = 0;
    while pos < bytes.len()
        && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_' || bytes[pos] == b':')
    {
        pos += 1;
    }
    let name = &line[..pos];
    if name.is_empty() || !is_valid_metric_name(name) {
        return Err(format!(
            "invalid metric name at start of {:?}",
            truncate(line)
        ));
    }
    let mut pairs: Vec<(String, String)> = vec![(METRIC_NAME_LABEL.to_string(), name.to_string())];
    let rest = &line[pos..];
    let rest = if let Some(after_brace) = rest.strip_prefix('{') {
        let (labels, consumed) = parse_label_block(after_brace)?;
        pairs.extend(labels);
        &after_brace[consumed..]
    } else {
        rest
    };
    // An OpenMetrics exemplar follows the sample after ` # `.
    let (rest, has_exemplar) = match rest.split_once(" # ") {
        Some((sample, exemplar)) => {
            parse_exemplar(exemplar)?;
            (sample, true)
        }
        None => (rest, false),
    };
    let mut fields = rest.split_whitespace();
    let value_str = fields
        .next()
        .ok_or_else(|| "missing sample value".to_string())?;
    let value = parse_value(value_str)?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(ts) => Some(
            ts.parse::<i64>()
                .map_err(|_| format!("invalid timestamp {ts:?}"))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after timestamp"));
    }
    let labels = Labels::try_from_pairs(pairs, limits).map_err(|e: LabelError| e.to_string())?;
    Ok(ParsedSample {
        labels,
        value,
        timestamp_ms,
        has_exemplar,
    })
}

/// Validates an OpenMetrics exemplar: `{labels} value [timestamp]`, the
/// label set at most 128 UTF-8 characters as the specification allows.
fn parse_exemplar(s: &str) -> Result<(), String> {
    let body = s
        .trim_start()
        .strip_prefix('{')
        .ok_or_else(|| format!("exemplar must start with a label set: {:?}", truncate(s)))?;
    let (labels, consumed) = parse_label_block(body).map_err(|e| format!("exemplar: {e}"))?;
    let chars: usize = labels
        .iter()
        .map(|(k, v)| k.chars().count() + v.chars().count())
        .sum();
    if chars > 128 {
        return Err(format!(
            "exemplar label set has {chars} characters, over OpenMetrics' 128"
        ));
    }
    let mut fields = body[consumed..].split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| "exemplar has no value".to_string())?;
    parse_value(value).map_err(|e| format!("exemplar: {e}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<f64>()
            .map_err(|_| format!("exemplar: invalid timestamp {ts:?}"))?;
    }
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the exemplar"));
    }
    Ok(())
}

/// Parses `name="value", ...}` and returns the pairs and the number of bytes
/// consumed including the closing brace.
fn parse_label_block(s: &str) -> Result<(Vec<(String, String)>, usize), String> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= bytes.len() {
            return Err("unterminated label set".into());
        }
        if bytes[pos] == b'}' {
            return Ok((out, pos + 1));
        }
        let start = pos;
        while pos < bytes.len() && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_') {
            pos += 1;
        }
        let name = &s[start..pos];
        if name.is_empty() {
            return Err(format!("invalid label name at {:?}", truncate(&s[start..])));
        }
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= bytes.len() || bytes[pos] != b'=' {
            return Err(format!("expected '=' after label name {name:?}"));
        }
        pos += 1;
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= bytes.len() || bytes[pos] != b'"' {
            return Err(format!("expected '\"' to open the value of label {name:?}"));
        }
        pos += 1;
        let mut value = String::new();
        let mut closed = false;
        let mut chars = s[pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    pos += i + 1;
                    closed = true;
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        return Err(format!(
                            "invalid escape \\{other} in value of label {name:?}"
                        ));
                    }
                    None => break,
                },
                c => value.push(c),
            }
        }
        if !closed {
            return Err(format!("unterminated value of label {name:?}"));
        }
        out.push((name.to_string(), value));
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b',') => pos += 1,
            Some(b'}') => {}
            _ => {
                return Err(format!(
                    "expected ',' or '}}' after value of label {name:?}"
                ));
            }
        }
    }
}

/// Parses a sample value as Prometheus does (Go's `ParseFloat` plus the
/// `Inf`/`NaN` spellings).
pub fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => return Ok(f64::INFINITY),
        "-Inf" | "-inf" => return Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => return Ok(f64::NAN),
        _ => {}
    }
    s.parse::<f64>()
        .map_err(|_| format!("invalid sample value {s:?}"))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Escapes a label value for the text format.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Formats a value as Prometheus's text format does.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Writes `# HELP` and `# TYPE` lines for a family.
pub fn write_family_header(out: &mut String, name: &str, help: &str, metric_type: MetricType) {
    let t = match metric_type {
        MetricType::Unknown => "untyped",
        other => other.as_prometheus_str(),
    };
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {t}");
}

/// Writes one sample line. The metric name comes from the `__name__` label.
pub fn write_sample(out: &mut String, labels: &Labels, value: f64, timestamp_ms: Option<i64>) {
    out.push_str(labels.metric_name().unwrap_or(""));
    let mut first = true;
    for l in labels.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "{}=\"{}\"", l.name, escape_label_value(&l.value));
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    if let Some(ts) = timestamp_ms {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
node_cpu_seconds_total{cpu="0",mode="user",} 12 1700000000000
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0.5"} NaN
weird{path="a\"b\\c\nd"} +Inf
up 1
# EOF
"#;

    #[test]
    fn parses_a_real_exposition() {
        let e = parse(SAMPLE, &LabelLimits::default()).expect("parses");
        assert_eq!(e.samples.len(), 5);
        assert_eq!(e.samples[0].labels.get("mode"), Some("idle"));
        assert_eq!(e.samples[1].timestamp_ms, Some(1_700_000_000_000));
        assert!(e.samples[2].value.is_nan());
        assert_eq!(e.samples[3].labels.get("path"), Some("a\"b\\c\nd"));
        assert_eq!(e.samples[3].value, f64::INFINITY);
        let meta = &e.metadata["node_cpu_seconds_total"];
        assert_eq!(meta.metric_type, Some(MetricType::Counter));
        assert_eq!(
            meta.help.as_deref(),
            Some("Seconds the CPUs spent in each mode.")
        );
    }

    #[test]
    fn errors_carry_line_numbers() {
        let err = parse("up 1\nup{job=\"x} 1\n", &LabelLimits::default()).expect_err("fails");
        assert_eq!(err.line, 2);
        let err = parse("up 1\n\nup abc\n", &LabelLimits::default()).expect_err("fails");
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("invalid sample value"));
        assert!(parse("up{a=\"1\",a=\"2\"} 1", &LabelLimits::default()).is_err());
        assert!(parse("{a=\"1\"} 1", &LabelLimits::default()).is_err());
    }

    #[test]
    fn parse_each_hands_over_what_parse_collects() {
        let whole = parse(SAMPLE, &LabelLimits::default()).expect("parses");
        let mut streamed = Vec::new();
        let metadata =
            parse_each(SAMPLE, &LabelLimits::default(), |s| streamed.push(s)).expect("parses");
        assert_eq!(metadata, whole.metadata);
        assert_eq!(streamed.len(), whole.samples.len());
        for (a, b) in streamed.iter().zip(&whole.samples) {
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.timestamp_ms, b.timestamp_ms);
            assert_eq!(a.value.to_bits(), b.value.to_bits());
        }
        let mut before_error = 0;
        let err = parse_each("a 1\nb 2\nc x\nd 4\n", &LabelLimits::default(), |_| {
            before_error += 1
        })
        .expect_err("line 3 is bad");
        assert_eq!((err.line, before_error), (3, 2));
    }

    #[test]
    fn exemplars_are_validated_and_flagged() {
        let text = "foo_bucket{le=\"0.5\"} 3 # {trace_id=\"abc\"} 0.42 1700000000.5\nfoo_count 4\n";
        let e = parse(text, &LabelLimits::default()).expect("parses");
        assert!(e.samples[0].has_exemplar);
        assert_eq!(e.samples[0].value, 3.0);
        assert!(!e.samples[1].has_exemplar);
        let err = parse("foo 3 # trace_id=\"abc\" 1\n", &LabelLimits::default())
            .expect_err("no label set");
        assert!(err.reason.contains("exemplar"), "{err}");
        let err = parse("foo 3 # {a=\"b\"}\n", &LabelLimits::default()).expect_err("no value");
        assert!(err.reason.contains("exemplar has no value"), "{err}");
    }

    #[test]
    fn writer_output_parses_back() {
        let labels = Labels::from_pairs([("__name__", "x_total"), ("path", "q\"\\\n")]);
        let mut s = String::new();
        write_family_header(&mut s, "x_total", "help\\me\nnow", MetricType::Counter);
        write_sample(&mut s, &labels, 2.5, Some(7));
        let e = parse(&s, &LabelLimits::default()).expect("parses");
        assert_eq!(e.samples[0].labels, labels);
        assert_eq!(e.samples[0].value, 2.5);
        assert_eq!(e.metadata["x_total"].help.as_deref(), Some("help\\me\nnow"));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s, &LabelLimits::default());
        }

        #[test]
        fn written_samples_round_trip(
            value in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            v in "[ -~\\n]{0,20}",
            ts in proptest::prelude::any::<i64>(),
        ) {
            let labels = Labels::from_pairs([("__name__", "m"), ("l", v.as_str())]);
            let mut s = String::new();
            write_sample(&mut s, &labels, value, Some(ts));
            let e = parse(&s, &LabelLimits::default()).expect("parses");
            proptest::prop_assert_eq!(&e.samples[0].labels, &labels);
            proptest::prop_assert_eq!(e.samples[0].value, value);
            proptest::prop_assert_eq!(e.samples[0].timestamp_ms, Some(ts));
        }
    }
}
