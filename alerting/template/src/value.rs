//! The data model templates execute over.
//!
//! Go templates run over typed Go values; Prometheus and Alertmanager hand
//! them `float64`s (which may be `+Inf` or `NaN`), strings, maps with sorted
//! iteration and slices. `serde_json::Value` cannot hold non-finite floats
//! and does not distinguish Go's `int` from `float64` when printing, so the
//! engine uses this small enum and converts from/to JSON at the edges.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::printf::format_float_v;

/// A value seen by a template: the data passed in, literals, variables and
/// function results.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Go's `nil`; also what a missing map key yields.
    #[default]
    Nil,
    Bool(bool),
    /// Go's `int` (integer literals, lengths, range indexes).
    Int(i64),
    /// Go's `float64` (sample values); may be non-finite.
    Float(f64),
    String(String),
    Array(Vec<Value>),
    /// A map; iteration (range, printing) is in key order, as Go sorts keys.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Go's notion of truth for `if`, `with`, `and`, `or`, `not`: the zero
    /// value and empty collections are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// The Go type name used in error messages and `%!verb(type=value)`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::String(_) => "string",
            Value::Array(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Formats as Go's `fmt` `%v` verb does for the corresponding Go value.
    /// `Nil` prints as the empty string because every consumer's maps are
    /// `map[string]string`, whose missing keys are `""` in Go.
    pub fn to_go_string(&self) -> String {
        let mut s = String::new();
        self.write_go(&mut s, true);
        s
    }

    fn write_go(&self, out: &mut String, top: bool) {
        match self {
            Value::Nil => {
                if !top {
                    out.push_str("<nil>");
                }
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&format_float_v(*f)),
            Value::String(s) => out.push_str(s),
            Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_go(out, false);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_go(out, false);
                }
                out.push(']');
            }
        }
    }

    /// Converts back to JSON; non-finite floats become strings as
    /// Prometheus's API writes them (`"+Inf"`, `"NaN"`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(format_float_v(*f))),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) if !n.is_f64() => Value::Int(i),
                _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Self {
        Value::from(v.clone())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}

impl<V: Into<Value>> From<BTreeMap<String, V>> for Value {
    fn from(m: BTreeMap<String, V>) -> Self {
        Value::Map(m.into_iter().map(|(k, v)| (k, v.into())).collect())
    }
}

impl<V: Into<Value>> From<Vec<V>> for Value {
    fn from(a: Vec<V>) -> Self {
        Value::Array(a.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_keep_int_or_float() {
        assert_eq!(Value::from(serde_json::json!(3)), Value::Int(3));
        assert_eq!(Value::from(serde_json::json!(3.0)), Value::Float(3.0));
    }

    #[test]
    fn printing_like_go() {
        let v = Value::from(serde_json::json!({"b": [1, "x"], "a": 0.5}));
        assert_eq!(v.to_go_string(), "map[a:0.5 b:[1 x]]");
        assert_eq!(Value::Float(f64::INFINITY).to_go_string(), "+Inf");
        assert_eq!(Value::Nil.to_go_string(), "");
    }
}
