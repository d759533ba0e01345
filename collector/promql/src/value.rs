//! Query results and their Prometheus HTTP API JSON encoding.

use serde_json::{Map, json};
use vigil_wire::{Labels, Sample};

use crate::storage::SeriesData;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t_ms: i64,
    pub v: f64,
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t_ms: i64, v: f64 },
    String { t_ms: i64, s: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<SeriesData>),
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` does, which
/// is what Prometheus puts in its JSON: shortest round-trip digits, never an
/// exponent, and `+Inf`, `-Inf`, `NaN`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's `Display` for f64 is also shortest-round-trip without an
        // exponent, so it agrees with Go's 'f', -1 formatting.
        format!("{v}")
    }
}

/// A millisecond timestamp as the float seconds Prometheus's API returns.
pub fn format_timestamp(t_ms: i64) -> serde_json::Value {
    if t_ms % 1000 == 0 {
        json!(t_ms / 1000)
    } else {
        json!(t_ms as f64 / 1000.0)
    }
}

fn metric_json(labels: &Labels) -> serde_json::Value {
    let mut m = Map::new();
    for l in labels.iter() {
        m.insert(l.name.clone(), serde_json::Value::String(l.value.clone()));
    }
    serde_json::Value::Object(m)
}

fn point_json(t_ms: i64, v: f64) -> serde_json::Value {
    json!([format_timestamp(t_ms), format_float(v)])
}

fn samples_json(samples: &[Sample]) -> serde_json::Value {
    serde_json::Value::Array(
        samples
            .iter()
            .map(|s| point_json(s.timestamp_ms, s.value))
            .collect(),
    )
}

/// Appends `v`'s `Display` form.
fn push_display(out: &mut String, v: impl std::fmt::Display) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "{v}");
}

/// Appends the decimal digits of `n` (what `Display` writes, without going
/// through the formatting machinery: answers hold tens of thousands).
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// [`push_u64`] for signed numbers.
fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// [`format_timestamp`]'s number, written in place.
fn write_timestamp(out: &mut String, t_ms: i64) {
    if t_ms % 1000 == 0 {
        push_i64(out, t_ms / 1000);
    } else if t_ms.unsigned_abs() < 1_000_000_000_000_000 {
        // `t_ms as f64 / 1000.0` printed shortest: with at most 15
        // significant digits the decimal `s.mmm` is the shortest string
        // naming that double, so it is written with integer arithmetic
        // (formatting a float is several times slower).
        if t_ms < 0 {
            out.push('-');
        }
        let t = t_ms.unsigned_abs();
        push_u64(out, t / 1000);
        out.push('.');
        let mut ms = t % 1000;
        // Three digits, zero-padded, trailing zeros dropped (ms > 0).
        for _ in 0..3 {
            out.push(char::from(b'0' + (ms / 100) as u8));
            ms = ms % 100 * 10;
            if ms == 0 {
                break;
            }
        }
    } else {
        push_display(out, t_ms as f64 / 1000.0);
    }
}

/// Integers below this are exact doubles, each printed shortest as its
/// integer digits.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A finite value as [`format_float`] prints it, written in place;
/// integer values (counters, most gauges) take integer formatting.
fn write_finite(out: &mut String, v: f64) {
    if v != 0.0 && v.abs() < EXACT_INT && v.trunc() == v {
        push_i64(out, v as i64);
    } else {
        push_display(out, v);
    }
}

/// [`point_json`], written in place: `[<seconds>,"<value>"]`.
fn write_point(out: &mut String, t_ms: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t_ms);
    out.push_str(",\"");
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        write_finite(out, v);
    }
    out.push_str("\"]");
}

/// A JSON string literal, escaped as serde_json escapes it.
fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => push_display(out, format_args!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// [`metric_json`], written in place.
fn write_metric(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, &l.name);
        out.push(':');
        write_json_str(out, &l.value);
    }
    out.push('}');
}

impl Value {
    /// Exactly Prometheus's `data` object for `/api/v1/query` and
    /// `/api/v1/query_range`.
    pub fn to_api_json(&self) -> serde_json::Value {
        match self {
            Value::Scalar { t_ms, v } => json!({
                "resultType": "scalar",
                "result": point_json(*t_ms, *v),
            }),
            Value::String { t_ms, s } => json!({
                "resultType": "string",
                "result": [format_timestamp(*t_ms), s],
            }),
            Value::Vector(samples) => json!({
                "resultType": "vector",
                "result": samples.iter().map(|s| json!({
                    "metric": metric_json(&s.labels),
                    "value": point_json(s.t_ms, s.v),
                })).collect::<Vec<_>>(),
            }),
            Value::Matrix(series) => json!({
                "resultType": "matrix",
                "result": series.iter().map(|s| json!({
                    "metric": metric_json(&s.labels),
                    "values": samples_json(&s.samples),
                })).collect::<Vec<_>>(),
            }),
        }
    }

    /// Writes the same `data` object as [`Value::to_api_json`] straight
    /// into `out`. Building a `serde_json::Value` tree costs allocations per
    /// point, which made up 40% of a long range query's time in
    /// `bench-query`; this writes each point in place.
    pub fn write_api_json(&self, out: &mut String) {
        match self {
            Value::Scalar { t_ms, v } => {
                out.push_str(r#"{"resultType":"scalar","result":"#);
                write_point(out, *t_ms, *v);
                out.push('}');
            }
            Value::String { t_ms, s } => {
                out.push_str(r#"{"resultType":"string","result":["#);
                write_timestamp(out, *t_ms);
                out.push(',');
                write_json_str(out, s);
                out.push_str("]}");
            }
            Value::Vector(samples) => {
                out.push_str(r#"{"resultType":"vector","result":["#);
                for (i, s) in samples.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(r#"{"metric":"#);
                    write_metric(out, &s.labels);
                    out.push_str(r#","value":"#);
                    write_point(out, s.t_ms, s.v);
                    out.push('}');
                }
                out.push_str("]}");
            }
            Value::Matrix(series) => {
                out.push_str(r#"{"resultType":"matrix","result":["#);
                for (i, s) in series.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(r#"{"metric":"#);
                    write_metric(out, &s.labels);
                    out.push_str(r#","values":["#);
                    for (j, p) in s.samples.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_point(out, p.timestamp_ms, p.value);
                    }
                    out.push_str("]}");
                }
                out.push_str("]}");
            }
        }
    }

    /// The API's name for the result type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floats_format_like_go() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1.5e-7), "0.00000015");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
    }

    #[test]
    fn json_shapes() {
        let v = Value::Vector(vec![VectorSample {
            labels: Labels::from_pairs([("a", "b")]),
            t_ms: 1500,
            v: 2.0,
        }]);
        assert_eq!(
            v.to_api_json(),
            json!({"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.5,"2"]}]})
        );
        let s = Value::Scalar {
            t_ms: 2000,
            v: f64::INFINITY,
        };
        assert_eq!(
            s.to_api_json(),
            json!({"resultType":"scalar","result":[2,"+Inf"]})
        );
    }

    #[test]
    fn written_json_equals_the_json_tree() {
        let odd = "q\"uo\\te\n\t\r\u{1}\u{1f}\u{08}\u{0c}é✓";
        let labels = Labels::from_pairs([("__name__", "m"), ("a", odd), ("b", "")]);
        let values = [
            Value::Scalar {
                t_ms: 2000,
                v: f64::INFINITY,
            },
            Value::String {
                t_ms: -1500,
                s: odd.to_string(),
            },
            Value::Vector(vec![]),
            Value::Vector(vec![
                VectorSample {
                    labels: labels.clone(),
                    t_ms: 1_700_000_000_123,
                    v: f64::NAN,
                },
                VectorSample {
                    labels: Labels::empty(),
                    t_ms: 1,
                    v: -0.0,
                },
            ]),
            Value::Matrix(vec![
                SeriesData {
                    labels,
                    samples: vec![
                        Sample::new(0, 1e21),
                        Sample::new(999, f64::NEG_INFINITY),
                        Sample::new(-7_000, 1.5e-7),
                    ],
                },
                SeriesData {
                    labels: Labels::empty(),
                    samples: vec![],
                },
            ]),
        ];
        for v in values {
            let mut out = String::new();
            v.write_api_json(&mut out);
            let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
            assert_eq!(parsed, v.to_api_json(), "{out}");
        }
        let mut esc = String::new();
        write_json_str(&mut esc, odd);
        assert_eq!(esc, serde_json::to_string(odd).expect("serialises"));
    }

    #[test]
    fn fast_paths_at_their_edges() {
        for t_ms in [
            -1,
            -999,
            -1_001,
            1,
            10,
            100,
            120,
            999_999_999_999_999,
            -999_999_999_999_999,
            1_000_000_000_000_001,
            i64::MIN,
            i64::MAX,
        ] {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_timestamp(&mut fast, t_ms);
            push_display(&mut slow, t_ms as f64 / 1000.0);
            assert_eq!(fast, slow, "{t_ms}");
        }
        for v in [
            EXACT_INT - 1.0,
            -(EXACT_INT - 1.0),
            EXACT_INT,
            EXACT_INT * 2.0,
            1e15 + 1.0,
            -0.0,
            0.0,
            1.0,
            -1.0,
            0.5,
            1e21,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_finite(&mut fast, v);
            push_display(&mut slow, v);
            assert_eq!(fast, slow, "{v:e}");
        }
    }

    proptest! {
        #[test]
        fn written_points_equal_the_json_tree(t_ms in -10_000_000_000_000i64..10_000_000_000_000, v in any::<f64>()) {
            let mut out = String::new();
            write_point(&mut out, t_ms, v);
            let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
            prop_assert_eq!(parsed, point_json(t_ms, v));
        }

        #[test]
        fn fast_paths_write_what_display_writes(
            t_ms in prop_oneof![
                any::<i64>(),
                -2_000_000_000_000_000i64..2_000_000_000_000_000,
                -10_000i64..10_000,
            ],
            v in prop_oneof![
                any::<f64>(),
                (-1e17f64..1e17).prop_map(f64::trunc),
                (-10_000i64..10_000).prop_map(|i| i as f64),
            ],
        ) {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_timestamp(&mut fast, t_ms);
            if t_ms % 1000 == 0 {
                push_display(&mut slow, t_ms / 1000);
            } else {
                push_display(&mut slow, t_ms as f64 / 1000.0);
            }
            prop_assert_eq!(&fast, &slow);
            if v.is_finite() {
                let (mut fast, mut slow) = (String::new(), String::new());
                write_finite(&mut fast, v);
                push_display(&mut slow, v);
                prop_assert_eq!(fast, slow);
            }
        }

        #[test]
        fn formatted_floats_round_trip(v in any::<f64>()) {
            let s = format_float(v);
            prop_assert!(!s.contains('e'));
            let back: f64 = match s.as_str() {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                other => other.parse().expect("formatted floats parse"),
            };
            if v.is_nan() { prop_assert!(back.is_nan()); } else { prop_assert_eq!(back.to_bits(), v.to_bits()); }
        }
    }
}
