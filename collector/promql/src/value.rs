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

    proptest! {
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
